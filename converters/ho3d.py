"""HO-3D (v2/v3) -> schema v1, hands + the manipulated object.

Source layout (shreyashampali/ho3d README and ``vis_HO3D.py``):

```
<source>/{train,evaluation}/<SEQ>/rgb/<id>.jpg|png    depth/<id>.png    meta/<id>.pkl
```

``meta/<id>.pkl`` is a pickle (the official reader: ``pickle.load(f, encoding='latin1')``,
shreyashampali/ho3d utils/vis_utils.py:400-410), loaded here with
:class:`converters.base.RestrictedUnpickler`, which accepts numpy arrays and builtins only (a
pickle that would run code is refused and the frame quarantined). Fields, as the official
viewer reads them (vis_HO3D.py:123-146, 192):

* train: ``handJoints3D`` (21, 3) in MANO joint order (0 wrist, 1-3 index, 4-6 middle, 7-9
  little, 10-12 ring, 13-15 thumb, 16-20 tips thumb..little; tips read at 16-20 in
  compare_manual_anno.py:10,28), reordered to posetok's one order with
  :func:`schemas.hand_joints.from_mano_order` (= ``jointsMapManoToSimple``, vis_HO3D.py:44-49);
  ``handPose`` (48, MANO axis-angle, global rotation first), ``handTrans`` (3), ``handBeta`` (10)
  (shapes asserted in vis_HO3D.py:66-68).
* evaluation: no ``handPose``; ``handJoints3D`` is the root joint only, shape (3,)
  (vis_HO3D.py:143-145), plus ``handBoundingBox``. The official evaluation scores 21 predicted
  joints against ground truth that is not in the meta files (eval.py:185); the root joint is an
  input given to the predictor (pred.py:71-75). A root position has no orientation, and an
  ``ego`` entry needs a full pose, so such frames keep their object and camera and carry no
  hand (counted in the notes).
* both: ``objRot`` (3, 1) axis-angle + ``objTrans`` (3,) (object origin pose; ``None`` on
  unlabelled frames, vis_HO3D.py:123), ``objCorners3DRest`` (8, 3, object frame), ``objName``,
  ``camMat`` (3, 3).

The trap: every 3D quantity is in the OpenGL camera frame (y up, looking down -z). The official
projection (utils/vis_utils.py:412-432) applies ``coord_change_mat = diag(1, -1, -1)`` and then
``camMat`` as a plain pinhole K: so ``p_cv = F p_gl`` with ``F = diag(1, -1, -1)``, rotations
``R_cv = F R_gl`` (the object / hand frame itself is unchanged), and ``camMat`` is the OpenCV K.
Object ``t`` is the CENTRE of ``objCorners3DRest`` (the model origin is not the box centre),
size = the rest corners' extents. The wrist is joint 0; its orientation is MANO's global
rotation. Depth PNG: metres = ``(R + 256 G) * 0.00012498664727900177`` (vis_utils.py:458-470).
Waypoints: the wrist ``k`` frames later in the same (static) camera, k from ``fps`` (option, 30).
A frame with neither a hand nor an object label (the viewer skips it) is quarantined.
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
from schemas.catalog import DatasetEntry
from schemas.converter_options import Ho3dOptions
from schemas.geometry import OPENGL_TO_OPENCV, axis_angle_to_matrix, make_transform
from schemas.hand_joints import from_mano_order
from schemas.tokenizer import Codebook
from schemas.waypoints import future_poses, waypoint_offsets

VERSION = "0.2.0"
DEPTH_UNIT_M = 0.00012498664727900177
F = OPENGL_TO_OPENCV


def decode_depth(bgr: np.ndarray) -> np.ndarray:
    """HO-3D depth PNG (as read by cv2, BGR) -> metres."""
    return (bgr[..., 2].astype(np.float64) + 256.0 * bgr[..., 1]) * DEPTH_UNIT_M


def hand_pose(meta: dict) -> tuple[np.ndarray, np.ndarray] | None:
    """``(T_cam_wrist, joints)`` in the OpenCV camera frame [m], joints (21, 3) in
    :data:`schemas.hand_joints.HAND_JOINTS` order; ``None`` when the frame has no ``handPose``
    (evaluation split: root joint only; unlabelled frames)."""
    if meta.get("handPose") is None:
        return None
    mano = np.asarray(meta["handJoints3D"], dtype=np.float64)
    if mano.shape != (21, 3):
        raise ValueError(f"handJoints3D has shape {mano.shape}, expected (21, 3) next to handPose")
    joints = from_mano_order(mano) @ F  # F is diagonal: row vectors p @ F = (F p)^T
    R = F @ axis_angle_to_matrix(np.asarray(meta["handPose"], dtype=np.float64).reshape(-1)[:3])
    return make_transform(R, joints[0]), joints


def object_instance(meta: dict) -> ObjectInstance | None:
    """The object's box (centre pose in the OpenCV camera frame, size [m]); ``None`` when unlabelled."""
    if meta.get("objRot") is None:
        return None
    T_origin = make_transform(
        F @ axis_angle_to_matrix(np.asarray(meta["objRot"], float).ravel()),
        F @ np.asarray(meta["objTrans"], float).ravel(),
    )
    rest = np.asarray(meta["objCorners3DRest"], dtype=np.float64)
    centre = (rest.min(0) + rest.max(0)) / 2
    return ObjectInstance(
        str(meta.get("objName", "object")),
        str(meta.get("objLabel", 0)),
        T_origin @ make_transform(np.eye(3), centre),
        rest.max(0) - rest.min(0),
    )


