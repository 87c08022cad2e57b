"""Rows of one robot episode: the shared mapping from base-frame trajectories and calibrated
views to schema-v1 rows, used by every robot-trajectory converter.

Inputs are in the robot base frame; every ego pose and every future waypoint is moved into each
row's camera frame: ``T_cam_ee(t) = inv(T_base_cam(t)) @ T_base_ee(t)`` and, for a waypoint ``k``
steps ahead, ``inv(T_base_cam(t)) @ T_base_ee(t + k)`` (this row's camera, the future pose).
Waypoints past the episode end are omitted. Everything is computed as arrays over the whole
episode and assembled into Arrow columns without per-row Python objects.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from schemas.columns import fixed_list, list_of, pose_struct, repeated_list, table_from_columns
from schemas.geometry import matrix_to_quat, project_points
from schemas.record import DEPTH_TYPE, EGO_TYPE, IMAGE_TYPE, OBJECT_TYPE, WAYPOINT_TYPE, sample_id
from schemas.tokenizer import Codebook, encode_poses


@dataclass
class ArmTrack:
    """One end-effector over an episode: ``T_base_ee (T, 4, 4)`` [m], gripper (T,) 0 open..1 closed."""

    name: str
    T_base_ee: np.ndarray
    gripper: np.ndarray | None


@dataclass
class ViewTrack:
    """One camera view over an episode. ``T_base_cam`` is ``(T, 4, 4)`` (moving cameras) or None
    (uncalibrated: rows carry the image and K but no poses). ``images[t]`` are encoded bytes."""

    view: str
    K: np.ndarray | None  # None when the source has no intrinsics (rows without poses)
    width: int
    height: int
    images: list[bytes]
    T_base_cam: np.ndarray | None


@dataclass
class EpisodeInput:
    dataset: str
    split: str
    episode_id: str
    fps: float
    arms: list[ArmTrack]
    views: list[ViewTrack]
    instructions: list[str]
    state: np.ndarray | None = None  # (T, S)
    action: np.ndarray | None = None  # (T, A)
    embodiment: str | None = None
    keep_steps: np.ndarray | None = None  # steps that become rows (default: all)
    ref_frame: str = "robot_base"  # the frame T_base_ee and T_base_cam are expressed in


def waypoint_offsets(fps: float, count: int, spacing_s: float) -> list[int]:
    """Step offsets of the waypoints: ``k * spacing_s`` seconds ahead for k = 1..count."""
    return [int(round(k * spacing_s * fps)) for k in range(1, count + 1)]


@dataclass
class _Items:
    """Flat pose items in row order: ``row`` index, name, t, q, gripper, uv, in_view (+ offsets)."""

    row: np.ndarray
    name: np.ndarray
    t: np.ndarray
    q: np.ndarray
    gripper: np.ndarray | None
    uv: np.ndarray
    in_view: np.ndarray
    offset: np.ndarray | None = None


def _camera_items(T_cam_pose: np.ndarray, K: np.ndarray, width: int, height: int):
    """t, q, uv (NaN behind the camera), in_view of camera-frame poses ``(..., 4, 4)``."""
    t = T_cam_pose[..., :3, 3]
    q = matrix_to_quat(T_cam_pose[..., :3, :3])
    uv = project_points(t, K)
    in_view = (
        np.isfinite(uv[..., 0]) & (uv[..., 0] >= 0) & (uv[..., 0] < width) & (uv[..., 1] >= 0) & (uv[..., 1] < height)
    )
    return t, q, uv, in_view


def _collect(ep: EpisodeInput, steps: np.ndarray, offsets: list[int]) -> tuple[_Items, _Items]:
    """Ego and waypoint items of every row (rows ordered frame-major, views in order)."""
    T = len(ep.views[0].images)
    arms = sorted(ep.arms, key=lambda a: a.name)
    n_views = len(ep.views)
    ego_parts, wp_parts = [], []
    for vi, view in enumerate(ep.views):
        if view.T_base_cam is None or view.K is None:
            continue
        T_cam_base = np.linalg.inv(view.T_base_cam[steps])  # (S, 4, 4)
        rows = np.arange(len(steps)) * n_views + vi
        for arm in arms:
            grip = arm.gripper
            t, q, uv, inv = _camera_items(T_cam_base @ arm.T_base_ee[steps], view.K, view.width, view.height)
            ego_parts.append((rows, arm.name, t, q, None if grip is None else grip[steps], uv, inv, None))
            for k in offsets:
                ok = steps + k < T
                future = steps[ok] + k
                t, q, uv, inv = _camera_items(T_cam_base[ok] @ arm.T_base_ee[future], view.K, view.width, view.height)
                wp_parts.append(
                    (rows[ok], arm.name, t, q, None if grip is None else grip[future], uv, inv, np.full(ok.sum(), k))
                )
    return _merge(ego_parts), _merge(wp_parts)


def _merge(parts: list[tuple]) -> _Items:
    """Concatenate item parts and order them by row (stable: arm order, then offset, kept)."""
    if not parts:
        empty = np.zeros((0,))
        return _Items(
            empty.astype(int),
            empty.astype(object),
            np.zeros((0, 3)),
            np.zeros((0, 4)),
            None,
            np.zeros((0, 2)),
            empty.astype(bool),
            empty.astype(int),
        )
    rows = np.concatenate([p[0] for p in parts])
    order = np.argsort(rows, kind="stable")
    names = np.concatenate([np.full(len(p[0]), p[1], dtype=object) for p in parts])
    grips = None if parts[0][4] is None else np.concatenate([p[4] for p in parts])
    offs = None if parts[0][7] is None else np.concatenate([p[7] for p in parts])
    return _Items(
        rows[order],
        names[order],
        np.concatenate([p[2] for p in parts])[order],
        np.concatenate([p[3] for p in parts])[order],
        None if grips is None else grips[order],
        np.concatenate([p[5] for p in parts])[order],
        np.concatenate([p[6] for p in parts])[order],
        None if offs is None else offs[order],
    )


def _tokens(
    book: Codebook, n_rows: int, groups: list[_Items], width: np.ndarray, height: np.ndarray, counter: Counter | None
) -> pa.Array:
    """Per-row sequences ``bos view_start (pose sep)* view_end eos``: ego items, then waypoints."""
    sep = book.special_id("sep")
    head = [book.special_id("bos"), book.special_id("view_start")]
    tail = [book.special_id("view_end"), book.special_id("eos")]
    bodies: list[list[np.ndarray]] = [[] for _ in range(n_rows)]
    for items in groups:
        front = np.all(np.isfinite(items.uv), axis=1)  # behind the camera: no anchor, no tokens
        if not np.any(front):
            continue
        rows = items.row[front]
        ids = encode_poses(
            book,
            items.uv[front],
            items.t[front],
            items.q[front],
            width[rows],
            height[rows],
            gripper=None if items.gripper is None else items.gripper[front],
            counter=counter,
        )
        ids = np.concatenate([ids, np.full((len(ids), 1), sep)], axis=1)
        for r, block in zip(rows.tolist(), ids, strict=True):
            bodies[r].append(block)
    no_object = np.array([book.special_id("no_object")])
    seqs = [np.concatenate([head, *(b if b else [no_object]), tail]) for b in bodies]
    counts = np.array([len(s) for s in seqs])
    return list_of(pa.array(np.concatenate(seqs).astype(np.int32)), counts)


def episode_rows(ep: EpisodeInput, codebook: Codebook, offsets: list[int], counter: Counter | None = None) -> pa.Table:
    """All rows of an episode, frame-major (the views of one frame adjacent, in view order)."""
    T = len(ep.views[0].images)
    steps = np.asarray(ep.keep_steps if ep.keep_steps is not None else np.arange(T), dtype=np.int64)
    n_views = len(ep.views)
    n = len(steps) * n_views
    frame = np.repeat(steps, n_views)
    vidx = np.tile(np.arange(n_views), len(steps))
    views = ep.views
    width = np.array([views[v].width for v in vidx])
    height = np.array([views[v].height for v in vidx])
    ego, wps = _collect(ep, steps, offsets)

    calibrated = np.array([v.T_base_cam is not None and v.K is not None for v in views])
    has_K = np.array([views[v].K is not None for v in vidx])
    T_ref = np.zeros((n, 16))
    for vi, view in enumerate(views):
        if view.T_base_cam is not None:
            T_ref[vi::n_views] = view.T_base_cam[steps].reshape(len(steps), 16)
    has_pose = calibrated[vidx]
    instructions = [s for s in dict.fromkeys(ep.instructions) if s]

    def const(value: str | None) -> pa.Array:
        return pa.array([value] * n, type=pa.string())

    columns = {
        "sample_id": pa.array(
            [sample_id(ep.dataset, ep.episode_id, int(f), views[v].view) for f, v in zip(frame, vidx, strict=True)]
        ),
        "dataset": const(ep.dataset),
        "split": const(ep.split),
        "kind": const("robot"),
        "episode_id": const(ep.episode_id),
        "frame_index": pa.array(frame, type=pa.int32()),
        "timestamp_s": pa.array(frame / ep.fps, type=pa.float64()),
        "view": pa.array([views[v].view for v in vidx], type=pa.string()),
        "image": pa.StructArray.from_arrays(
            [
                pa.array([views[v].images[f] for f, v in zip(frame, vidx, strict=True)], type=pa.binary()),
                pa.nulls(n, pa.string()),
            ],
            fields=list(IMAGE_TYPE),
        ),
        "height": pa.array(height, type=pa.int32()),
        "width": pa.array(width, type=pa.int32()),
        "K": fixed_list(
            np.stack([np.zeros(9) if views[v].K is None else np.asarray(views[v].K).reshape(9) for v in vidx]),
            pa.float64(),
            valid=has_K,
        ),
        "T_ref_cam": fixed_list(T_ref, pa.float64(), valid=has_pose),
        "ref_frame": pa.array(np.where(has_pose, ep.ref_frame, None).tolist(), type=pa.string()),
        "depth": pa.nulls(n, DEPTH_TYPE),
        "instruction": repeated_list(instructions, pa.string(), n),
        "objects": list_of(pa.array([], type=OBJECT_TYPE), np.zeros(n, dtype=np.int64)),
        "ego": list_of(
            pose_struct(
                EGO_TYPE, ego.t, ego.q, ego.uv, name=ego.name.tolist(), gripper=ego.gripper, in_view=ego.in_view
            ),
            np.bincount(ego.row, minlength=n),
        ),
        "waypoints": list_of(
            pose_struct(
                WAYPOINT_TYPE,
                wps.t,
                wps.q,
                wps.uv,
                name=wps.name.tolist(),
                gripper=wps.gripper,
                in_view=wps.in_view,
                offset_steps=wps.offset,
                offset_s=wps.offset / ep.fps,
            ),
            np.bincount(wps.row, minlength=n),
        ),
        "state": _vectors(ep.state, frame, n),
        "action": _vectors(ep.action, frame, n),
        "embodiment": const(ep.embodiment),
        "tokens": _tokens(codebook, n, [ego, wps], width, height, counter),
    }
    return table_from_columns(columns)


def _vectors(values: np.ndarray | None, frame: np.ndarray, n: int) -> pa.Array:
    if values is None:
        return pa.nulls(n, pa.list_(pa.float32()))
    v = np.asarray(values, dtype=np.float32)[frame]
    return list_of(pa.array(v.reshape(-1)), np.full(n, v.shape[1]))
