"""The one assembler of record-schema-v1 tables (docs/schema.md), from NumPy arrays.

Both row builders feed it: ``converters.robot_rows`` (trajectories: arms and views over T steps,
moving cameras) and ``converters.object_rows`` (still images: objects, hands with keypoints,
per-view depth). They hand over per-row values and flat pose items in each row's camera frame;
:func:`record_table` derives what follows from those (``sample_id``, ``center_uv``, ``in_view``,
``tokens``), so every kind of row gets them computed one way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from schemas.geometry import project_points
from schemas.record import DEPTH_TYPE, EGO_TYPE, IMAGE_TYPE, OBJECT_TYPE, RECORD_SCHEMA, WAYPOINT_TYPE, sample_id
from schemas.tokenizer import ClipCounter, Codebook, PoseArrays, record_sequences


def fixed_list(values: np.ndarray, value_type: pa.DataType, valid: np.ndarray | None = None) -> pa.Array:
    """``fixed_size_list<value_type, k>`` from an ``(N, k)`` array; rows where ``valid`` is False are null."""
    values = np.asarray(values)
    n, k = values.shape
    flat = pa.array(np.nan_to_num(values.reshape(-1)) if valid is not None else values.reshape(-1), type=value_type)
    mask = None if valid is None else pa.array(~np.asarray(valid, dtype=bool))
    return pa.FixedSizeListArray.from_arrays(flat, k, mask=mask)


def offsets_from_counts(counts: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)


def list_of(values: pa.Array, counts: np.ndarray) -> pa.Array:
    """``list<...>`` whose row i holds the next ``counts[i]`` elements of ``values``."""
    return pa.ListArray.from_arrays(pa.array(offsets_from_counts(counts)), values)


def repeated_list(items: list, value_type: pa.DataType, n: int) -> pa.Array:
    """The same list in every one of ``n`` rows (e.g. an episode's instructions)."""
    values = pa.array(items * n, type=value_type)
    return list_of(values, np.full(n, len(items)))


def _nullable_floats(values: np.ndarray | None, n: int) -> pa.Array:
    if values is None:
        return pa.nulls(n, pa.float32())
    return pa.array(np.asarray(values, dtype=np.float32))


@dataclass
class Items:
    """Items of one pose-list column of a table, flat, grouped by row in ascending row order.

    ``row (N,)`` the row of each item; ``name (N,)`` object category or ego name (``EGO_NAMES``);
    ``t (N, 3)`` [m] and ``q (N, 4)`` canonical ``[w, x, y, z]`` in that row's OpenCV camera frame.
    ``gripper (N,)`` 0 open .. 1 closed (ego, waypoints; None: no gripper). Objects: ``size (N, 3)``
    [m] along the object's x / y / z, ``instance_id``, ``bbox_xyxy (N, 4)`` [px] (NaN row: none),
    ``visibility`` / ``truncation`` (-1 unknown), ``symmetry`` (None: none). Ego: ``keypoints``, one
    ``(J, 3)`` array [m] per item (None: none). Waypoints: ``offset_steps (N,)``, ``offset_s (N,)`` [s].
    """

    row: np.ndarray
    name: Sequence[str]
    t: np.ndarray
    q: np.ndarray
    gripper: np.ndarray | None = None
    size: np.ndarray | None = None
    instance_id: Sequence[str] | None = None
    bbox_xyxy: np.ndarray | None = None
    visibility: np.ndarray | None = None
    truncation: np.ndarray | None = None
    symmetry: Sequence[str | None] | None = None
    keypoints: Sequence[np.ndarray] | None = None
    offset_steps: np.ndarray | None = None
    offset_s: np.ndarray | None = None

    @classmethod
    def none(cls) -> Items:
        return cls(np.zeros(0, np.int64), [], np.zeros((0, 3)), np.zeros((0, 4)))


def _items_column(item_type: pa.DataType, items: Items, uv: np.ndarray, in_view: np.ndarray, n_rows: int) -> pa.Array:
    """A ``list<item_type>`` column of ``n_rows`` rows; ``uv`` rows with NaN become null ``center_uv``."""
    n = len(items.row)
    children = {
        "t": fixed_list(items.t, pa.float64()), "q": fixed_list(items.q, pa.float64()),
        "center_uv": fixed_list(uv, pa.float32(), valid=np.all(np.isfinite(uv), axis=1)),
        "gripper": _nullable_floats(items.gripper, n), "in_view": pa.array(in_view, type=pa.bool_()),
        "name": pa.array(list(items.name), type=pa.string()), "category": pa.array(list(items.name), type=pa.string()),
    }
    if item_type == OBJECT_TYPE:
        bbox = np.zeros((0, 4)) if items.bbox_xyxy is None else np.asarray(items.bbox_xyxy, dtype=np.float64)
        children |= {
            "instance_id": pa.array(list(items.instance_id or []), type=pa.string()),
            "bbox_xyxy": fixed_list(bbox.reshape(n, 4), pa.float32(), valid=~np.all(np.isnan(bbox), axis=1)),
            "size": fixed_list(np.zeros((0, 3)) if items.size is None else items.size, pa.float32()),
            "visibility": _nullable_floats(items.visibility, n), "truncation": _nullable_floats(items.truncation, n),
            "symmetry": pa.array(list(items.symmetry or []), type=pa.string()),
        }
    elif item_type == EGO_TYPE:
        joints = [np.zeros((0, 3))] * n if items.keypoints is None else list(items.keypoints)
        counts = np.array([len(j) for j in joints], dtype=np.int64)
        flat = np.concatenate([np.asarray(j, dtype=np.float64).reshape(-1, 3) for j in joints] or [np.zeros((0, 3))])
        children["keypoints"] = list_of(fixed_list(flat, pa.float32()), counts)
    else:
        none = np.zeros(0)  # Items.none()
        children["offset_steps"] = pa.array(none if items.offset_steps is None else items.offset_steps, pa.int32())
        children["offset_s"] = pa.array(none if items.offset_s is None else items.offset_s, pa.float32())
    struct = pa.StructArray.from_arrays([children[f.name] for f in item_type], fields=list(item_type))
    return list_of(struct, np.bincount(items.row, minlength=n_rows))


def _per_row(value, n: int, value_type: pa.DataType) -> pa.Array:
    """An Arrow array of ``n`` rows from an Arrow array, a sequence / array of n values, or one value for all."""
    if isinstance(value, pa.Array):
        return value
    if value is None or isinstance(value, str):
        return pa.array([value] * n, type=value_type)
    return pa.array(value, type=value_type)


def record_table(
    book: Codebook,
    counter: ClipCounter | None,
    *,
    dataset: str | Sequence[str],
    split: str | Sequence[str],
    kind: str | Sequence[str],
    episode_id: str | Sequence[str],
    frame_index: np.ndarray,
    timestamp_s: np.ndarray | Sequence[float | None],
    view: Sequence[str],
    image: Sequence[bytes],
    width: np.ndarray,
    height: np.ndarray,
    K: np.ndarray,
    has_K: np.ndarray,
    T_ref_cam: np.ndarray,
    has_T_ref_cam: np.ndarray,
    ref_frame: str | Sequence[str | None] | None,
    instruction: Sequence[Sequence[str]] | pa.Array,
    objects: Items,
    ego: Items,
    waypoints: Items,
    state: np.ndarray | None,
    action: np.ndarray | None,
    embodiment: str | Sequence[str | None] | None,
) -> pa.Table:
    """A table of ``n = len(frame_index)`` record rows, every schema-v1 column built here.

    Per-row arguments hold n values (a string or None: the same for every row). ``K (n, 9)`` and
    ``T_ref_cam (n, 16)`` are row-major, null where ``has_K`` / ``has_T_ref_cam`` is False; ``state``
    / ``action`` are ``(n, S)`` or None. ``center_uv`` is each item's ``t`` projected through its
    row's K (null behind the camera), ``in_view`` whether it falls inside the image, and ``tokens``
    come from :func:`schemas.tokenizer.record_sequences` over those same items (clipped values
    counted in ``counter``). ``depth`` is null: the engine fills it when it stores depth maps.
    """
    n = len(frame_index)
    frame_index = np.asarray(frame_index, dtype=np.int64)
    width, height = np.asarray(width), np.asarray(height)
    Ks = np.asarray(K, dtype=np.float64).reshape(n, 3, 3)
    names = {c: [value] * n if isinstance(value, str) else list(value)
             for c, value in (("dataset", dataset), ("episode_id", episode_id), ("view", view))}
    lists, pose_columns = {}, {}
    for column, item_type, items in (("objects", OBJECT_TYPE, objects), ("ego", EGO_TYPE, ego),
                                     ("waypoints", WAYPOINT_TYPE, waypoints)):
        row = np.asarray(items.row, dtype=np.int64)
        if np.any(np.diff(row) < 0):
            raise ValueError(f"{column} items must be grouped by row in ascending row order")
        uv = project_points(items.t, Ks[row]).reshape(-1, 2)
        u, v = uv[:, 0], uv[:, 1]
        in_view = np.isfinite(u) & (u >= 0) & (u < width[row]) & (v >= 0) & (v < height[row])
        pose_columns[column] = _items_column(item_type, items, uv, in_view, n)
        lists[column] = PoseArrays(row, np.asarray(list(items.name), dtype=object), uv, items.t, items.q,
                                   size=items.size, gripper=items.gripper, offset=items.offset_steps)
    tokens, lengths = record_sequences(book, width, height, lists, counter)
    sample_ids = [sample_id(d, e, int(f), v) for d, e, f, v in
                  zip(names["dataset"], names["episode_id"], frame_index, names["view"], strict=True)]
    columns = {
        "sample_id": pa.array(sample_ids, type=pa.string()),
        "dataset": pa.array(names["dataset"], type=pa.string()),
        "split": _per_row(split, n, pa.string()),
        "kind": _per_row(kind, n, pa.string()),
        "episode_id": pa.array(names["episode_id"], type=pa.string()),
        "frame_index": pa.array(frame_index, type=pa.int32()),
        "timestamp_s": _per_row(timestamp_s, n, pa.float64()),
        "view": pa.array(names["view"], type=pa.string()),
        "image": pa.StructArray.from_arrays(
            [pa.array(image, type=pa.binary()), pa.nulls(n, pa.string())], fields=list(IMAGE_TYPE)
        ),
        "height": pa.array(height, type=pa.int32()),
        "width": pa.array(width, type=pa.int32()),
        "K": fixed_list(Ks.reshape(n, 9), pa.float64(), valid=has_K),
        "T_ref_cam": fixed_list(np.asarray(T_ref_cam, dtype=np.float64).reshape(n, 16), pa.float64(),
                                valid=has_T_ref_cam),
        "ref_frame": _per_row(ref_frame, n, pa.string()),
        "depth": pa.nulls(n, DEPTH_TYPE),
        "instruction": _per_row(instruction, n, pa.list_(pa.string())),
        **pose_columns,
        "state": _vectors(state, n),
        "action": _vectors(action, n),
        "embodiment": _per_row(embodiment, n, pa.string()),
        "tokens": list_of(pa.array(tokens), lengths),
    }
    return pa.Table.from_arrays([columns[f.name].cast(f.type) for f in RECORD_SCHEMA], schema=RECORD_SCHEMA)


def _vectors(values: np.ndarray | None, n: int) -> pa.Array:
    """``list<float32>`` of ``n`` rows from ``(n, S)`` values (None: null in every row)."""
    if values is None:
        return pa.nulls(n, pa.list_(pa.float32()))
    v = np.asarray(values, dtype=np.float32)
    return list_of(pa.array(v.reshape(-1)), np.full(n, v.shape[1]))
