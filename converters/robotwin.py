"""RoboTwin 2.0 HDF5 episodes -> schema v1.  Source layout (RoboTwin-Platform/RoboTwin ``envs/utils/pkl2hdf5.py``):

```
<source>/<task>/<config>/data/episode{N}.hdf5      one episode per file
<source>/<task>/<config>/instructions/episode{N}.json   {"seen": [...], "unseen": [...]}
```

Three HDF5 generations exist; :func:`detect_generation` tells them apart by their keys:

* ``2.0``: ``/endpose/{left,right}_endpose`` (T, 7) = ``[x, y, z, qw, qx, qy, qz]`` (world) and
  ``/endpose/{left,right}_gripper`` (T,);
* ``2.0-flat`` (June-July 2025): ``/endpose`` (T, 14) = per arm ``[x, y, z, roll, pitch, yaw,
  gripper]`` with transforms3d ``sxyz`` Euler angles (= SciPy extrinsic "xyz");
* ``xpolicylab-v1.0`` (``/vision``, ``/state``, ``/action``): detected and quarantined with that
  reason: its end-effector pose layout is not verified yet.

Where each field comes from and the line that maps it:

* ``T_world_ee`` of ``left_arm`` / ``right_arm`` from the endpose (world frame) is the gripper
  centre (RoboTwin's TCP) in BOTH generations. The two generations record different points of
  the same frame (RoboTwin-Platform/RoboTwin ``envs/robot/robot.py`` ``_trans_endpose``: position
  ``ee.global_pose.p + R @ [dis, 0, 0]`` with ``dis = gripper_bias``, minus 0.12 m unless
  ``is_endpose``; ba236728 lines 588-602, 8187d5b lines 592-606). ``2.0-flat`` (8187d5b
  ``envs/_base_task.py:495``) records ``get_left_endpose()`` = ``is_endpose=True`` (the gripper
  centre, robot.py:567-569) as is; ``2.0`` (ba236728 ``envs/_base_task.py:478`` ->
  ``get_arm_pose`` -> ``get_left_ee_pose()``, robot.py:557-558) records ``is_endpose=False``, 0.12 m
  behind it along the frame's x axis (the approach axis), so :data:`EE_TO_TCP_M` is added back
  along ``R[:, 0]``. The rotation is the same in both.
* Grippers are 1 = open in RoboTwin -> ``gripper = 1 - g``.
* Cameras ``head_camera`` -> ``head``, ``left_camera`` -> ``left_wrist``, ``right_camera`` ->
  ``right_wrist``: ``extrinsic_cv`` (T, 3, 4) is world -> camera with OpenCV axes, so
  ``T_world_cam = inv([extrinsic_cv; 0 0 0 1])`` per frame. ``intrinsic_cv`` is SAPIEN's
  ``get_intrinsic_matrix()`` (``envs/camera/camera.py:299``); for RoboTwin's fovy cameras SAPIEN
  keeps ``cx = W / 2``, ``cy = H / 2`` (haosulab/SAPIEN ``src/sapien_renderer/camera_component.cpp``
  lines 225-226, 345-352) in the pixel-EDGE convention (pixel ``i`` spans ``[i, i + 1]``), so
  :func:`pixel_centre_intrinsics` moves the principal point by -0.5 px to OpenCV's pixel-centre
  convention used by the schema (``cx = W / 2 - 0.5``).
* Images: RoboTwin encodes its RGB arrays with ``cv2.imencode`` as if they were BGR, so the JPEG
  holds swapped channels. ``cv2.imdecode`` returns the true RGB array, which is re-encoded as a
  standard JPEG at ``options.jpeg_quality`` (recorded in the manifest).
* ``state`` = per arm ``[x, y, z, qw, qx, qy, qz, gripper]`` (16, gripper centre in the world,
  gripper 0 open);
  ``action`` = ``/joint_action/vector`` with the grippers mapped to 0 open .. 1 closed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from converters.base import EpisodeRows, Rejected, UnitStats, WorkUnit, encode_jpeg, require, source_record
from converters.robot_rows import ArmTrack, EpisodeInput, ViewTrack, episode_rows
from schemas.catalog import DatasetEntry
from schemas.converter_options import RobotwinOptions
from schemas.geometry import (
    crop_intrinsics,
    euler_xyz_to_matrix,
    invert_transform,
    make_transform,
    matrix_to_quat,
    quat_to_matrix,
)
from schemas.tokenizer import Codebook
from schemas.waypoints import waypoint_offsets

VERSION = "0.1.0"
CAMERAS = {"head_camera": "head", "left_camera": "left_wrist", "right_camera": "right_wrist"}
ARMS = ("left", "right")
STATE_NAMES = [f"{arm}.{k}" for arm in ARMS for k in ("x", "y", "z", "qw", "qx", "qy", "qz", "gripper")]
# [m] from get_*_ee_pose (is_endpose=False) to get_*_endpose / get_*_tcp_pose (is_endpose=True) along the
# endpose frame's x axis: RoboTwin-Platform/RoboTwin envs/robot/robot.py:598-601 at ba236728 (``dis -= 0.12``)
EE_TO_TCP_M = 0.12


def detect_generation(f) -> str:
    """``2.0`` | ``2.0-flat`` | ``xpolicylab-v1.0``; ValueError for anything else."""
    if "vision" in f and "state" in f:
        return "xpolicylab-v1.0"
    endpose = f.get("endpose")
    if endpose is None:
        raise ValueError(f"not a RoboTwin episode: no /endpose (top-level keys: {sorted(f.keys())})")
    if hasattr(endpose, "shape"):
        if endpose.shape[-1] != 14:
            raise ValueError(f"/endpose has shape {endpose.shape}, expected (T, 14) for the flat 2.0 layout")
        return "2.0-flat"
    return "2.0"


def pixel_centre_intrinsics(K_sapien: np.ndarray) -> np.ndarray:
    """SAPIEN's ``get_intrinsic_matrix()`` (principal point in pixel-edge coordinates, ``W / 2`` for a
    centred camera) -> K in the pixel-centre convention (``W / 2 - 0.5``) [px]."""
    return crop_intrinsics(K_sapien, 0.5, 0.5)


def arm_poses(f, generation: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{arm: (T_world_tcp (T, 4, 4) [m], gripper (T,) 0 open .. 1 closed)}``: the gripper centre
    (``_trans_endpose(is_endpose=True)``) in the world frame for every generation."""
    out = {}
    if generation == "2.0":
        for arm in ARMS:
            pose = np.asarray(require(f, f"endpose/{arm}_endpose"), dtype=np.float64)
            grip = np.asarray(require(f, f"endpose/{arm}_gripper"), dtype=np.float64)
            R = quat_to_matrix(pose[:, 3:7])
            out[arm] = (make_transform(R, pose[:, :3] + EE_TO_TCP_M * R[:, :, 0]), 1.0 - grip)
    else:
        flat = np.asarray(require(f, "endpose"), dtype=np.float64)
        for i, arm in enumerate(ARMS):
            block = flat[:, 7 * i : 7 * i + 7]
            out[arm] = (make_transform(euler_xyz_to_matrix(block[:, 3:6]), block[:, :3]), 1.0 - block[:, 6])
    return out


