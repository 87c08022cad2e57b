"""Omni6DPose (ROPE real, SOPE simulated) -> schema v1.

The format is what the official API ``cutoop`` (Omni6DPose/Omni6DPoseAPI ``common/``, commit c1ed906)
reads and what the official baseline loader (Omni6DPose/GenPose2 ``datasets/datasets_omni6dpose.py``)
does with it. Layout (Omni6DPoseAPI ``README.md:47-84``)::

    <source>/ROPE/<scene>/<frame>_{meta.json, color.png, depth.exr, mask.exr}
    <source>/SOPE/<patch>/{train,test}/<scene_name>/<scene>/<frame>_{meta.json, color.png, depth.exr, mask.exr}
    <source>/Meta/real_obj_meta.json (ROPE), Meta/obj_meta.json (SOPE)      per object_id: tag.symmetry

* Frames are the ``*_color.png`` prefixes (``common/data_loader.py:234-262 glob_prefix``); one unit
  per folder holding them. ROPE is the real evaluation set (split ``test``); SOPE's split is its
  ``train`` / ``test`` folder.
* ``meta.json`` (``common/image_meta.py:86-129``): ``objects`` is a dict keyed ``"<mask_id>_..."``
  (``mask_id = int(key.split("_")[0])``, line 107); each has ``quaternion_wxyz`` and ``translation``
  [m] of the object's CENTRED frame in the OpenCV camera frame (``common/data_types.py:18-22,
  51-59``), ``meta.class_name``, ``meta.oid``, ``meta.bbox_side_len`` [m] (= ``scale x dimensions``,
  ``image_meta.py:50-54``; the size GenPose2 uses, ``datasets_omni6dpose.py:307``) and
  ``is_valid``: GenPose2 trains on ``is_valid`` objects only (lines 184, 194); the others are
  skipped and counted.
* Intrinsics ``camera.intrinsics {fx, fy, cx, cy, width, height}`` describe a ``width x height``
  image; the stored image may be resized: ``K[:2] *= image_height / intrinsics.height`` (plain
  multiplication, ``datasets_omni6dpose.py:205-211``, ``common/transform.py:51-58``); a
  different width ratio is refused.
* ``depth.exr`` [m], first channel in OpenCV's BGR order (``data_loader.py:65-77``), values
  ``> 1e3`` are no reading (``datasets_omni6dpose.py:200``). ``mask.exr``: channel R (index 2 of
  BGR) ``x 255`` -> uint8 mask ids (``data_loader.py:80-89``); the 2D box is the mask's
  ``[xmin, ymin, xmax, ymax]`` pixel indices (``datasets_omni6dpose.py:229-235``); objects with
  no mask pixel keep the projected 3D box. OpenCV wheels ship without OpenEXR, so the official
  ``OpenEXR`` package reads both files.
* Symmetry: ``tag.symmetry {any, x, y, z}`` (``common/rotation.py:66-99``) -> the BOP-like JSON
  ``{"discrete": [4x4], "continuous": [{"axis", "offset"}]}`` about the centred frame, with the
  groups of ``rots_of_sym`` (``rotation.py:386-420``, identity left out).
* ``camera``'s own pose (``image_meta.py:17-31``) has no documented frame convention: not used.
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
from schemas.converter_options import Omni6dOptions
from schemas.geometry import make_transform, quat_to_matrix
from schemas.tokenizer import Codebook

VERSION = "0.1.0"
SUBSETS = {"ROPE": "real_obj_meta.json", "SOPE": "obj_meta.json"}  # README.md:86 (Meta file per subset)
NO_DEPTH_ABOVE_M = 1e3  # datasets_omni6dpose.py:200
INVALID_NOTE = "object with is_valid false skipped (GenPose2 trains on valid objects only)"
_AXES = {"x": (1, 0, 0), "y": (0, 1, 0), "z": (0, 0, 1)}


def read_exr(path: Path, channel: str) -> np.ndarray:
    """One channel of an EXR file, picked as OpenCV's reader would: ``channel`` of R/G/B, or the
    file's only channel (``Y`` for grayscale EXR)."""
    import OpenEXR

    with OpenEXR.File(str(path), separate_channels=True) as f:
        channels = f.channels()
        data = channels[channel] if channel in channels else None
        if data is None and len(channels) == 1:
            data = next(iter(channels.values()))
        if data is None:
            raise ValueError(f"{path.name}: no {channel} channel (has {', '.join(sorted(channels))})")
        return np.asarray(data.pixels, dtype=np.float64)


