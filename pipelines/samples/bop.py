"""Write synthetic object scenes as a BOP dataset (formats.md section 8), in MILLIMETRES.

``<out>/ycbv/camera.json``, ``models/models_info.json`` (sizes in mm, discrete symmetries for
cubes), and ``test/<scene:06d>/{scene_camera.json, scene_gt.json, scene_gt_info.json,
rgb/<im:06d>.png, depth/<im:06d>.png}``: ``cam_t_m2c`` and ``cam_t_w2c`` in mm, depth PNG values
in units of ``depth_scale`` mm. Each object instance is its own model; its ``obj_id`` names a
YCB-V object through the catalog's ``object_names`` table.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from converters.object_rows import projected_bbox
from pipelines.synthetic_world import ObjectScene, make_object_scene
from schemas.geometry import invert_transform

DEPTH_SCALE_MM = 0.1  # PNG value x 0.1 = mm, as several BOP datasets use


def save_bop_json(path: Path, data: dict) -> None:
    """bop_toolkit's ``save_json`` style: sorted keys, one entry per line."""
    lines = [f'  "{k}": {json.dumps(data[k], sort_keys=True)}' for k in sorted(data, key=lambda k: int(k))]
    path.write_text("{\n" + ",\n".join(lines) + "\n}")


def _symmetries(category: str) -> dict:
    if category != "cube":
        return {}
    rot180_z = np.diag([-1.0, -1.0, 1.0, 1.0])
    return {"symmetries_discrete": [rot180_z.ravel().tolist()]}


def write_bop_sample(
    out: str | Path,
    *,
    seed: int = 0,
    num_episodes: int = 2,
    num_steps: int = 4,
    episodes_per_shard: int = 0,
    scenes: list[ObjectScene] | None = None,
    dataset: str = "ycbv",
) -> list[ObjectScene]:
    """``num_episodes`` scenes x ``num_steps`` images as BOP ``<dataset>/test``."""
    del episodes_per_shard
    root = Path(out) / dataset
    scenes = scenes or [make_object_scene(seed, i, num_steps) for i in range(num_episodes)]
    cam = scenes[0].views[0]
    K = cam.K
    root.mkdir(parents=True, exist_ok=True)
    (root / "camera.json").write_text(
        json.dumps(
            {
                "cx": K[0, 2],
                "cy": K[1, 2],
                "depth_scale": DEPTH_SCALE_MM,
                "fx": K[0, 0],
                "fy": K[1, 1],
                "height": cam.height,
                "width": cam.width,
            }
        )
    )
    models, next_id = {}, 1
    for scene in scenes:
        folder = root / "test" / f"{scene.index:06d}"
        (folder / "rgb").mkdir(parents=True, exist_ok=True)
        (folder / "depth").mkdir(parents=True, exist_ok=True)
        ids = list(range(next_id, next_id + len(scene.episode.objects)))
        next_id += len(ids)
        for obj_id, obj in zip(ids, scene.episode.objects, strict=True):
            size_mm = np.array(obj.size) * 1000
            models[str(obj_id)] = {
                "diameter": float(np.linalg.norm(size_mm)),
                **{f"min_{a}": float(-s / 2) for a, s in zip("xyz", size_mm, strict=True)},
                **{f"size_{a}": float(s) for a, s in zip("xyz", size_mm, strict=True)},
                **_symmetries(obj.category),
            }
        cameras, gts, infos = {}, {}, {}
        for v, view in enumerate(scene.views):
            cv2.imwrite(str(folder / "rgb" / f"{v:06d}.png"), scene.image(v)[:, :, ::-1])
            depth_mm = scene.depth(v) * 1000
            cv2.imwrite(str(folder / "depth" / f"{v:06d}.png"), np.round(depth_mm / DEPTH_SCALE_MM).astype(np.uint16))
            T_cam_world = invert_transform(view.T_base_cam)
            cameras[str(v)] = {
                "cam_K": view.K.ravel().tolist(),
                "depth_scale": DEPTH_SCALE_MM,
                "cam_R_w2c": T_cam_world[:3, :3].ravel().tolist(),
                "cam_t_w2c": (T_cam_world[:3, 3] * 1000).tolist(),
            }
            gts[str(v)], infos[str(v)] = [], []
            for i, obj_id in enumerate(ids):
                T = scene.T_cam_object(v, i)
                gts[str(v)].append(
                    {"obj_id": obj_id, "cam_R_m2c": T[:3, :3].ravel().tolist(), "cam_t_m2c": (T[:3, 3] * 1000).tolist()}
                )
                x1, y1, x2, y2 = projected_bbox(
                    T, np.array(scene.episode.objects[i].size), view.K, view.width, view.height
                ) or [-1, -1, -2, -2]
                box = [int(x1), int(y1), int(x2 - x1) + 1, int(y2 - y1) + 1]
                infos[str(v)].append(
                    {
                        "bbox_obj": box,
                        "bbox_visib": box,
                        "px_count_all": 100,
                        "px_count_valid": 100,
                        "px_count_visib": 90,
                        "visib_fract": 0.9,
                    }
                )
        save_bop_json(folder / "scene_camera.json", cameras)
        save_bop_json(folder / "scene_gt.json", gts)
        save_bop_json(folder / "scene_gt_info.json", infos)
    (root / "models").mkdir(exist_ok=True)
    save_bop_json(root / "models" / "models_info.json", models)
    return scenes
