"""Rows of object / hand datasets: one row per (image, camera), objects already in the camera frame.

Every object-pose converter (Omni3D, BOP, Objectron, ...) reduces its source to
:class:`ImageInput` s holding camera-frame object poses ``T_cam_obj`` (OpenCV axes, metres) and
sizes along the object's own x/y/z; :func:`image_rows` hands them to the one table assembler,
``schemas.columns.record_table``, which builds the schema-v1 rows and tokens.
The 2D box defaults to the projected 3D box clipped to the image (what Pose-VLA encodes).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from converters.base import check_intrinsics, check_transforms
from schemas.columns import Items, record_table
from schemas.geometry import matrix_to_quat, project_points
from schemas.tokenizer import Codebook

_CORNER_SIGNS = np.array([[(i >> 2) & 1, (i >> 1) & 1, i & 1] for i in range(8)]) * 2 - 1


@dataclass
class ObjectInstance:
    category: str
    instance_id: str
    T_cam_obj: np.ndarray  # (4, 4), camera frame, metres
    size: np.ndarray  # (3,) metres, along the object's x / y / z
    bbox_xyxy: np.ndarray | None = None  # pixels; None -> projected 3D box, clipped
    visibility: float = -1.0
    truncation: float = -1.0
    symmetry: str | None = None


@dataclass
class HandInstance:
    """A hand: wrist pose and 21 joints [m] in the camera frame (``name`` left_hand / right_hand);
    ``future`` = ``(offset_steps, offset_s, T_cam_wrist)`` of later wrist poses, expressed in THIS
    image's camera frame (VIPA-VLA's motion targets)."""

    name: str
    T_cam_wrist: np.ndarray
    joints: np.ndarray  # (21, 3), or (0, 3) when the source has no joints
    future: list[tuple[int, float, np.ndarray]] = field(default_factory=list)


@dataclass
class ImageInput:
    dataset: str
    split: str
    kind: str  # objects | hands
    episode_id: str  # scene / sequence
    frame_index: int
    view: str
    image: bytes
    width: int
    height: int
    K: np.ndarray
    objects: list[ObjectInstance] = field(default_factory=list)
    hands: list[HandInstance] = field(default_factory=list)
    timestamp_s: float | None = None
    T_ref_cam: np.ndarray | None = None
    ref_frame: str | None = None
    instructions: list[str] = field(default_factory=list)
    depth_m: np.ndarray | None = None  # (H, W) metres, 0 = no reading; stored in Zarr by the engine

    def __post_init__(self) -> None:
        """Refuse what no row can be right with (InvalidInput, naming the item): converters build
        inputs per image inside their per-image error handling, so only that image is lost."""
        where = f"{self.episode_id} frame {self.frame_index} view {self.view}"
        check_intrinsics(self.K, where)
        for o in self.objects:
            check_transforms(o.T_cam_obj, f"{where} object {o.instance_id} ({o.category})")
        for h in self.hands:
            check_transforms([h.T_cam_wrist, *(T for _, _, T in h.future)], f"{where} hand {h.name}")


def box_corners(T_cam_obj: np.ndarray, size: np.ndarray) -> np.ndarray:
    """The 8 corners (camera frame) of a box of ``size`` centred on the object frame."""
    local = _CORNER_SIGNS * (np.asarray(size, dtype=np.float64) / 2)
    return local @ T_cam_obj[:3, :3].T + T_cam_obj[:3, 3]


def projected_bbox(
    T_cam_obj: np.ndarray, size: np.ndarray, K: np.ndarray, width: int, height: int
) -> list[float] | None:
    """``[x1, y1, x2, y2]`` of the projected 3D box, clipped to the image; None if not in front."""
    corners = box_corners(T_cam_obj, size)
    if np.any(corners[:, 2] <= 0):
        return None
    uv = project_points(corners, K)
    x1, y1 = np.clip(uv.min(axis=0), 0, [width - 1, height - 1])
    x2, y2 = np.clip(uv.max(axis=0), 0, [width - 1, height - 1])
    return [float(x1), float(y1), float(x2), float(y2)]


def image_rows(images: list[ImageInput], codebook: Codebook, counter: Counter | None = None) -> pa.Table:
    """Schema-v1 rows of images, one per input, through ``schemas.columns.record_table`` (depth
    references are filled in later by the engine)."""
    n = len(images)
    Ks = [np.asarray(im.K, dtype=np.float64) for im in images]
    objects = [(r, o) for r, im in enumerate(images) for o in im.objects]
    hands = [(r, h) for r, im in enumerate(images) for h in im.hands]
    futures = [(r, h, k, k_s, T) for r, h in hands for k, k_s, T in h.future]

    def poses(rows: list[int], names: list[str], Ts: list[np.ndarray], **fields) -> Items:
        Ts = np.asarray(Ts, dtype=np.float64).reshape(-1, 4, 4)
        return Items(np.array(rows, dtype=np.int64), names, Ts[:, :3, 3], matrix_to_quat(Ts[:, :3, :3]), **fields)

    def bbox(r: int, o: ObjectInstance) -> list[float] | None:
        if o.bbox_xyxy is not None:
            return o.bbox_xyxy
        return projected_bbox(o.T_cam_obj, o.size, Ks[r], images[r].width, images[r].height)

    boxes = [bbox(r, o) for r, o in objects]
    T_ref = [np.zeros(16) if im.T_ref_cam is None else np.ravel(im.T_ref_cam).astype(np.float64) for im in images]
    return record_table(
        codebook,
        counter,
        dataset=[im.dataset for im in images],
        split=[im.split for im in images],
        kind=[im.kind for im in images],
        episode_id=[im.episode_id for im in images],
        frame_index=np.array([im.frame_index for im in images], dtype=np.int64),
        timestamp_s=[im.timestamp_s for im in images],
        view=[im.view for im in images],
        image=[im.image for im in images],
        width=np.array([im.width for im in images], dtype=np.int64),
        height=np.array([im.height for im in images], dtype=np.int64),
        K=np.array([K.ravel() for K in Ks]).reshape(n, 9),
        has_K=np.ones(n, dtype=bool),
        T_ref_cam=np.array(T_ref).reshape(n, 16),
        has_T_ref_cam=np.array([im.T_ref_cam is not None for im in images], dtype=bool),
        ref_frame=[im.ref_frame for im in images],
        instruction=[im.instructions for im in images],
        objects=poses(
            [r for r, _ in objects], [o.category for _, o in objects], [o.T_cam_obj for _, o in objects],
            size=np.array([o.size for _, o in objects], dtype=np.float64).reshape(-1, 3),
            instance_id=[o.instance_id for _, o in objects],
            bbox_xyxy=np.array([[np.nan] * 4 if b is None else b for b in boxes], dtype=np.float64).reshape(-1, 4),
            visibility=np.array([o.visibility for _, o in objects], dtype=np.float64),
            truncation=np.array([o.truncation for _, o in objects], dtype=np.float64),
            symmetry=[o.symmetry for _, o in objects],
        ),
        ego=poses([r for r, _ in hands], [h.name for _, h in hands], [h.T_cam_wrist for _, h in hands],
                  keypoints=[h.joints for _, h in hands]),
        waypoints=poses(
            [f[0] for f in futures], [f[1].name for f in futures], [f[4] for f in futures],
            offset_steps=np.array([f[2] for f in futures], dtype=np.int64),
            offset_s=np.array([f[3] for f in futures], dtype=np.float64),
        ),
        state=None,
        action=None,
        embodiment=["human_hand" if im.hands else None for im in images],
    )