def _rot(axis: str, angle: float) -> np.ndarray:
    a = np.asarray(_AXES[axis], dtype=np.float64)
    K = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(angle) * K + (1 - np.cos(angle)) * K @ K


def symmetry_json(sym: dict) -> str | None:
    """``SymLabel {any, x, y, z}`` (rotation.py:66-99, names ``__str__`` 125-170) -> JSON string
    (None for ``none``). Continuous: the ``any`` axes (all three for ``any``); discrete: the
    non-identity rotations of ``rots_of_sym`` (rotation.py:386-420), for cylinders the 180 deg flip
    about the next axis (rotation.py:347-349)."""
    tags = {a: sym[a] for a in "xyz"}
    n_any = sum(t == "any" for t in tags.values())
    n_quarter = sum(t == "quarter" for t in tags.values())
    continuous, rotations = [], []
    if sym["any"] or n_any > 1 or (n_any and n_quarter):  # "any"
        continuous = list("xyz")
    elif n_any == 1:  # cone / cylinder
        axis = next(a for a, t in tags.items() if t == "any")
        continuous = [axis]
        if any(t == "half" for t in tags.values()):
            rotations = [_rot("x" if axis == "y" else "y", np.pi)]
    elif n_quarter > 1:  # cube: 24 rotations (rotation.py:240-245)
        flips = [np.eye(3)] + [_rot(a, np.pi) for a in "xyz"]
        x90 = _rot("x", np.pi / 2)
        cosets = (x90 @ _rot("y", np.pi / 2), x90 @ _rot("z", np.pi / 2), np.eye(3))
        rotations = [s @ g @ h for s in (np.eye(3), x90) for g in cosets for h in flips]
    elif n_quarter == 1:  # square pyramid / tube
        axis = next(a for a, t in tags.items() if t == "quarter")
        quarters = [_rot(axis, k * np.pi / 2) for k in range(4)]
        halves = [a for a, t in tags.items() if t == "half"]
        flips = [np.eye(3)] + ([_rot(a, np.pi) for a in "xyz"] if halves else [])
        rotations = [g @ h for g in quarters for h in flips]
    else:  # box / single flip
        rotations = [_rot(a, np.pi) for a, t in tags.items() if t == "half"]
        if len(rotations) > 1:
            rotations = [_rot(a, np.pi) for a in "xyz"]
    discrete = []
    for R in rotations:
        if not np.allclose(R, np.eye(3), atol=1e-9) and not any(np.allclose(R, d, atol=1e-9) for d in discrete):
            discrete.append(R)
    if not continuous and not discrete:
        return None
    return json.dumps(
        {
            "discrete": [make_transform(np.round(R, 12) + 0.0, np.zeros(3)).ravel().tolist() for R in discrete],
            "continuous": [{"axis": list(_AXES[a]), "offset": [0.0, 0.0, 0.0]} for a in continuous],
        },
        sort_keys=True,
    )


def scaled_intrinsics(intr: dict, width: int, height: int) -> np.ndarray:
    """K of the stored ``width x height`` image: ``K[:2] * height / intrinsics.height``
    (datasets_omni6dpose.py:205-211); ValueError when the width ratio differs (line 207)."""
    scale = height / float(intr["height"])
    if not np.isclose(width / float(intr["width"]), scale):
        raise ValueError(
            f"image {width}x{height} is not a uniform resize of the intrinsics' {intr['width']}x{intr['height']}"
        )
    K = np.array([[intr["fx"], 0.0, intr["cx"]], [0.0, intr["fy"], intr["cy"]], [0.0, 0.0, 1.0]], dtype=np.float64)
    K[:2] *= scale
    return K


def mask_box(mask: np.ndarray | None, mask_id: int) -> np.ndarray | None:
    """``[xmin, ymin, xmax, ymax]`` pixel indices of ``mask == mask_id`` (datasets_omni6dpose.py:229-235)."""
    if mask is None:
        return None
    ys, xs = np.nonzero(mask == mask_id)
    if len(xs) == 0:
        return None
    return np.array([xs.min(), ys.min(), xs.max(), ys.max()], dtype=np.float64)


