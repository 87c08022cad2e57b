"""Build schema-v1 Arrow columns straight from NumPy arrays (no per-row Python objects).

Converters with many rows per episode (robot trajectories) compute poses as arrays and assemble
columns here; :func:`table_from_columns` checks the result against :data:`RECORD_SCHEMA`.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from schemas.record import EGO_TYPE, RECORD_SCHEMA, WAYPOINT_TYPE


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


def pose_struct(item_type: pa.DataType, t: np.ndarray, q: np.ndarray, uv: np.ndarray, **fields) -> pa.StructArray:
    """A struct array of ``ego`` or ``waypoints`` items; ``uv`` rows with NaN become null ``center_uv``."""
    n = len(t)
    uv_valid = np.all(np.isfinite(uv), axis=1)
    children = {
        "t": fixed_list(t, pa.float64()), "q": fixed_list(q, pa.float64()),
        "center_uv": fixed_list(uv, pa.float32(), valid=uv_valid),
        "gripper": _nullable_floats(fields.pop("gripper", None), n),
        "in_view": pa.array(fields.pop("in_view"), type=pa.bool_()),
        "name": pa.array(fields.pop("name"), type=pa.string()),
    }
    if item_type == EGO_TYPE:
        children["keypoints"] = fields.pop("keypoints", None) or list_of(
            pa.array([], type=pa.list_(pa.float32(), 3)), np.zeros(n, dtype=np.int64))
    elif item_type == WAYPOINT_TYPE:
        children["offset_steps"] = pa.array(fields.pop("offset_steps"), type=pa.int32())
        children["offset_s"] = pa.array(fields.pop("offset_s"), type=pa.float32())
    if fields:
        raise TypeError(f"unexpected fields {sorted(fields)}")
    return pa.StructArray.from_arrays([children[f.name] for f in item_type], fields=list(item_type))


def table_from_columns(columns: dict[str, pa.Array]) -> pa.Table:
    """A record table from complete columns (every schema column, each already of its type)."""
    missing = [f.name for f in RECORD_SCHEMA if f.name not in columns]
    if missing:
        raise KeyError(f"columns missing: {missing}")
    return pa.Table.from_arrays([columns[f.name].cast(f.type) for f in RECORD_SCHEMA], schema=RECORD_SCHEMA)
