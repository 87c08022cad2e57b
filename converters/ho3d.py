"""HO-3D (v2/v3) -> schema v1, hands + the manipulated object.  Source layout (formats.md 9.2):

```
<source>/{train,evaluation}/<SEQ>/rgb/<id>.jpg|png    depth/<id>.png    meta/<id>.pkl
```

``meta/<id>.pkl`` is a pickle: loaded with :class:`converters.base.RestrictedUnpickler`, which
accepts numpy arrays and builtins only (a pickle that would run code is refused and the frame
quarantined). Keys: ``handJoints3D`` (21, 3; evaluation split: the root only), ``handPose`` (48
MANO axis-angle, global rotation first), ``objRot`` (3, 1) + ``objTrans`` (object origin pose;
``None`` on unlabelled frames), ``objCorners3DRest`` (8, 3, object frame), ``objName``, ``camMat``.

The trap: every 3D quantity is in the OpenGL camera frame (y up, looking down -z). Points map
with ``F = diag(1, -1, -1)``: ``p_cv = F p_gl``; rotations ``R_cv = F R_gl`` (the object / hand
frame itself is unchanged). Object ``t`` is the CENTRE of ``objCorners3DRest`` (the model origin
is not the box centre), size = the rest corners' extents. The wrist is joint 0; its orientation
is MANO's global rotation. Depth PNG: metres = ``(R + 256 G) * 0.00012498664727900177``.
Waypoints: the wrist ``k`` frames later in the same (static) camera, k from ``fps`` (option, 30).
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from converters.base import (
    EpisodeRows,
    InvalidInput,
    Rejected,
    UnitStats,
    WorkUnit,
    check_transforms,
    image_size,
    load_pickle,
    source_record,
)
from converters.object_rows import HandInstance, ImageInput, ObjectInstance, image_rows
from converters.robot_rows import waypoint_offsets
from schemas.catalog import DatasetEntry
from schemas.geometry import OPENGL_TO_OPENCV, axis_angle_to_matrix, make_transform
from schemas.tokenizer import Codebook

VERSION = "0.1.0"
DEPTH_UNIT_M = 0.00012498664727900177
F = OPENGL_TO_OPENCV


def decode_depth(bgr: np.ndarray) -> np.ndarray:
    """HO-3D depth PNG (as read by cv2, BGR) -> metres."""
    return (bgr[..., 2].astype(np.float64) + 256.0 * bgr[..., 1]) * DEPTH_UNIT_M


class Ho3dConverter:
    name = "ho3d"
    version = VERSION

    def __init__(self, entry: DatasetEntry, source: Path, options: dict):
        self.entry, self.source, self.options = entry, source, options
        self.sequences = sorted(p.parent for p in source.glob("*/*/meta"))
        if not self.sequences:
            raise FileNotFoundError(f"{source}: no HO-3D sequences (expected <split>/<SEQ>/meta/*.pkl)")
        self.fps = float(options.get("fps", entry.fps or 30.0))
        self.offsets = waypoint_offsets(self.fps, entry.waypoint_horizon.count, entry.waypoint_horizon.spacing_s)

    def plan(self, limit_episodes: int | None = None) -> list[WorkUnit]:
        seqs = self.sequences[:limit_episodes] if limit_episodes is not None else self.sequences
        return [
            WorkUnit(
                f"{p.parent.name}-{p.name}", "test" if p.parent.name == "evaluation" else "train", {"sequence": str(p)}
            )
            for p in seqs
        ]

    def source_info(self) -> dict:
        return source_record(self.source, "HO-3D", (p for s in self.sequences for p in s.rglob("*") if p.is_file()))

    def dataset_metadata(self) -> dict:
        return {
            "camera_axes": "OpenGL in the source, converted to OpenCV",
            "fps_assumed": self.fps,
            "ego": "right_hand: wrist = joint 0, orientation = MANO global rotation; 21 joints as keypoints",
            "objects": "box from objCorners3DRest (centre and extents)",
            "views": ["camera"],
        }

    def _frame(self, seq: Path, frame: str) -> tuple[dict, bytes, np.ndarray | None]:
        meta = load_pickle(seq / "meta" / f"{frame}.pkl")
        rgb = next(iter(sorted((seq / "rgb").glob(f"{frame}.*"))), None)
        if rgb is None:
            raise FileNotFoundError(f"no rgb/{frame}.jpg|png")
        depth_path = seq / "depth" / f"{frame}.png"
        depth = decode_depth(cv2.imread(str(depth_path), cv2.IMREAD_COLOR)) if depth_path.is_file() else None
        return meta, rgb.read_bytes(), depth

    def convert_unit(self, unit: WorkUnit, codebook: Codebook, stats: UnitStats) -> Iterator[EpisodeRows | Rejected]:
        seq = Path(unit.payload["sequence"])
        frames = sorted(p.stem for p in (seq / "meta").glob("*.pkl"))
        loaded, wrists = {}, {}
        for frame in frames:
            try:
                meta, data, depth = self._frame(seq, frame)
                joints = np.asarray(meta["handJoints3D"], dtype=np.float64).reshape(-1, 3) @ F
                R = F @ axis_angle_to_matrix(np.asarray(meta["handPose"], dtype=np.float64)[:3])
                wrist = make_transform(R, joints[0])
                check_transforms(wrist, f"{seq.name} frame {frame} hand wrist")  # a bad wrist loses its frame only
                wrists[frame] = wrist
                loaded[frame] = (meta, data, depth, joints)
            except pickle.UnpicklingError as e:
                yield Rejected(str(seq / "meta" / f"{frame}.pkl"), "security", str(e))
            except (OSError, KeyError, ValueError, TypeError) as e:
                yield Rejected(str(seq / "meta" / f"{frame}.pkl"), "read", f"{type(e).__name__}: {e}")
        if not loaded:
            return
        order = list(loaded)
        images, depths = [], []
        for i, frame in enumerate(order):
            meta, data, depth, joints = loaded[frame]
            future = [(k, k / self.fps, wrists[order[i + k]]) for k in self.offsets if i + k < len(order)]
            hand = HandInstance("right_hand", wrists[frame], joints if len(joints) == 21 else np.zeros((0, 3)), future)
            objects = []
            if meta.get("objRot") is not None:
                T_origin = make_transform(
                    F @ axis_angle_to_matrix(np.asarray(meta["objRot"], float).ravel()),
                    F @ np.asarray(meta["objTrans"], float).ravel(),
                )
                rest = np.asarray(meta["objCorners3DRest"], dtype=np.float64)
                centre = (rest.min(0) + rest.max(0)) / 2
                T_centre = T_origin @ make_transform(np.eye(3), centre)
                objects.append(
                    ObjectInstance(
                        str(meta.get("objName", "object")),
                        str(meta.get("objLabel", 0)),
                        T_centre,
                        rest.max(0) - rest.min(0),
                    )
                )
            width, height = image_size(data)
            try:  # refuses non-finite or non-rigid poses and bad intrinsics
                image = ImageInput(
                    self.entry.name,
                    unit.split,
                    "hands",
                    seq.name,
                    int(frame),
                    "camera",
                    data,
                    width,
                    height,
                    np.asarray(meta["camMat"], float),
                    objects,
                    [hand],
                    timestamp_s=int(frame) / self.fps,
                )
            except InvalidInput as e:
                yield Rejected(str(seq / "meta" / f"{frame}.pkl"), "convert", str(e))
                continue
            images.append(image)
            depths.append(depth)
        if not images:
            return
        stats.notes["frames"] += len(images)
        yield EpisodeRows(seq.name, image_rows(images, codebook, stats.clipped_tokens), depths)
