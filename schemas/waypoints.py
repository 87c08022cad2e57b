"""Waypoints: which future ego poses a row carries (the record's ``waypoints``, docs/schema.md).

A row at step ``s`` carries, for each offset ``k`` of :func:`waypoint_offsets`, the pose at step
``s + k`` expressed in THIS row's camera frame, when the sequence has an annotated pose there; a
waypoint past the sequence end, or at an unannotated step, is omitted. :func:`future_steps` applies
that rule to whole trajectories as arrays (robot episodes), :func:`future_poses` to one frame's
hand track (hand datasets, where frames can lack an annotation).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def waypoint_offsets(fps: float, count: int, spacing_s: float) -> list[int]:
    """Step offsets of the waypoints: ``k * spacing_s`` seconds ahead for k = 1..count, at ``fps`` steps/s."""
    return [int(round(k * spacing_s * fps)) for k in range(1, count + 1)]


def future_steps(steps: np.ndarray, offsets: Sequence[int], annotated: np.ndarray) -> tuple[np.ndarray, ...]:
    """``(index, step, offset)`` of the waypoints of rows at ``steps``: for each offset ``k`` in order,
    then each row in order, ``index`` into ``steps``, the future step ``steps[index] + k`` and ``k``,
    kept where that step is inside the sequence (``annotated (T,)``) and annotated there."""
    steps = np.asarray(steps, dtype=np.int64)
    annotated = np.asarray(annotated, dtype=bool)
    index, future, offset = [], [], []
    for k in offsets:
        later = steps + k
        ok = np.flatnonzero(later < len(annotated))
        ok = ok[annotated[later[ok]]]
        index.append(ok)
        future.append(later[ok])
        offset.append(np.full(len(ok), k, dtype=np.int64))
    empty = [np.zeros(0, np.int64)]
    return tuple(np.concatenate(part or empty) for part in (index, future, offset))


def future_poses(
    poses: Sequence[np.ndarray | None] | Mapping[int, np.ndarray],
    step: int,
    offsets: Sequence[int],
    fps: float,
    T_cam_ref: np.ndarray | None = None,
) -> list[tuple[int, float, np.ndarray]]:
    """``(k, k / fps [s], T_cam_ref @ poses[step + k])`` for each offset ``k`` whose future pose exists.

    ``poses`` holds one 4x4 pose per step in a reference frame (None where not annotated), or maps
    annotated step numbers to poses; ``T_cam_ref`` (4, 4) moves them into the camera of ``step``
    (None: they already are in it)."""
    window = range(step, step + max(offsets, default=0) + 1)  # the horizon, not the whole sequence
    if isinstance(poses, Mapping):
        annotated = [i in poses for i in window]
    else:
        annotated = [i < len(poses) and poses[i] is not None for i in window]
    _, later, ks = future_steps(np.zeros(1, np.int64), offsets, np.array(annotated, dtype=bool))
    found = [poses[step + int(j)] for j in later]
    return [(int(k), int(k) / fps, T if T_cam_ref is None else T_cam_ref @ T) for k, T in zip(ks, found, strict=True)]
