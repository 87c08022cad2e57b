"""Omni3D JSON -> schema v1 (covers SUN RGB-D, ARKitScenes, Hypersim, Objectron, KITTI, nuScenes).
Source layout (formats.md section 7):

```
<source>/Omni3D/<Source>_<split>.json      COCO-like: images (K per image, file_path), categories, annotations
<source>/<file_path>                        the images, paths relative to the dataset root
```

Where each field comes from and the one line that maps it:

* Camera frame: Omni3D's is already OpenCV (+x right, +y down, +z forward), metres.
* ``T_cam_obj = [R_cam | center_cam]``.
* ``size``: Omni3D's ``dimensions`` are ``[w, h, l]`` with ``l`` along the object's x, ``h`` along
  y and ``w`` along z (its cuboid: ``x = +-l/2, y = +-h/2, z = +-w/2``) -> ours (extents along x, y,
  z) = ``[l, h, w]``.
* ``bbox_xyxy`` = ``bbox2D_tight`` when present (not -1), else ``bbox2D_proj``; ``visibility``,
  ``truncation`` as given; images pass through as their original bytes.

Omni3D's ignore rules (Cube R-CNN ``is_ignore``) are an explicit filter, applied in this order,
each rejection counted per reason in the manifest notes: ``behind_camera``, ``not valid3D``,
``dimension <= 0``, ``depth > max_depth``, ``lidar_pts == 0``, ``segmentation_pts == 0``,
``depth_error > 0.5``, ``bbox height < min_bbox_height_px``, ``truncation >= 0.99``,
``visibility <= 0.01`` (-1 = unknown is never filtered); plus ``R_cam not a rotation``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from converters.base import EpisodeRows, Rejected, UnitStats, WorkUnit, image_size, source_record
from converters.object_rows import ImageInput, ObjectInstance, image_rows
from schemas.catalog import DatasetEntry
from schemas.geometry import make_transform
from schemas.tokenizer import Codebook

VERSION = "0.1.0"
IMAGES_PER_UNIT = 500


def ignore_reason(ann: dict, max_depth: float, min_height_px: float) -> str | None:
    """Why Omni3D's rules ignore an annotation, or None to keep it."""
    dims = ann.get("dimensions", [0, 0, 0])
    bbox = ann.get("bbox2D_tight") or [-1] * 4
    checks = [
        (ann.get("behind_camera", False), "behind_camera"),
        (not ann.get("valid3D", True), "not valid3D"),
        (min(dims) <= 0, "dimension <= 0"),
        (ann["center_cam"][2] > max_depth, "depth > max_depth"),
        (ann.get("lidar_pts", -1) == 0, "lidar_pts == 0"),
        (ann.get("segmentation_pts", -1) == 0, "segmentation_pts == 0"),
        (ann.get("depth_error", -1) > 0.5, "depth_error > 0.5"),
        (bbox[0] >= 0 and bbox[3] - bbox[1] < min_height_px, "bbox height < min_bbox_height_px"),
        (ann.get("truncation", -1) >= 0.99, "truncation >= 0.99"),
        (0 <= ann.get("visibility", -1) <= 0.01, "visibility <= 0.01"),
    ]
    for failed, reason in checks:
        if failed:
            return reason
    R = np.asarray(ann["R_cam"], dtype=np.float64)
    if not (np.allclose(R.T @ R, np.eye(3), atol=1e-3) and np.linalg.det(R) > 0):
        return "R_cam not a rotation"
    return None