class Ho3dConverter:
    name = "ho3d"
    version = VERSION

    def __init__(self, entry: DatasetEntry, source: Path, options: Ho3dOptions):
        self.entry, self.source, self.options = entry, source, options
        self.sequences = sorted(p.parent for p in source.glob("*/*/meta"))
        if not self.sequences:
            raise FileNotFoundError(f"{source}: no HO-3D sequences (expected <split>/<SEQ>/meta/*.pkl)")
        self.fps = options.fps
        self.offsets = waypoint_offsets(self.fps, options.waypoint_horizon.count, options.waypoint_horizon.spacing_s)

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
            "ego": "right_hand: wrist = joint 0, orientation = MANO global rotation; 21 keypoints reordered from "
            "MANO to schemas/hand_joints.py order",
            "evaluation_split": "root joint only (no orientation): rows keep object and camera, no ego",
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
        loaded, wrists = {}, {}  # by frame number
        for path in sorted((seq / "meta").glob("*.pkl")):
            try:
                index = int(path.stem)
                meta, data, depth = self._frame(seq, path.stem)
                hand, obj = hand_pose(meta), object_instance(meta)
                if hand is None and obj is None:
                    yield Rejected(str(path), "convert", "no label: no handPose and objRot is None (unannotated frame)")
                    continue
                K, (width, height) = np.asarray(meta["camMat"], dtype=np.float64), image_size(data)
                if hand is not None:
                    check_transforms(hand[0], f"{seq.name} frame {index} hand wrist")  # loses its frame only
                    wrists[index] = hand[0]
                else:
                    stats.notes["frames without handPose (root joint only): no hand"] += 1
                loaded[index] = (path, data, depth, width, height, K, hand, obj)
            except pickle.UnpicklingError as e:
                yield Rejected(str(path), "security", str(e))
            except (OSError, KeyError, ValueError, TypeError) as e:
                yield Rejected(str(path), "read", f"{type(e).__name__}: {e}")
        images, depths = [], []
        for index, (path, data, depth, width, height, K, hand, obj) in loaded.items():
            hands = []
            if hand is not None:
                future = future_poses(wrists, index, self.offsets, self.fps)
                hands.append(HandInstance("right_hand", hand[0], hand[1], future))
            try:  # refuses non-finite or non-rigid poses and bad intrinsics
                image = ImageInput(
                    self.entry.name,
                    unit.split,
                    "hands",
                    seq.name,
                    index,
                    "camera",
                    data,
                    width,
                    height,
                    K,
                    [obj] if obj is not None else [],
                    hands,
                    timestamp_s=index / self.fps,
                )
            except InvalidInput as e:
                yield Rejected(str(path), "convert", str(e))
                continue
            images.append(image)
            depths.append(depth)
        if not images:
            return
        stats.notes["frames"] += len(images)
        yield EpisodeRows(seq.name, image_rows(images, codebook, stats.clipped_tokens), depths)
