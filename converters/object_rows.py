"""Rows of object / hand datasets: one row per (image, camera), objects already in the camera frame.

Every object-pose converter (Omni3D, BOP, Objectron, ...) reduces its source to
:class:`ImageInput` s holding camera-frame object poses ``T_cam_obj`` (OpenCV axes, metres) and
sizes along the object's own x/y/z; :func:`image_rows` builds the schema-v1 rows and tokens.
The 2D box defaults to the projected 3D box clipped to the image (what Pose-VLA encodes).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from converters.base import check_intrinsics, check_transforms
from schemas.geometry import matrix_to_quat, project_points
from schemas.record import ego_item, object_item, sample_id, to_table, waypoint_item
from schemas.tokenizer import Codebook, row_tokens

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
    """Schema-v1 rows of images (depth references are filled in later by the engine)."""
    rows = []
    for im in images:
        K = np.asarray(im.K, dtype=np.float64)
        objects = []
        for o in im.objects:
            bbox = (
                o.bbox_xyxy if o.bbox_xyxy is not None else projected_bbox(o.T_cam_obj, o.size, K, im.width, im.height)
            )
            objects.append(
                object_item(
                    o.category,
                    o.instance_id,
                    o.T_cam_obj[:3, 3],
                    matrix_to_quat(o.T_cam_obj[:3, :3]),
                    o.size,
                    K,
                    im.width,
                    im.height,
                    bbox_xyxy=bbox,
                    visibility=o.visibility,
                    truncation=o.truncation,
                    symmetry=o.symmetry,
                )
            )
        waypoints = [
            waypoint_item(h.name, k, k_s, T[:3, 3], matrix_to_quat(T[:3, :3]), K, im.width, im.height)
            for h in im.hands
            for k, k_s, T in h.future
        ]
        ego = [
            ego_item(
                h.name,
                h.T_cam_wrist[:3, 3],
                matrix_to_quat(h.T_cam_wrist[:3, :3]),
                K,
                im.width,
                im.height,
                keypoints=h.joints,
            )
            for h in im.hands
        ]
        row = {
            "sample_id": sample_id(im.dataset, im.episode_id, im.frame_index, im.view),
            "dataset": im.dataset,
            "split": im.split,
            "kind": im.kind,
            "episode_id": im.episode_id,
            "frame_index": im.frame_index,
            "timestamp_s": im.timestamp_s,
            "view": im.view,
            "image": {"bytes": im.image, "path": None},
            "height": im.height,
            "width": im.width,
            "K": K.ravel().tolist(),
            "T_ref_cam": None if im.T_ref_cam is None else np.asarray(im.T_ref_cam).ravel().tolist(),
            "ref_frame": im.ref_frame,
            "depth": None,
            "instruction": im.instructions,
            "objects": objects,
            "ego": ego,
            "waypoints": waypoints,
            "state": None,
            "action": None,
            "embodiment": "human_hand" if im.hands else None,
        }
        row["tokens"] = row_tokens(codebook, row, counter)
        rows.append(row)
    return to_table(rows)
