"""Hands over a sequence -> :class:`converters.object_rows.HandInstance` s of one frame's camera.

Hand3D sources annotate hands in a world frame (ARCTIC, TACO, OakInk2) or in a camera that moves with the
head (H2O cam4, HOI4D, FPHA). A :class:`HandTrack` holds one hand's wrist poses and 21 joints per frame in
ONE reference frame (metres); :func:`hands_in_camera` expresses frame ``i``'s hand and its future wrists
(VIPA-VLA's waypoints, ``k`` frames later, :func:`schemas.waypoints.future_poses`) in frame ``i``'s camera,
``T_cam_ref[i]``, so waypoints stay right when the camera moves.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from converters.object_rows import HandInstance
from schemas.geometry import make_transform, transform_points
from schemas.hand_joints import wrist_frame
from schemas.waypoints import future_poses


@dataclass
class HandTrack:
    """``name`` (left_hand / right_hand); per frame ``T_ref_wrist`` (4, 4) and ``joints`` (21, 3) in the
    reference frame [m], ``None`` where the hand is not annotated."""

    name: str
    wrists: list[np.ndarray | None]
    joints: list[np.ndarray | None]

    @classmethod
    def from_joints(cls, name: str, joints: list[np.ndarray | None]) -> HandTrack:
        """A track of joint-only annotations: wrist = joint 0, oriented by :func:`wrist_frame`."""
        wrists = [None if j is None else make_transform(wrist_frame(j, name), j[0]) for j in joints]
        return cls(name, wrists, joints)

    def in_frame(self, T_new_ref: list[np.ndarray]) -> HandTrack:
        """The same track with frame ``i`` moved by ``T_new_ref[i]`` (e.g. camera -> world per frame)."""
        return HandTrack(
            self.name,
            [None if w is None else T @ w for T, w in zip(T_new_ref, self.wrists, strict=True)],
            [None if j is None else transform_points(T, j) for T, j in zip(T_new_ref, self.joints, strict=True)],
        )


def hands_in_camera(
    tracks: list[HandTrack], i: int, T_cam_ref: np.ndarray, offsets: list[int], fps: float
) -> list[HandInstance]:
    """Frame ``i``'s annotated hands in the camera ``T_cam_ref`` (4, 4), with the wrists ``k`` frames later
    (``k`` in ``offsets``) in that same camera."""
    hands = []
    for track in tracks:
        if track.wrists[i] is None:
            continue
        joints = transform_points(T_cam_ref, track.joints[i])
        future = future_poses(track.wrists, i, offsets, fps, T_cam_ref)
        hands.append(HandInstance(track.name, T_cam_ref @ track.wrists[i], joints, future))
    return hands
