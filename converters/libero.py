"""LIBERO original HDF5 (robomimic style) -> schema v1.  Source layout (formats.md 3.1-3.2):

```
<source>/<suite>/<TASK>_demo.hdf5        one file per task; /data attrs problem_info (JSON with
                                          "language_instruction"), macros_image_convention
  /data/demo_<i>                          attr model_file (MuJoCo XML of the scene)
      obs/agentview_rgb, obs/eye_in_hand_rgb   (T, H, W, 3) uint8
      obs/ee_pos (T, 3), obs/ee_ori (T, 3)      end-effector in the MuJoCo world, axis-angle
      obs/gripper_states (T, 2)                 finger joint positions [m]
      obs/joint_states (T, 7)                   [rad]
      actions (T, 7)                            OSC delta [-1, 1]; gripper -1 open, +1 close
```

Where each field comes from and the line that maps it:

* Images: robosuite's default "opengl" convention stores them bottom-up -> ``image[::-1]``,
  then JPEG at ``options.jpeg_quality`` (recorded in the manifest; the source has no encoded bytes).
* ``T_world_ee`` = ``(ee_pos, axis_angle_to_matrix(ee_ori))`` in the MuJoCo world (``ref_frame`` world).
* ``gripper`` = ``1 - finger_width / options.gripper_max_width_m`` (Panda: 0.08 m), 0 open.
* Cameras are not stored as data: they come from the demo's ``model_file`` XML. ``agentview``
  is fixed in the world; ``robot0_eye_in_hand`` rides the hand, so its pose is
  ``T_world_ee(t) @ T_site_cam`` with ``T_site_cam`` read between the grip site and the camera.
  MuJoCo cameras have OpenGL axes -> ``opengl_to_opencv_camera_pose``; K from ``fovy``
  (``converters.mjcf.fovy_intrinsics``). Without ``model_file``: ``options.agentview_pos`` /
  ``agentview_quat`` / ``agentview_fovy`` (the suite's scene constants), and no wrist pose.
* ``action`` = ``actions`` with the gripper mapped ``(a + 1) / 2`` -> 0 open .. 1 close.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from converters.base import EpisodeRows, Rejected, UnitStats, WorkUnit, encode_jpeg, require, source_record
from converters.mjcf import camera_fovy, fovy_intrinsics, named_poses, relative_pose
from converters.robot_rows import ArmTrack, EpisodeInput, ViewTrack, episode_rows, waypoint_offsets
from schemas.catalog import DatasetEntry
from schemas.geometry import (
    axis_angle_to_matrix,
    compose,
    make_transform,
    opengl_to_opencv_camera_pose,
    quat_to_matrix,
)
from schemas.tokenizer import Codebook

VERSION = "0.1.0"
AGENTVIEW, WRIST = "agentview", "wrist"
CAMERAS = {AGENTVIEW: ("agentview_rgb", "agentview"), WRIST: ("eye_in_hand_rgb", "robot0_eye_in_hand")}  # obs/ keys
GRIP_SITE = "gripper0_grip_site"
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


def demo_keys(data) -> list[str]:
    """``demo_<i>`` groups in numeric order."""
    return sorted((k for k in data if k.startswith("demo_")), key=lambda k: int(k.split("_")[1]))


class LiberoConverter:
    name = "libero"
    version = VERSION

    def __init__(self, entry: DatasetEntry, source: Path, options: dict):
        self.entry, self.source, self.options = entry, source, options
        self.files = sorted(source.glob("**/*_demo.hdf5"))
        if not self.files:
            raise FileNotFoundError(f"{source}: no LIBERO files (expected <source>/<suite>/<TASK>_demo.hdf5)")
        self.fps = entry.fps or 20.0
        self.quality = int(options.get("jpeg_quality", 95))
        self.max_width = float(options.get("gripper_max_width_m", 0.08))
        self.offsets = waypoint_offsets(self.fps, entry.waypoint_horizon.count, entry.waypoint_horizon.spacing_s)

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
                n = 1  # unreadable: the unit will quarantine it with the reason
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
            "state_units": "m, axis-angle rad (MuJoCo world), finger qpos m, joints rad",
            "action_names": ACTION_NAMES,
            "action_units": "OSC_POSE deltas in [-1, 1] (x0.05 m, x0.5 rad per step); gripper mapped to 0 open..1 "
            "close from the source's -1/+1",
            "ego_frame": "robosuite grip site (robot0_eef), MuJoCo world frame",
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
                language = json.loads(data.attrs["problem_info"])["language_instruction"]
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
                    yield self._convert_demo(data[key], f"{path.stem}/{key}", language, opengl, codebook, stats)
                except (KeyError, OSError, ValueError) as e:
                    yield Rejected(where, "read", f"{type(e).__name__}: {e}")

    def _cameras(self, demo, T_world_ee: np.ndarray, sizes: dict, notes: Counter) -> dict:
        """{view: (K, T_world_cam (T, 4, 4) or None)} from model_file, else catalog constants."""
        T = len(T_world_ee)
        xml = demo.attrs.get("model_file")
        if xml is not None:
            xml = xml.decode() if isinstance(xml, bytes) else str(xml)
            _, agent_name = CAMERAS[AGENTVIEW]
            T_world_agent = opengl_to_opencv_camera_pose(named_poses(xml)[agent_name][0])
            K_agent = fovy_intrinsics(camera_fovy(xml, agent_name), *sizes[AGENTVIEW])
            _, wrist_name = CAMERAS[WRIST]
            T_site_cam = opengl_to_opencv_camera_pose(relative_pose(xml, GRIP_SITE, wrist_name))
            K_wrist = fovy_intrinsics(camera_fovy(xml, wrist_name), *sizes[WRIST])
            notes["cameras from model_file"] += 1
            return {
                AGENTVIEW: (K_agent, np.broadcast_to(T_world_agent, (T, 4, 4))),
                WRIST: (K_wrist, compose(T_world_ee, T_site_cam)),
            }
        pos, quat = self.options.get("agentview_pos"), self.options.get("agentview_quat")
        if pos is None or quat is None:
            raise ValueError("demo has no model_file and the catalog gives no agentview_pos/agentview_quat")
        T_mj = make_transform(quat_to_matrix(np.array(quat, dtype=float)), np.array(pos, dtype=float))
        fovy = float(self.options.get("agentview_fovy", 45.0))
        notes["agentview from catalog constants (no model_file); wrist without pose"] += 1
        return {
            AGENTVIEW: (
                fovy_intrinsics(fovy, *sizes[AGENTVIEW]),
                np.broadcast_to(opengl_to_opencv_camera_pose(T_mj), (T, 4, 4)),
            ),
            WRIST: (fovy_intrinsics(float(self.options.get("wrist_fovy", 75.0)), *sizes[WRIST]), None),
        }

    def _convert_demo(
        self, demo, episode_id: str, language: str, opengl: bool, codebook: Codebook, stats: UnitStats
    ) -> EpisodeRows:
        obs = require(demo, "obs")
        pos = np.asarray(require(obs, "ee_pos"), dtype=np.float64)
        ori = np.asarray(require(obs, "ee_ori"), dtype=np.float64)
        T_world_ee = make_transform(axis_angle_to_matrix(ori), pos)
        fingers = np.asarray(require(obs, "gripper_states"), dtype=np.float64)
        gripper = np.clip(1.0 - np.abs(fingers[:, 0] - fingers[:, 1]) / self.max_width, 0.0, 1.0)
        arrays = {view: np.asarray(require(obs, key)) for view, (key, _) in CAMERAS.items()}
        sizes = {view: (a.shape[2], a.shape[1]) for view, a in arrays.items()}
        notes = Counter()
        cameras = self._cameras(demo, T_world_ee, sizes, notes)
        views = []
        for view, frames in arrays.items():
            upright = frames[:, ::-1] if opengl else frames
            K, T_world_cam = cameras[view]
            views.append(
                ViewTrack(view, K, *sizes[view], [encode_jpeg(im, self.quality) for im in upright], T_world_cam)
            )
        actions = np.asarray(require(demo, "actions"), dtype=np.float32).copy()
        actions[:, 6] = (actions[:, 6] + 1) / 2
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
            action=actions,
            embodiment=self.entry.embodiment,
            ref_frame="world",
        )
        rows = episode_rows(ep, codebook, self.offsets, stats.clipped_tokens)
        stats.notes.update(notes)
        return EpisodeRows(episode_id, rows)
