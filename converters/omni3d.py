"""Omni3D JSON -> schema v1 (covers SUN RGB-D, ARKitScenes, Hypersim, Objectron, KITTI, nuScenes).
Source layout (facebookresearch/omni3d DATA.md:133-198):

```
<source>/Omni3D/<Source>_<split>.json      COCO-like: images (K per image, file_path), categories, annotations
<source>/<file_path>                        the images, paths relative to the dataset root
```

Where each field comes from and the one line that maps it:

* Camera frame: Omni3D's is already OpenCV (+x right, +y down, +z forward; DATA.md:111-112), metres.
* ``T_cam_obj = [R_cam | center_cam]``.
* ``size``: Omni3D's ``dimensions`` are ``[w, h, l]`` with ``l`` along the object's x, ``h`` along
  y and ``w`` along z (its cuboid: ``x = +-l/2, y = +-h/2, z = +-w/2``,
  ``cubercnn/util/math_util.py:171-181``) -> ours (extents along x, y, z) = ``[l, h, w]``.
* ``bbox_xyxy`` [px] = the box Cube R-CNN trains on: ``bbox2D_trunc`` (the projected cuboid clipped
  to the image) unless it is all -1, else ``bbox2D_proj`` (``cubercnn/data/datasets.py:419-429`` with
  ``MODAL_2D_BOXES=False``, ``TRUNC_2D_BOXES=True``, ``cubercnn/config/config.py:30,34``);
  ``visibility``, ``truncation`` as given; images pass through as their original bytes.

Omni3D's ignore rule (``is_ignore``, ``cubercnn/data/datasets.py:82-122``) is an explicit filter;
each ignored annotation is counted under the first reason that holds, in the official order:
``behind_camera``, ``not valid3D``, ``dimension <= 0``, ``depth > max_depth``, ``lidar_pts == 0``,
``segmentation_pts == 0``, ``depth_error > 0.5``, ``bbox height <= min_height_thres * image height``,
``bbox height >= max_height_thres * image height``, ``truncation >= truncation_thres``,
``visibility <= visibility_thres`` (-1 = unknown is never filtered), ``category in ignore_names``;
plus ``R_cam not a rotation`` and missing fields. Box heights are fractions of the image height,
compared in float32 as detectron2 computes them. The thresholds default to Cube R-CNN's config
defaults (``cubercnn/config/config.py:23-26``, the same as the config-less ``datasets.py:55-65``);
its training config sets ``min_height_thres`` 0.05, ``truncation_thres`` 0.75, ``visibility_thres``
0.25 and ``ignore_names`` dontcare / ignore / void (``configs/Base.yaml:21-26``): pass them as
options (``max_depth_m`` for ``max_depth``).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import numpy as np
import pyarrow as pa

from converters.base import EpisodeRows, Rejected, UnitStats, WorkUnit, image_size, source_record
from converters.object_rows import ImageInput, ObjectInstance, image_rows
from schemas.catalog import DatasetEntry
from schemas.converter_options import Omni3dOptions
from schemas.geometry import make_transform
from schemas.tokenizer import Codebook

VERSION = "0.2.0"
IMAGES_PER_UNIT = 500


def filter_settings(options: Omni3dOptions) -> dict:
    """Cube R-CNN's filter settings (``cubercnn/data/datasets.py:55-65`` keys; ``max_depth`` [m])
    from the options, whose defaults are ``get_filter_settings_from_cfg(None)``."""
    return {
        "truncation_thres": options.truncation_thres,
        "visibility_thres": options.visibility_thres,
        "min_height_thres": options.min_height_thres,
        "max_height_thres": options.max_height_thres,
        "max_depth": options.max_depth_m,
        "ignore_names": tuple(options.ignore_names),
    }


def training_box(ann: dict) -> list[float] | None:
    """``[x1, y1, x2, y2]`` [px] Cube R-CNN uses: ``bbox2D_trunc`` unless missing or all -1, else
    ``bbox2D_proj``; None if neither is given (the loader skips such annotations,
    ``cubercnn/data/datasets.py:422-429``)."""
    trunc = ann.get("bbox2D_trunc")
    if trunc is not None and not all(v == -1 for v in trunc):
        return trunc
    return ann.get("bbox2D_proj")


def box_height(box: list[float]) -> float:
    """``y2 - y1`` as detectron2's ``BoxMode.convert`` computes it on a list: in a float32 tensor
    (``torch.tensor(box)``, facebookresearch/detectron2 ``detectron2/structures/boxes.py:64,113-114``)."""
    return float(np.float32(box[3]) - np.float32(box[1]))


def _official_reason(ann: dict, settings: dict, image_height: int) -> str | None:
    """``is_ignore`` (``cubercnn/data/datasets.py:82-122``), naming the first condition that holds."""
    if ann["behind_camera"]:
        return "behind_camera"
    if not bool(ann["valid3D"]):
        return "not valid3D"
    box = training_box(ann)
    if box is None:
        return "no bbox2D_trunc or bbox2D_proj"
    height, truncation, visibility = box_height(box), ann["truncation"], ann["visibility"]
    checks = [
        (min(ann["dimensions"]) <= 0, "dimension <= 0"),
        (ann["center_cam"][2] > settings["max_depth"], "depth > max_depth"),
        (ann["lidar_pts"] == 0, "lidar_pts == 0"),
        (ann["segmentation_pts"] == 0, "segmentation_pts == 0"),
        (ann["depth_error"] > 0.5, "depth_error > 0.5"),
        (height <= settings["min_height_thres"] * image_height, "bbox height <= min_height_thres * image height"),
        (height >= settings["max_height_thres"] * image_height, "bbox height >= max_height_thres * image height"),
        (truncation >= 0 and truncation >= settings["truncation_thres"], "truncation >= truncation_thres"),
        (visibility >= 0 and visibility <= settings["visibility_thres"], "visibility <= visibility_thres"),
        (ann["category_name"] in settings["ignore_names"], "category in ignore_names"),
    ]
    return next((reason for failed, reason in checks if failed), None)


def ignore_reason(ann: dict, settings: dict, image_height: int) -> str | None:
    """Why Omni3D's ignore rule (or a broken ``R_cam``) drops an annotation, or None to keep it.
    ``settings``: :func:`filter_settings`; ``image_height`` [px]."""
    try:
        reason = _official_reason(ann, settings, image_height)
        R = None if reason else np.asarray(ann["R_cam"], dtype=np.float64)
    except KeyError as e:
        return f"missing field {e.args[0]}"
    if R is not None and not (np.allclose(R.T @ R, np.eye(3), atol=1e-3) and np.linalg.det(R) > 0):
        return "R_cam not a rotation"
    return reason


HYPERSIM_SCENE = re.compile(r"^ai_\d{3}_\d{3}$")  # Hypersim scene folders: ai_<volume>_<scene>


def sequence_of(file_path: str) -> str:
    """The recording an Omni3D image belongs to, from its ``file_path`` (relative to the dataset
    root, DATA.md:158, read by ``cubercnn/data/datasets.py:388``): the episode id, so that a
    mixture's train / val split never separates views of one scene.

    * nuScenes camera files are ``<log>__<channel>__<timestamp>.jpg``: the log (drive).
    * Hypersim paths hold the scene folder ``ai_<volume>_<scene>``: the scene (all its cameras).
    * KITTI object-benchmark frames carry no drive id: each image is its own episode.
    * Otherwise the image's folder (an ARKitScenes / Objectron video, a SUN RGB-D image folder)."""
    path = PurePosixPath(file_path)
    if "__" in path.name:
        return f"{path.parent}/{path.name.split('__')[0]}"
    scene = next((i for i, part in enumerate(path.parts) if HYPERSIM_SCENE.match(part)), None)
    if scene is not None:
        return "/".join(path.parts[: scene + 1])
    if path.parts and path.parts[0].upper().startswith("KITTI"):
        return str(path.with_suffix(""))
    return str(path.parent)


