"""LIBERO original HDF5 (robomimic style) -> schema v1.  Source layout (LIBERO ``scripts/create_dataset.py:77-271``):

```
<source>/<suite>/<TASK>_demo.hdf5        one file per task; /data attrs problem_info (JSON with
                                          "problem_name", "language_instruction"), macros_image_convention
  /data/demo_<i>                          attr model_file (MuJoCo XML of the scene)
      obs/agentview_rgb, obs/eye_in_hand_rgb   (T, H, W, 3) uint8
      obs/ee_pos (T, 3), obs/ee_ori (T, 3)      grip-site position, HAND-body axis-angle (MuJoCo world)
      obs/gripper_states (T, 2)                 finger joint positions [m]
      obs/joint_states (T, 7)                   [rad]
      actions (T, 7)                            OSC delta [-1, 1]; gripper -1 open, +1 close
```

Where each field comes from (LIBERO ``scripts/create_dataset.py``, robosuite 1.4.0, the version
LIBERO pins in ``requirements.txt:10``) and the line that maps it:

* Images: robosuite's default "opengl" convention keeps the renderer's bottom-up rows
  (robosuite ``environments/robot_env.py:413-415`` with ``utils/mjcf_utils.py:93-96``; stored as
  ``macros_image_convention``, ``create_dataset.py:81``) -> ``image[::-1]`` (a vertical flip only),
  then JPEG at ``options.jpeg_quality`` (recorded in the manifest; the source has no encoded bytes).
* ``ee_pos`` / ``ee_ori`` are two different frames (``create_dataset.py:203-209``):
  ``robot0_eef_pos`` is the grip site ``gripper0_grip_site`` but ``robot0_eef_quat`` is the HAND
  BODY ``robot0_right_hand`` (robosuite ``robots/single_arm.py:304-309``), stored as
  ``quat2axisangle``. The ego is the grip site: ``T_world_hand = (R(ee_ori), ee_pos - R(ee_ori)
  t_hand_site)`` and ``T_world_ee = T_world_hand @ T_hand_site`` (world frame, ``ref_frame`` world),
  with ``T_hand_site`` chained through ``model_file`` (robosuite's Panda: the gripper body is turned
  -90 deg about z, ``models/assets/grippers/panda_gripper.xml:14``, and the site sits 0.097 m out,
  ``:20-21``).
* ``gripper`` = ``1 - finger_width / options.gripper_max_width_m`` (Panda: 0.08 m), 0 open.
* Cameras are not stored as data: they come from the demo's ``model_file`` (``env.sim.model.get_xml()``,
  ``create_dataset.py:155,266``). ``agentview`` is fixed in the world; ``robot0_eye_in_hand`` rides
  the hand (robosuite ``models/assets/robots/panda/robot.xml:238``): ``T_world_hand(t) @ T_hand_cam``.
  MuJoCo cameras have OpenGL axes -> ``opengl_to_opencv_camera_pose`` (what robosuite's
  ``utils/camera_utils.py:39-64`` returns); K from ``fovy`` (``converters.mjcf.fovy_intrinsics``).
  Without ``model_file``: robosuite's Panda hand constants above (every LIBERO suite mounts it,
  LIBERO ``libero/libero/envs/robots/mounted_panda.py:15,27``) and the agentview of the demo's scene,
  ``options.agentview_by_problem[problem_name]`` (each problem's ``_setup_camera``, e.g. LIBERO
  ``libero/libero/envs/problems/libero_tabletop_manipulation.py:187-198``).
* Pairing: row ``j`` holds the observation returned by ``env.step(actions[j])``
  (``create_dataset.py:175-177,201-221``), i.e. ``(o_{t+1}, a_t)``. Rows are re-paired to
  ``(o_t, a_t)`` like every other robot format: frame ``j`` gets ``actions[j + 1]``, the action taken
  from that observation; the last observation (no action was taken from it) is no row but still
  serves as a waypoint target.
* ``action`` gripper mapped ``(a + 1) / 2`` -> 0 open .. 1 close.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from converters.base import EpisodeRows, Rejected, UnitStats, WorkUnit, encode_jpeg, require, source_record
from converters.mjcf import camera_fovy, fovy_intrinsics, named_poses, relative_pose, world_pose
from converters.robot_rows import ArmTrack, EpisodeInput, ViewTrack, episode_rows
from schemas.catalog import DatasetEntry
from schemas.converter_options import LiberoOptions
from schemas.geometry import (
    axis_angle_to_matrix,
    compose,
    make_transform,
    opengl_to_opencv_camera_pose,
    quat_to_matrix,
)
from schemas.tokenizer import Codebook
from schemas.waypoints import waypoint_offsets

VERSION = "0.1.0"
AGENTVIEW, WRIST = "agentview", "wrist"
CAMERAS = {AGENTVIEW: ("agentview_rgb", "agentview"), WRIST: ("eye_in_hand_rgb", "robot0_eye_in_hand")}  # obs/ keys
HAND, GRIP_SITE = "robot0_right_hand", "gripper0_grip_site"
# robosuite 1.4.0's Panda, for demos without model_file: hand -> grip site
# (models/assets/grippers/panda_gripper.xml:14 gripper body quat, :20 eef body pos, :21 site at its origin)
# and hand -> eye-in-hand camera, OpenGL axes (models/assets/robots/panda/robot.xml:238)
PANDA_HAND_SITE = make_transform(quat_to_matrix(np.array([0.707107, 0, 0, -0.707107])), np.array([0, 0, 0.097]))
PANDA_HAND_EYE_GL = make_transform(quat_to_matrix(np.array([0, 0.707108, 0.707108, 0])), np.array([0.05, 0, 0]))
PANDA_EYE_FOVY = 75.0
STATE_NAMES = [
    "ee_pos.x",
    "ee_pos.y",
    "ee_pos.z",
    "ee_ori.ax",
    "ee_ori.ay",
    "ee_ori.az",
    "gripper_qpos.0",
    "gripper_qpos.1",
    *(f"joint.{i}" for i in range(7)),
]
ACTION_NAMES = ["dx", "dy", "dz", "dax", "day", "daz", "gripper"]


@dataclass(frozen=True)
class _Rig:
    """Fixed transforms of one demo [m]: ``T_hand_site`` (hand body -> grip site), ``T_hand_wrist``
    (hand body -> eye-in-hand camera, OpenCV axes), ``T_world_agent`` (agentview, OpenCV axes) and
    both cameras' vertical fields of view [deg]."""

    T_hand_site: np.ndarray
    T_hand_wrist: np.ndarray
    wrist_fovy: float
    T_world_agent: np.ndarray
    agent_fovy: float


