"""BOP 6D-pose datasets -> schema v1 (YCB-V, LM, HB, TUD-L, IC-BIN, HOPE, HANDAL, HOT3D-BOP).
Source layout (formats.md section 8):

```
<source>/<dataset>/camera.json                         fx, fy, cx, cy, depth_scale, width, height
<source>/<dataset>/models/models_info.json             per obj_id: size_x/y/z, min_x/y/z (mm), symmetries
<source>/<dataset>/<split>/<scene:06d>/scene_camera.json   per image: cam_K, depth_scale, [cam_R_w2c, cam_t_w2c (mm)]
                                      scene_gt.json        per image: [{obj_id, cam_R_m2c, cam_t_m2c (mm)}]
                                      scene_gt_info.json   per image: [{bbox_visib [x, y, w, h], visib_fract, ...}]
                                      rgb/<im:06d>.png|jpg, depth/<im:06d>.png (uint16)
```

Where each field comes from and the one line that maps it:

* BOP is in MILLIMETRES: ``t = cam_t_m2c / 1000``; size = ``size_x/y/z / 1000`` (model frame
  origin at the bbox centre, so the centre IS ``t``); depth [m] = ``png * depth_scale / 1000``
  (stored in Zarr); ``cam_t_w2c / 1000``.
* ``T_cam_obj = [cam_R_m2c | t]`` (OpenCV camera). With ``cam_R_w2c``: ``T_ref_cam =
  inv([cam_R_w2c | cam_t_w2c])``, ``ref_frame = world``.
* Category names from the catalog's per-dataset ``object_names`` table (obj_id -> name).
* ``bbox_xyxy`` from ``bbox_visib``; ``visibility = visib_fract``.
* Symmetries carried as JSON ``{"discrete": [4x4 row-major, translation in m], "continuous":
  [{"axis", "offset" (m)}]}``.

Images without ``cam_K`` (BOP24 ``cam_model`` fisheye) are quarantined: posetok stores pinhole K.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from converters.base import EpisodeRows, Rejected, UnitStats, WorkUnit, image_size, source_record
from converters.object_rows import ImageInput, ObjectInstance, image_rows
from schemas.catalog import DatasetEntry
from schemas.geometry import invert_transform, make_transform, mm_to_m
from schemas.tokenizer import Codebook

VERSION = "0.1.0"
SPLITS = {"test": "test", "val": "val"}  # anything else (train, train_pbr, ...) -> train


def symmetry_json(info: dict) -> str | None:
    """BOP symmetries with translations converted to metres, as a JSON string (None if none)."""
    discrete = []
    for sym in info.get("symmetries_discrete", []):
        m = np.asarray(sym, dtype=np.float64).reshape(4, 4).copy()
        m[:3, 3] = mm_to_m(m[:3, 3])
        discrete.append(m.ravel().tolist())
    continuous = [
        {"axis": s["axis"], "offset": mm_to_m(s.get("offset", [0, 0, 0])).tolist()}
        for s in info.get("symmetries_continuous", [])
    ]
    if not discrete and not continuous:
        return None
    return json.dumps({"discrete": discrete, "continuous": continuous}, sort_keys=True)


class BopConverter:
    name = "bop"
    version = VERSION

    def __init__(self, entry: DatasetEntry, source: Path, options: dict):
        self.entry, self.source, self.options = entry, source, options
        infos = sorted(source.glob("**/models*/models_info.json"))
        if not infos:
            raise FileNotFoundError(f"{source}: no BOP dataset (expected <dataset>/models/models_info.json)")
        self.root = infos[0].parent.parent
        self.models = json.loads(infos[0].read_text())
        self.names = {int(k): v for k, v in (options.get("object_names") or {}).items()}
        self.scenes = sorted(p.parent for p in self.root.glob("*/*/scene_gt.json"))
        if not self.scenes:
            raise FileNotFoundError(f"{self.root}: no <split>/<scene>/scene_gt.json")

    def plan(self, limit_episodes: int | None = None) -> list[WorkUnit]:
        """One unit per scene folder (``limit_episodes`` counts scenes)."""
        scenes = self.scenes[:limit_episodes] if limit_episodes is not None else self.scenes
        return [
            WorkUnit(f"{p.parent.name}-{p.name}", SPLITS.get(p.parent.name, "train"), {"scene": str(p)}) for p in scenes
        ]

    def source_info(self) -> dict:
        return source_record(self.source, "BOP", (p for s in self.scenes for p in s.rglob("*") if p.is_file()))

    def dataset_metadata(self) -> dict:
        return {
            "units": "converted from BOP millimetres to metres (poses, sizes, depth, symmetries)",
            "object_names": {str(k): v for k, v in self.names.items()},
            "views": ["camera"],
            "depth": "Zarr uint16, 1 mm steps (scale 0.001 m)",
        }

    def convert_unit(self, unit: WorkUnit, codebook: Codebook, stats: UnitStats) -> Iterator[EpisodeRows | Rejected]:
        scene = Path(unit.payload["scene"])
        try:
            cameras = json.loads((scene / "scene_camera.json").read_text())
            gts = json.loads((scene / "scene_gt.json").read_text())
            infos = (
                json.loads((scene / "scene_gt_info.json").read_text())
                if (scene / "scene_gt_info.json").is_file()
                else {}
            )
        except (OSError, json.JSONDecodeError) as e:
            yield Rejected(str(scene), "read", f"scene JSON unreadable ({e})", episodes=1)
            return
        images, depths, notes = [], [], Counter()
        for im_id in sorted(gts, key=int):
            where = f"{scene}/{int(im_id):06d}"
            try:
                image, depth = self._image(scene, im_id, cameras[im_id], gts[im_id], infos.get(im_id, []), unit, notes)
            except (OSError, KeyError, ValueError) as e:
                yield Rejected(where, "image" if isinstance(e, OSError) else "convert", f"{type(e).__name__}: {e}")
                continue
            images.append(image)
            depths.append(depth)
        if images:
            table = image_rows(images, codebook, stats.clipped_tokens)
            stats.notes.update(notes)
            yield EpisodeRows(images[0].episode_id, table, depths)

    def _image(
        self, scene: Path, im_id: str, cam: dict, gt: list[dict], info: list[dict], unit: WorkUnit, notes: Counter
    ) -> tuple[ImageInput, np.ndarray | None]:
        if "cam_K" not in cam:
            raise ValueError("no cam_K (BOP24 cam_model fisheye cameras are not supported)")
        rgb_path = next((p for p in (scene / "rgb").glob(f"{int(im_id):06d}.*")), None)
        if rgb_path is None:
            raise FileNotFoundError(f"no rgb/{int(im_id):06d}.png|jpg")
        data = rgb_path.read_bytes()
        width, height = image_size(data)
        depth = None
        depth_path = scene / "depth" / f"{int(im_id):06d}.png"
        if depth_path.is_file():
            raw = cv2.imread(str(depth_path), cv2.IMREAD_UNCHANGED)
            if raw is None:
                raise OSError(f"unreadable depth {depth_path.name}")
            depth = mm_to_m(raw.astype(np.float64) * float(cam.get("depth_scale", 1.0)))
        objects = []
        for gt_id, g in enumerate(gt):
            obj_id = int(g["obj_id"])
            model = self.models.get(str(obj_id))
            if model is None:
                raise KeyError(f"obj_id {obj_id} not in models_info.json")
            vis = info[gt_id] if gt_id < len(info) else {}
            box = vis.get("bbox_visib", [-1, -1, -1, -1])
            bbox = None if box[0] < 0 else np.array([box[0], box[1], box[0] + box[2] - 1, box[1] + box[3] - 1], float)
            objects.append(
                ObjectInstance(
                    self.names.get(obj_id, f"object {obj_id}"),
                    f"{gt_id}:{obj_id}",
                    make_transform(np.asarray(g["cam_R_m2c"], float).reshape(3, 3), mm_to_m(g["cam_t_m2c"])),
                    mm_to_m([model["size_x"], model["size_y"], model["size_z"]]),
                    bbox,
                    float(vis.get("visib_fract", -1.0)),
                    -1.0,
                    symmetry_json(model),
                )
            )
            notes["unnamed obj_id (add it to object_names)" if obj_id not in self.names else "objects"] += 1
        T_ref = None
        if "cam_R_w2c" in cam:
            T_ref = invert_transform(
                make_transform(np.asarray(cam["cam_R_w2c"], float).reshape(3, 3), mm_to_m(cam["cam_t_w2c"]))
            )
        image = ImageInput(
            self.entry.name,
            unit.split,
            "objects",
            f"{scene.parent.name}/{scene.name}",
            int(im_id),
            "camera",
            data,
            width,
            height,
            np.asarray(cam["cam_K"], float).reshape(3, 3),
            objects,
            T_ref_cam=T_ref,
            ref_frame=None if T_ref is None else "world",
        )
        return image, depth