class Omni6dConverter:
    name = "omni6d"
    version = VERSION

    def __init__(self, entry: DatasetEntry, source: Path, options: Omni6dOptions):
        self.entry, self.source, self.options = entry, source, options
        self.subset = options.subset
        self.root = source / self.subset
        meta_path = source / "Meta" / SUBSETS[self.subset]
        if not meta_path.is_file():
            raise FileNotFoundError(f"{meta_path} missing (the {self.subset} object meta: symmetries per object_id)")
        self.obj_meta = json.loads(meta_path.read_text())["instance_dict"]
        self.folders = sorted({p.parent for p in self.root.rglob("*_color.png")})  # data_loader.py:252-262
        if not self.folders:
            raise FileNotFoundError(f"{self.root}: no <frame>_color.png (expected {self.subset}/.../<frame>_meta.json)")

    def _split(self, folder: Path) -> str:
        if self.subset == "ROPE":
            return "test"
        parts = folder.relative_to(self.root).parts
        return "test" if "test" in parts[:2] else "train"

    def plan(self, limit_episodes: int | None = None) -> list[WorkUnit]:
        """One unit per folder of frames (``limit_episodes`` counts them)."""
        folders = self.folders[:limit_episodes] if limit_episodes is not None else self.folders
        units = []
        for folder in folders:
            rel = folder.relative_to(self.source).as_posix()
            units.append(WorkUnit(rel.replace("/", "-"), self._split(folder), {"folder": str(folder)}))
        return units

    def source_info(self) -> dict:
        files = [p for f in self.folders for p in f.iterdir() if p.is_file()]
        return source_record(self.source, f"Omni6DPose {self.subset}", files)

    def dataset_metadata(self) -> dict:
        return {
            "units": "metres (poses, bbox_side_len sizes, EXR depth)",
            "subset": self.subset,
            "objects": "is_valid objects only; category = meta.class_name",
            "depth": "EXR metres, > 1e3 m -> 0 (no reading)",
        }

    def convert_unit(self, unit: WorkUnit, codebook: Codebook, stats: UnitStats) -> Iterator[EpisodeRows | Rejected]:
        folder = Path(unit.payload["folder"])
        episode = folder.relative_to(self.source).as_posix()
        images, depths, notes = [], [], Counter()
        for color in sorted(folder.glob("*_color.png")):
            prefix = str(color)[: -len("color.png")]
            try:
                image, depth = self._image(Path(prefix), episode, unit.split, notes)
            except (OSError, KeyError, ValueError, TypeError, json.JSONDecodeError) as e:
                stage = "image" if isinstance(e, OSError) else "convert"
                yield Rejected(f"{prefix}*", stage, f"{type(e).__name__}: {e}")
                continue
            images.append(image)
            depths.append(depth)
        if images:
            table = image_rows(images, codebook, stats.clipped_tokens)
            stats.notes.update(notes)
            yield EpisodeRows(episode, table, depths)

    def _image(self, prefix: Path, episode: str, split: str, notes: Counter) -> tuple[ImageInput, np.ndarray | None]:
        p = str(prefix)
        meta = json.loads(Path(p + "meta.json").read_text())
        data = Path(p + "color.png").read_bytes()
        width, height = image_size(data)
        K = scaled_intrinsics(meta["camera"]["intrinsics"], width, height)
        depth = None
        if Path(p + "depth.exr").is_file():
            depth = read_exr(Path(p + "depth.exr"), "B")  # index 0 of OpenCV's BGR
            depth[~np.isfinite(depth) | (depth > NO_DEPTH_ABOVE_M)] = 0.0
        mask = None
        if Path(p + "mask.exr").is_file():
            mask = np.array(read_exr(Path(p + "mask.exr"), "R") * 255, dtype=np.uint8)  # data_loader.py:86-89
        objects = []
        for key, obj in meta["objects"].items():
            if not obj["is_valid"]:
                notes[INVALID_NOTE] += 1
                continue
            mask_id = int(key.split("_")[0])  # image_meta.py:107
            info = obj["meta"]
            R = quat_to_matrix(np.asarray(obj["quaternion_wxyz"], dtype=np.float64))  # data_types.py:51-52
            T = make_transform(R, np.asarray(obj["translation"], dtype=np.float64))
            sym = self.obj_meta.get(info["oid"])
            if sym is None:
                notes["oid not in the object meta (no symmetry)"] += 1
            objects.append(
                ObjectInstance(
                    info["class_name"].replace("_", " "),
                    f"{mask_id}:{info['oid']}",
                    T,
                    np.asarray(info["bbox_side_len"], dtype=np.float64),
                    mask_box(mask, mask_id),
                    symmetry=None if sym is None else symmetry_json(sym["tag"]["symmetry"]),
                )
            )
            notes["objects"] += 1
        frame = int(prefix.name.rstrip("_"))
        image = ImageInput(self.entry.name, split, "objects", episode, frame, "camera", data, width, height, K, objects)
        return image, depth