def demo_keys(data) -> list[str]:
    """``demo_<i>`` groups in numeric order."""
    return sorted((k for k in data if k.startswith("demo_")), key=lambda k: int(k.split("_")[1]))


def unreadable_demo_count(path: Path, scan_bytes: int = 16 << 20) -> int:
    """How many demos a file h5py cannot open (truncated, damaged) held: the distinct ``demo_<i>``
    link names in its first ``scan_bytes`` (HDF5 keeps a group's link names in the group's local
    heap, written when the group is, near the file's start); at least 1, so a loss is never 0."""
    with open(path, "rb") as f:
        head = f.read(scan_bytes)
    return max(1, len(set(re.findall(rb"demo_(\d+)", head))))


class LiberoConverter:
    name = "libero"
    version = VERSION

    def __init__(self, entry: DatasetEntry, source: Path, options: LiberoOptions):
        self.entry, self.source, self.options = entry, source, options
        self.files = sorted(source.glob("**/*_demo.hdf5"))
        if not self.files:
            raise FileNotFoundError(f"{source}: no LIBERO files (expected <source>/<suite>/<TASK>_demo.hdf5)")
        self.fps = options.fps
        self.quality = options.jpeg_quality
        self.max_width = options.gripper_max_width_m
        self.offsets = waypoint_offsets(self.fps, options.waypoint_horizon.count, options.waypoint_horizon.spacing_s)

    def plan(self, limit_episodes: int | None = None) -> list[WorkUnit]:
        """One unit per task file (``limit_episodes`` counts demos across files)."""
        import h5py

        units, seen = [], 0
        for path in self.files:
            if limit_episodes is not None and seen >= limit_episodes:
                break
            try:
                with h5py.File(path, "r") as f:
                    n = len(demo_keys(f["data"]))
            except (OSError, KeyError):
                n = unreadable_demo_count(path)  # the unit will quarantine the file with the reason
            take = n if limit_episodes is None else min(n, limit_episodes - seen)
            units.append(WorkUnit(path.stem, "train", {"file": str(path), "demos": take}))
            seen += take
        return units

    def source_info(self) -> dict:
        return source_record(self.source, "original-hdf5", self.files)

    def dataset_metadata(self) -> dict:
        return {
            "fps": self.fps,
            "embodiment": self.entry.embodiment,
            "state_names": STATE_NAMES,
            "state_units": "grip-site position m, hand-body axis-angle rad (MuJoCo world), finger qpos m, joints rad",
            "action_names": ACTION_NAMES,
            "action_units": "OSC_POSE deltas in [-1, 1] (x0.05 m, x0.5 rad per step); gripper mapped to 0 open..1 "
            "close from the source's -1/+1",
            "ego_frame": "robosuite grip site gripper0_grip_site (position ee_pos; orientation the hand body's "
            "ee_ori turned by the hand->site rotation of model_file), MuJoCo world frame",
            "action_pairing": "(o_t, a_t): the source pairs each observation with the action that led to it, so "
            "frame t takes the next row's action and each demo's last observation is no row",
            "views": [AGENTVIEW, WRIST],
            "image_encoding": f"JPEG quality {self.quality} from raw arrays, "
            f"flipped upright from the opengl convention",
            "cameras": "from each demo's model_file MJCF (agentview in the world, eye-in-hand on the hand); "
            "K from fovy",
            "waypoint_offsets_steps": self.offsets,
        }

    def convert_unit(self, unit: WorkUnit, codebook: Codebook, stats: UnitStats) -> Iterator[EpisodeRows | Rejected]:
        import h5py

        path = Path(unit.payload["file"])
        try:
            f = h5py.File(path, "r")
        except OSError as e:
            yield Rejected(str(path), "read", f"cannot open HDF5 ({e})", episodes=unit.payload["demos"])
            return
        with f:
            try:
                data = f["data"]
                problem = json.loads(data.attrs["problem_info"])
                language, problem_name = problem["language_instruction"], str(problem.get("problem_name", "")).lower()
                opengl = str(data.attrs.get("macros_image_convention", "opengl")) == "opengl"
                keys = demo_keys(data)[: unit.payload["demos"]]
            except (KeyError, ValueError, OSError) as e:
                yield Rejected(
                    str(path),
                    "read",
                    f"no readable /data group with problem_info ({e})",
                    episodes=unit.payload["demos"],
                )
                return
            for key in keys:
                where = f"{path}:/data/{key}"
                try:
                    yield self._convert_demo(
                        data[key], f"{path.stem}/{key}", language, problem_name, opengl, codebook, stats
                    )
                except (KeyError, OSError, ValueError) as e:
                    yield Rejected(where, "read", f"{type(e).__name__}: {e}")

    def _rig(self, demo, problem_name: str, notes: Counter) -> _Rig:
        """The hand chain and cameras from the demo's ``model_file``, else robosuite's Panda and the
        catalog's agentview of the demo's scene."""
        xml = demo.attrs.get("model_file")
        if xml is not None:
            poses = named_poses(xml.decode() if isinstance(xml, bytes) else str(xml))
            agent, wrist = CAMERAS[AGENTVIEW][1], CAMERAS[WRIST][1]
            notes["cameras from model_file"] += 1
            return _Rig(
                relative_pose(poses, HAND, GRIP_SITE),
                opengl_to_opencv_camera_pose(relative_pose(poses, HAND, wrist)),
                camera_fovy(poses, wrist),
                opengl_to_opencv_camera_pose(world_pose(poses, agent)),
                camera_fovy(poses, agent),
            )
        scene = self.options.agentview_by_problem.get(problem_name)
        if scene is None:
            raise ValueError(f"demo has no model_file and the catalog has no agentview for problem {problem_name!r}")
        notes["cameras from robosuite's Panda and the catalog scene (no model_file)"] += 1
        T_world_agent_gl = make_transform(quat_to_matrix(np.array(scene["quat"], dtype=float)), scene["pos"])
        return _Rig(
            PANDA_HAND_SITE,
            opengl_to_opencv_camera_pose(PANDA_HAND_EYE_GL),
            PANDA_EYE_FOVY,
            opengl_to_opencv_camera_pose(T_world_agent_gl),
            self.options.agentview_fovy,
        )

    def _convert_demo(
        self, demo, episode_id: str, language: str, problem_name: str, opengl: bool, codebook: Codebook,
        stats: UnitStats,
    ) -> EpisodeRows:
        obs = require(demo, "obs")
        pos = np.asarray(require(obs, "ee_pos"), dtype=np.float64)
        ori = np.asarray(require(obs, "ee_ori"), dtype=np.float64)
        actions = np.asarray(require(demo, "actions"), dtype=np.float32).copy()
        if len(pos) < 2 or len(actions) != len(pos):
            raise ValueError(
                f"{len(pos)} observations and {len(actions)} actions: pairing each observation with the "
                f"action taken from it needs equal lengths of at least 2"
            )
        notes = Counter()
        rig = self._rig(demo, problem_name, notes)
        R_hand = axis_angle_to_matrix(ori)
        T_world_hand = make_transform(R_hand, pos - R_hand @ rig.T_hand_site[:3, 3])  # ee_pos is the site's
        T_world_ee = compose(T_world_hand, rig.T_hand_site)
        fingers = np.asarray(require(obs, "gripper_states"), dtype=np.float64)
        gripper = np.clip(1.0 - np.abs(fingers[:, 0] - fingers[:, 1]) / self.max_width, 0.0, 1.0)
        views = []
        for view, (key, _) in CAMERAS.items():
            frames = np.asarray(require(obs, key))
            upright = frames[:, ::-1] if opengl else frames
            width, height = frames.shape[2], frames.shape[1]
            if view == AGENTVIEW:
                K, T_world_cam = fovy_intrinsics(rig.agent_fovy, width, height), rig.T_world_agent
            else:
                K, T_world_cam = fovy_intrinsics(rig.wrist_fovy, width, height), compose(T_world_hand, rig.T_hand_wrist)
            images = [encode_jpeg(im, self.quality) for im in upright]
            views.append(ViewTrack(view, K, width, height, images, np.broadcast_to(T_world_cam, (len(pos), 4, 4))))
        actions[:, 6] = (actions[:, 6] + 1) / 2
        # frame t takes actions[t + 1], the action taken from o_t; the last frame's slot is never a row
        paired = np.concatenate([actions[1:], np.full_like(actions[:1], np.nan)])
        state = np.concatenate([pos, ori, fingers, require(obs, "joint_states")], axis=1).astype(np.float32)
        ep = EpisodeInput(
            dataset=self.entry.name,
            split="train",
            episode_id=episode_id,
            fps=self.fps,
            arms=[ArmTrack("arm", T_world_ee, gripper)],
            views=views,
            instructions=[language],
            state=state,
            action=paired,
            embodiment=self.entry.embodiment,
            keep_steps=np.arange(len(pos) - 1),
            ref_frame="world",
        )
        rows = episode_rows(ep, codebook, self.offsets, stats.clipped_tokens)
        stats.notes.update(notes)
        return EpisodeRows(episode_id, rows)
