"""Write synthetic object scenes as an Omni3D source (formats.md section 7).

``<out>/Omni3D/SUNRGBD_train.json`` (COCO-like: images with per-image ``K``, categories,
annotations with ``center_cam``, ``R_cam``, ``dimensions`` = [w, h, l], ``bbox3D_cam``, 2D boxes,
visibility, truncation, ...) and the images under ``<out>/SUNRGBD/<scene>/<view>.jpg``.
Omni3D's cuboid has ``l`` along the object's x, ``h`` along y and ``w`` along z. Each image also
carries annotations Omni3D's ignore rules must drop (behind the camera, not valid3D, high depth
error), so the converter's filter is exercised.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from converters.base import encode_jpeg
from converters.object_rows import box_corners, projected_bbox
from pipelines.synthetic_world import ObjectScene, make_object_scene

SOURCE = "SUNRGBD"


def write_omni3d_sample(
    out: str | Path,
    *,
    seed: int = 0,
    num_episodes: int = 3,
    num_steps: int = 4,
    episodes_per_shard: int = 0,
    scenes: list[ObjectScene] | None = None,
) -> list[ObjectScene]:
    """``num_episodes`` scenes x ``num_steps`` views each, as one Omni3D train JSON."""
    del episodes_per_shard
    root = Path(out)
    scenes = scenes or [make_object_scene(seed, i, num_steps) for i in range(num_episodes)]
    categories = sorted({o.category for s in scenes for o in s.episode.objects})
    images, annotations = [], []
    for scene in scenes:
        for v, cam in enumerate(scene.views):
            image_id = len(images)
            rel = f"{SOURCE}/scene{scene.index:03d}/view{v}.jpg"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(encode_jpeg(scene.image(v), 95))
            images.append(
                {
                    "id": image_id,
                    "dataset_id": 1,
                    "width": cam.width,
                    "height": cam.height,
                    "file_path": rel,
                    "K": cam.K.tolist(),
                    "src_90_rotate": 0,
                    "src_flagged": False,
                }
            )
            for i, obj in enumerate(scene.episode.objects):
                T = scene.T_cam_object(v, i)
                sx, sy, sz = obj.size
                bbox = projected_bbox(T, np.array(obj.size), cam.K, cam.width, cam.height) or [-1] * 4
                annotations.append(
                    {
                        "id": len(annotations),
                        "image_id": image_id,
                        "category_id": categories.index(obj.category),
                        "category_name": obj.category,
                        "valid3D": True,
                        "bbox2D_tight": bbox,
                        "bbox2D_proj": bbox,
                        "bbox2D_trunc": bbox,
                        "bbox3D_cam": box_corners(T, np.array(obj.size)).tolist(),
                        "center_cam": T[:3, 3].tolist(),
                        "dimensions": [sz, sy, sx],
                        "R_cam": T[:3, :3].tolist(),
                        "behind_camera": False,
                        "visibility": 1.0,
                        "truncation": 0.0,
                        "segmentation_pts": 100,
                        "lidar_pts": 50,
                        "depth_error": 0.01,
                    }
                )
            valid = annotations[-1]
            for reason in (
                {"behind_camera": True, "center_cam": [0.0, 0.0, -1.0]},
                {"valid3D": False},
                {"depth_error": 0.9},
            ):
                annotations.append({**valid, "id": len(annotations), **reason})
    data = {
        "info": {
            "id": 1,
            "source": SOURCE,
            "name": f"{SOURCE} synthetic",
            "split": "train",
            "version": "0.1",
            "url": "",
        },
        "images": images,
        "categories": [{"id": i, "name": c, "supercategory": c} for i, c in enumerate(categories)],
        "annotations": annotations,
    }
    (root / "Omni3D").mkdir(parents=True, exist_ok=True)
    (root / "Omni3D" / f"{SOURCE}_train.json").write_text(json.dumps(data))
    return scenes