class RobotwinConverter:
    name = "robotwin"
    version = VERSION

    def __init__(self, entry: DatasetEntry, source: Path, options: RobotwinOptions):
        self.entry, self.source, self.options = entry, source, options
        self.files = sorted(
            source.glob("**/data/episode*.hdf5"), key=lambda p: (str(p.parent), int(re.sub(r"\D", "", p.stem) or 0))
        )
        if not self.files:
            raise FileNotFoundError(f"{source}: no RoboTwin episodes (expected <task>/<config>/data/episode<N>.hdf5)")
        self.fps = options.fps
        self.quality = options.jpeg_quality
        self.offsets = waypoint_offsets(self.fps, options.waypoint_horizon.count, options.waypoint_horizon.spacing_s)

    def _episode_id(self, path: Path) -> str:
        return path.relative_to(self.source).with_suffix("").as_posix().replace("/data/", "/")

    def plan(self, limit_episodes: int | None = None) -> list[WorkUnit]:
        """One unit per episode file."""
        files = self.files[:limit_episodes] if limit_episodes is not None else self.files
        return [
            WorkUnit(re.sub(r"[^A-Za-z0-9_.-]", "_", self._episode_id(p)), "train", {"file": str(p)}) for p in files
        ]

    def source_info(self) -> dict:
        return source_record(self.source, "RoboTwin 2.0 HDF5", self.files)

    def dataset_metadata(self) -> dict:
        return {
            "fps": self.fps,
            "embodiment": self.entry.embodiment,
            "state_names": STATE_NAMES,
            "state_units": "m, quaternion wxyz (world, gripper centre), gripper 0 open..1 closed",
            "action_names": "joint_action/vector: left_arm joints, left_gripper, right_arm joints, right_gripper",
            "action_units": "joint targets rad; grippers mapped to 0 open..1 closed from RoboTwin's 1 = open",
            "ego_frame": "RoboTwin gripper centre (_trans_endpose is_endpose=True; 2.0 ee_pose + 0.12 m on x), world",
            "views": list(CAMERAS.values()),
            "image_encoding": f"JPEG quality {self.quality}, re-encoded from RoboTwin's channel-swapped JPEGs",
            "waypoint_offsets_steps": self.offsets,
        }

    def convert_unit(self, unit: WorkUnit, codebook: Codebook, stats: UnitStats) -> Iterator[EpisodeRows | Rejected]:
        import h5py

        path = Path(unit.payload["file"])
        try:
            with h5py.File(path, "r") as f:
                generation = detect_generation(f)
                if generation == "xpolicylab-v1.0":
                    yield Rejected(
                        str(path),
                        "format",
                        "RoboTwin XPolicyLab v1.0 layout detected (/vision, /state): "
                        "its end-effector pose layout is not verified; not converted",
                    )
                    return
                yield self._convert(f, path, generation, codebook, stats)
        except (OSError, KeyError, ValueError) as e:
            yield Rejected(str(path), "read", f"{type(e).__name__}: {e}")

    def _instructions(self, path: Path) -> list[str]:
        side = path.parent.parent / "instructions" / f"{path.stem}.json"
        if not side.is_file():
            return []
        data = json.loads(side.read_text())
        return [*data.get("seen", []), *data.get("unseen", [])]

    def _convert(self, f, path: Path, generation: str, codebook: Codebook, stats: UnitStats) -> EpisodeRows:
        arms = arm_poses(f, generation)
        views = []
        for key, view in CAMERAS.items():
            group = require(f, f"observation/{key}")
            raw = np.asarray(require(group, "rgb"))
            rgb = [cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) for data in raw]
            if any(im is None for im in rgb):
                raise ValueError(
                    f"observation/{key}/rgb: undecodable JPEG at step {[im is None for im in rgb].index(True)}"
                )
            K = pixel_centre_intrinsics(np.asarray(require(group, "intrinsic_cv"), dtype=np.float64))
            extrinsic = np.asarray(require(group, "extrinsic_cv"), dtype=np.float64)
            T_cam_world = np.concatenate([extrinsic, np.broadcast_to([0.0, 0.0, 0.0, 1.0], (len(extrinsic), 1, 4))], 1)
            if np.max(np.abs(K - K[:1])) > 1e-6:
                raise ValueError(f"observation/{key}/intrinsic_cv varies over time; one K per view is supported")
            h, w = rgb[0].shape[:2]
            views.append(
                ViewTrack(
                    view, K[0], w, h, [encode_jpeg(im, self.quality) for im in rgb], invert_transform(T_cam_world)
                )
            )
        action = np.asarray(require(f, "joint_action/vector"), dtype=np.float32).copy()
        n_joints = (action.shape[1] - 2) // 2
        for col in (n_joints, 2 * n_joints + 1):
            action[:, col] = 1.0 - action[:, col]
        state = np.concatenate(
            [np.concatenate([T[:, :3, 3], matrix_to_quat(T[:, :3, :3]), g[:, None]], axis=1) for T, g in arms.values()],
            axis=1,
        ).astype(np.float32)
        episode_id = self._episode_id(path)
        ep = EpisodeInput(
            dataset=self.entry.name,
            split="train",
            episode_id=episode_id,
            fps=self.fps,
            arms=[ArmTrack(f"{arm}_arm", T, g) for arm, (T, g) in arms.items()],
            views=views,
            instructions=self._instructions(path),
            state=state,
            action=action,
            embodiment=self.entry.embodiment,
            ref_frame="world",
        )
        stats.notes[f"generation {generation}"] += 1
        return EpisodeRows(episode_id, episode_rows(ep, codebook, self.offsets, stats.clipped_tokens))
