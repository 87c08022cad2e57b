"""Rows of one robot episode: the shared mapping from base-frame trajectories and calibrated
views to schema-v1 rows, used by every robot-trajectory converter.

Inputs are in the robot base frame; every ego pose and every future waypoint is moved into each
row's camera frame: ``T_cam_ee(t) = inv(T_base_cam(t)) @ T_base_ee(t)`` and, for a waypoint ``k``
steps ahead, ``inv(T_base_cam(t)) @ T_base_ee(t + k)`` (this row's camera, the future pose).
Waypoints past the episode end are omitted (``schemas.waypoints``). Everything is computed as arrays
over the whole episode and handed to the one table assembler, ``schemas.columns.record_table``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from converters.base import check_intrinsics, check_transforms
from schemas.columns import Items, list_of, record_table, repeated_list
from schemas.geometry import matrix_to_quat
from schemas.tokenizer import Codebook
from schemas.waypoints import future_steps


@dataclass
class ArmTrack:
    """One end-effector over an episode: ``T_base_ee (T, 4, 4)`` [m], gripper (T,) 0 open..1 closed."""

    name: str
    T_base_ee: np.ndarray
    gripper: np.ndarray | None


@dataclass
class ViewTrack:
    """One camera view over an episode. ``T_base_cam`` is ``(T, 4, 4)`` (moving cameras) or None
    (uncalibrated: rows carry the image and K but no poses). ``K`` None: rows carry the image and
    ``T_ref_cam`` but no poses. ``images[t]`` are encoded bytes."""

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
    timestamps: np.ndarray | None = None  # (T,) seconds from the episode start (default: step / fps)
    step_instructions: list[list[str]] | None = None  # per step, when the source annotates frames
    ref_frame: str = "robot_base"  # the frame T_base_ee and T_base_cam are expressed in

    def __post_init__(self) -> None:
        """Refuse what no row can be right with (InvalidInput naming the arm / view and the step)."""
        for arm in self.arms:
            check_transforms(arm.T_base_ee, f"episode {self.episode_id} arm {arm.name}")
        for view in self.views:
            if view.K is not None:
                check_intrinsics(view.K, f"episode {self.episode_id} view {view.view}")
            if view.T_base_cam is not None:
                check_transforms(view.T_base_cam, f"episode {self.episode_id} view {view.view} camera pose")


def _collect(ep: EpisodeInput, steps: np.ndarray, offsets: list[int], n_views: int) -> tuple[Items, Items]:
    """Ego and waypoint items of every row (rows ordered frame-major, views in order).

    Every (view, arm, offset) combination is first listed as index arrays (:func:`future_steps`:
    waypoints past the episode end are omitted), then all camera-frame poses are computed in one
    batched product: ``inv(T_base_cam[view, t]) @ T_base_ee[arm, t + k]``. Within a row, items are
    ordered by arm, then offset (ego items have offset 0).
    """
    T = len(ep.views[0].images)
    arms = sorted(ep.arms, key=lambda a: a.name)
    calibrated = [vi for vi, v in enumerate(ep.views) if v.T_base_cam is not None and v.K is not None]
    if not calibrated or not arms:
        return Items.none(), Items.none()
    T_cam_base = np.full((n_views, len(steps), 4, 4), np.nan)
    for vi in calibrated:
        T_cam_base[vi] = np.linalg.inv(ep.views[vi].T_base_cam[steps])
    T_base_ee = np.stack([arm.T_base_ee for arm in arms])  # (arms, T, 4, 4)

    parts = []  # (view, arm, row step index, future step, offset) per combination
    for vi in calibrated:
        for ai in range(len(arms)):
            index, future, offset = future_steps(steps, (0, *offsets), np.ones(T, dtype=bool))
            parts.append((np.full(len(index), vi), np.full(len(index), ai), index, future, offset))
    view_of, arm_of, step_of, future, offset = (np.concatenate(col) for col in zip(*parts, strict=True))
    T_cam_pose = T_cam_base[view_of, step_of] @ T_base_ee[arm_of, future]
    q = matrix_to_quat(T_cam_pose[:, :3, :3])
    names = np.array([arm.name for arm in arms], dtype=object)[arm_of]
    grippers = None if arms[0].gripper is None else np.stack([arm.gripper for arm in arms])[arm_of, future]
    rows = step_of * n_views + view_of

    def items(select: np.ndarray) -> Items:
        order = np.flatnonzero(select)[np.argsort(rows[select], kind="stable")]
        return Items(
            rows[order],
            names[order].tolist(),
            T_cam_pose[order, :3, 3],
            q[order],
            gripper=None if grippers is None else grippers[order],
            offset_steps=offset[order],
            offset_s=offset[order] / ep.fps,
        )

    return items(offset == 0), items(offset > 0)


def episode_rows(ep: EpisodeInput, codebook: Codebook, offsets: list[int], counter: Counter | None = None) -> pa.Table:
    """All rows of an episode, frame-major (the views of one frame adjacent, in view order)."""
    T = len(ep.views[0].images)
    steps = np.asarray(ep.keep_steps if ep.keep_steps is not None else np.arange(T), dtype=np.int64)
    views = ep.views
    n_views = len(views)
    n = len(steps) * n_views
    frame = np.repeat(steps, n_views)
    vidx = np.tile(np.arange(n_views), len(steps))
    ego, waypoints = _collect(ep, steps, offsets, n_views)

    T_ref = np.zeros((n, 16))
    for vi, view in enumerate(views):
        if view.T_base_cam is not None:
            T_ref[vi::n_views] = view.T_base_cam[steps].reshape(len(steps), 16)
    has_T = np.array([views[v].T_base_cam is not None for v in vidx])  # T_ref_cam needs no K; poses need both
    if ep.step_instructions is not None:
        per_row = [[s for s in dict.fromkeys(ep.step_instructions[f]) if s] for f in frame]
        instruction = list_of(pa.array([s for r in per_row for s in r], pa.string()), [len(r) for r in per_row])
    else:
        instruction = repeated_list([s for s in dict.fromkeys(ep.instructions) if s], pa.string(), n)
    return record_table(
        codebook,
        counter,
        dataset=ep.dataset,
        split=ep.split,
        kind="robot",
        episode_id=ep.episode_id,
        frame_index=frame,
        timestamp_s=frame / ep.fps if ep.timestamps is None else np.asarray(ep.timestamps, dtype=np.float64)[frame],
        view=[views[v].view for v in vidx],
        image=[views[v].images[f] for f, v in zip(frame, vidx, strict=True)],
        width=np.array([views[v].width for v in vidx]),
        height=np.array([views[v].height for v in vidx]),
        K=np.stack([np.zeros(9) if views[v].K is None else np.asarray(views[v].K).reshape(9) for v in vidx]),
        has_K=np.array([views[v].K is not None for v in vidx]),
        T_ref_cam=T_ref,
        has_T_ref_cam=has_T,
        ref_frame=np.where(has_T, ep.ref_frame, None).tolist(),
        instruction=instruction,
        objects=Items.none(),
        ego=ego,
        waypoints=waypoints,
        state=None if ep.state is None else np.asarray(ep.state)[frame],
        action=None if ep.action is None else np.asarray(ep.action)[frame],
        embodiment=ep.embodiment,
    )