class Omni3dConverter:
    name = "omni3d"
    version = VERSION

    def __init__(self, entry: DatasetEntry, source: Path, options: dict):
        self.entry, self.source, self.options = entry, source, options
        pattern = options.get("json_glob", "Omni3D/*.json")
        self.files = sorted(source.glob(pattern))
        if not self.files:
            raise FileNotFoundError(f"{source}: no Omni3D JSON matching {pattern!r}")
        self.image_root = Path(options.get("image_root") or source)
        self.max_depth = float(options.get("max_depth_m", 100.0))
        self.min_height = float(options.get("min_bbox_height_px", 0.0))
        self._data: dict[Path, dict] = {}

    def _json(self, path: Path) -> dict:
        if path not in self._data:
            self._data[path] = json.loads(path.read_text())
        return self._data[path]

    def plan(self, limit_episodes: int | None = None) -> list[WorkUnit]:
        """Units of up to 500 images per JSON file; each image is one "episode"."""
        units, seen = [], 0
        for path in self.files:
            split = path.stem.rsplit("_", 1)[-1]
            n = len(self._json(path)["images"])
            for start in range(0, n, IMAGES_PER_UNIT):
                end = min(start + IMAGES_PER_UNIT, n)
                if limit_episodes is not None:
                    end = min(end, start + limit_episodes - seen)
                if end <= start:
                    return units
                units.append(
                    WorkUnit(
                        f"{path.stem}-{start:06d}",
                        split if split in ("train", "val", "test") else "train",
                        {"file": str(path), "start": start, "end": end},
                    )
                )
                seen += end - start
        return units

    def source_info(self) -> dict:
        return source_record(self.source, "Omni3D JSON", self.files)

    def dataset_metadata(self) -> dict:
        return {
            "size_convention": "ours [x, y, z] extents = Omni3D [l, h, w] (dimensions reordered)",
            "filter": "Omni3D ignore rules, counts per reason in the run notes",
            "max_depth_m": self.max_depth,
            "min_bbox_height_px": self.min_height,
            "views": ["camera"],
        }

    def convert_unit(self, unit: WorkUnit, codebook: Codebook, stats: UnitStats) -> Iterator[EpisodeRows | Rejected]:
        data = self._json(Path(unit.payload["file"]))
        images = data["images"][unit.payload["start"] : unit.payload["end"]]
        by_image: dict[int, list[dict]] = {}
        for ann in data["annotations"]:
            by_image.setdefault(ann["image_id"], []).append(ann)
        for im in images:
            where = f"{Path(unit.payload['file']).name} image {im['id']} ({im['file_path']})"
            try:
                yield self._convert(im, by_image.get(im["id"], []), unit.split, codebook, stats)
            except (OSError, ValueError, KeyError) as e:
                yield Rejected(where, "image" if isinstance(e, OSError) else "convert", f"{type(e).__name__}: {e}")

    def _convert(self, im: dict, anns: list[dict], split: str, codebook: Codebook, stats: UnitStats) -> EpisodeRows:
        data = (self.image_root / im["file_path"]).read_bytes()
        if image_size(data) != (im["width"], im["height"]):
            raise ValueError(f"image is {image_size(data)}, JSON says {im['width']}x{im['height']}")
        notes, objects = Counter(), []
        for ann in anns:
            reason = ignore_reason(ann, self.max_depth, self.min_height)
            if reason:
                notes[f"omni3d filter: {reason}"] += 1
                continue
            w, h, length = ann["dimensions"]
            bbox = ann.get("bbox2D_tight")
            bbox = ann.get("bbox2D_proj") if bbox is None or min(bbox) < 0 else bbox
            objects.append(
                ObjectInstance(
                    ann["category_name"],
                    str(ann["id"]),
                    make_transform(np.asarray(ann["R_cam"]), ann["center_cam"]),
                    np.array([length, h, w]),
                    None if bbox is None or min(bbox) < 0 else np.asarray(bbox, float),
                    float(ann.get("visibility", -1)),
                    float(ann.get("truncation", -1)),
                )
            )
        notes["objects kept"] += len(objects)
        table = image_rows(
            [
                ImageInput(
                    self.entry.name,
                    split,
                    "objects",
                    str(im["id"]),
                    0,
                    "camera",
                    data,
                    im["width"],
                    im["height"],
                    np.asarray(im["K"], float),
                    objects,
                )
            ],
            codebook,
            stats.clipped_tokens,
        )
        stats.notes.update(notes)
        return EpisodeRows(str(im["id"]), table)