def frames_of(images: list[dict]) -> dict[int, tuple[str, int]]:
    """Image id -> (episode id, frame index): the image's position among its recording's images in
    the JSON file (stable, and unique per recording across work units)."""
    seen: Counter = Counter()
    out = {}
    for im in images:
        sequence = sequence_of(im["file_path"])
        out[im["id"]] = (sequence, seen[sequence])
        seen[sequence] += 1
    return out


class Omni3dConverter:
    name = "omni3d"
    version = VERSION

    def __init__(self, entry: DatasetEntry, source: Path, options: Omni3dOptions):
        self.entry, self.source, self.options = entry, source, options
        pattern = options.json_glob
        self.files = sorted(source.glob(pattern))
        if not self.files:
            raise FileNotFoundError(f"{source}: no Omni3D JSON matching {pattern!r}")
        self.image_root = Path(options.image_root or source)
        self.filter = filter_settings(options)
        self._data: dict[Path, dict] = {}
        self._frames: dict[Path, dict[int, tuple[str, int]]] = {}

    def _json(self, path: Path) -> dict:
        if path not in self._data:
            self._data[path] = json.loads(path.read_text())
            self._frames[path] = frames_of(self._data[path]["images"])
        return self._data[path]

    def plan(self, limit_episodes: int | None = None) -> list[WorkUnit]:
        """Units of up to 500 images per JSON file; an episode is a recording (:func:`sequence_of`)."""
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
            "bbox_xyxy": "bbox2D_trunc, else bbox2D_proj (Cube R-CNN's training box)",
            "filter": "Omni3D is_ignore, counts per reason in the run notes",
            "filter_settings": {**self.filter, "ignore_names": list(self.filter["ignore_names"])},
            "views": ["camera"],
        }

    def convert_unit(self, unit: WorkUnit, codebook: Codebook, stats: UnitStats) -> Iterator[EpisodeRows | Rejected]:
        """One :class:`EpisodeRows` per recording among the unit's images (a recording cut by a unit
        boundary continues, with the same episode id, in the next unit)."""
        path = Path(unit.payload["file"])
        data = self._json(path)
        images = data["images"][unit.payload["start"] : unit.payload["end"]]
        by_image: dict[int, list[dict]] = {}
        for ann in data["annotations"]:
            by_image.setdefault(ann["image_id"], []).append(ann)
        episodes: dict[str, list[pa.Table]] = {}
        for im in images:
            where = f"{path.name} image {im['id']} ({im['file_path']})"
            try:
                image = self._image(im, by_image.get(im["id"], []), unit.split, self._frames[path][im["id"]], stats)
                episodes.setdefault(image.episode_id, []).append(image_rows([image], codebook, stats.clipped_tokens))
            except (OSError, ValueError, KeyError) as e:
                yield Rejected(where, "image" if isinstance(e, OSError) else "convert", f"{type(e).__name__}: {e}")
        for episode_id, tables in episodes.items():
            yield EpisodeRows(episode_id, pa.concat_tables(tables))

    def _image(
        self, im: dict, anns: list[dict], split: str, frame: tuple[str, int], stats: UnitStats
    ) -> ImageInput:
        data = (self.image_root / im["file_path"]).read_bytes()
        if image_size(data) != (im["width"], im["height"]):
            raise ValueError(f"image is {image_size(data)}, JSON says {im['width']}x{im['height']}")
        notes, objects = Counter(), []
        for ann in anns:
            reason = ignore_reason(ann, self.filter, im["height"])
            if reason:
                notes[f"omni3d filter: {reason}"] += 1
                continue
            w, h, length = ann["dimensions"]
            objects.append(
                ObjectInstance(
                    ann["category_name"],
                    str(ann["id"]),
                    make_transform(np.asarray(ann["R_cam"]), ann["center_cam"]),
                    np.array([length, h, w]),
                    np.asarray(training_box(ann), float),
                    float(ann.get("visibility", -1)),
                    float(ann.get("truncation", -1)),
                )
            )
        notes["objects kept"] += len(objects)
        stats.notes.update(notes)
        episode_id, frame_index = frame
        return ImageInput(
            self.entry.name,
            split,
            "objects",
            episode_id,
            frame_index,
            "camera",
            data,
            im["width"],
            im["height"],
            np.asarray(im["K"], float),
            objects,
        )
