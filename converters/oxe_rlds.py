"""Generic Open X-Embodiment RLDS -> schema v1, driven by per-dataset configs that are DATA in
``catalog.yaml`` (in the style of Octo's ``OXE_DATASET_CONFIGS``). A config says:

```yaml
options:
  images: {view: observation_key, ...}         # which steps/observation images are which view
  image_fix: none                               # none | flipud | fliplr | rot180 (then re-encoded as JPEG)
  language: language_instruction               # a steps key, or observation/<key>
  state:
    key: state                                  # steps/observation/<key> -> the raw `state` column
    ee: {layout: xyz_euler_xyz, start: 0}       # end-effector pose inside it: a schemas/pose_layouts.py layout
         # optional rotation_offset: [[3], [3], [3]]: the state's rotation is R_ee @ rotation_offset.T
    gripper: {key: state, index: 6, open: 1.0, closed: 0.0}     # linear map to 0 open .. 1 closed
         # or {finger_qpos: [6, 7], max_width_m: 0.08}          # from two finger joint positions
  action: {keys: [action]}                      # concatenated: steps/<key>, or steps/action/<key> for dict actions
  cameras:                                      # optional, per view; NOTHING here = no poses, no K
    view: {T_base_cam: [16 floats], intrinsics: [fx, fy, cx, cy]}
       # or {mujoco_pos: [3], mujoco_quat: [w, x, y, z], fovy: deg}  (a MuJoCo camera, OpenGL axes)
  jpeg_quality: 95
```

These sources carry no calibration; rows get ``ego`` / ``waypoints`` only for views the catalog
gives a camera pose AND intrinsics for. Everything else (images, K when known, state, action,
instructions) is converted regardless, and the manifest says which views have poses. No
extrinsics are ever invented.

Bridge's state angles are not the gripper's orientation: rail-berkeley/bridge_data_robot
``widowx_envs/widowx_envs/base/robot_base_env.py:276-278`` records ``transform2state(eep, gripper,
default_rot)``, whose Euler angles are of ``R_ee @ default_rot.T``
(``widowx_envs/widowx_envs/utils/transformation_utils.py:126-134``; inverse ``state2transform``,
lines 136-140), with ``default_rot = Rz(workspace_rotation_angle_z = 0) @ DEFAULT_ROTATION``
(``widowx_envs/widowx_controller/src/widowx_controller/widowx_controller.py:44-46,203``;
``robot_base_env.py:141``): the angles are relative to a top-down gripper. The catalog's
``rotation_offset`` is that ``default_rot``, composed back by :func:`ee_transform`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from converters.base import EpisodeRows, Rejected, UnitStats, WorkUnit, encode_jpeg, image_size
from converters.mjcf import fovy_intrinsics
from converters.rlds import RldsSource
from converters.robot_rows import ArmTrack, EpisodeInput, ViewTrack, episode_rows
from schemas.catalog import DatasetEntry
from schemas.converter_options import OxeRldsOptions
from schemas.geometry import (
    intrinsics_matrix,
    make_transform,
    opengl_to_opencv_camera_pose,
    quat_to_matrix,
)
from schemas.pose_layouts import pose_from_layout
from schemas.tokenizer import Codebook
from schemas.waypoints import waypoint_offsets

VERSION = "0.1.0"
IMAGE_FIXES = {
    "none": None,
    "flipud": lambda im: im[::-1],
    "fliplr": lambda im: im[:, ::-1],
    "rot180": lambda im: im[::-1, ::-1],
}


def ee_transform(state: np.ndarray, layout: str, start: int = 0, rotation_offset=None) -> np.ndarray:
    """``(T, 4, 4)`` end-effector poses [m] from state vectors in a named layout; ``rotation_offset``
    (3x3, optional) is the fixed rotation the source's angles are relative to: ``R_ee = R_state @ offset``
    (Bridge: ``state2transform``, rail-berkeley/bridge_data_robot
    ``widowx_envs/widowx_envs/utils/transformation_utils.py:136-140``)."""
    T = pose_from_layout(np.asarray(state, dtype=np.float64)[:, start:], layout)
    if rotation_offset is not None:
        offset = np.asarray(rotation_offset, dtype=np.float64)
        if offset.shape != (3, 3) or not np.allclose(offset @ offset.T, np.eye(3), atol=1e-6):
            raise ValueError(f"ee rotation_offset must be a 3x3 rotation matrix, got {offset.tolist()}")
        T[:, :3, :3] = T[:, :3, :3] @ offset
    return T


def camera_from_config(cfg: dict, width: int, height: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(K, T_base_cam) of a catalog camera entry (either may be None when not given)."""
    if "mujoco_pos" in cfg:
        T_mj = make_transform(
            quat_to_matrix(np.array(cfg["mujoco_quat"], dtype=float)), np.array(cfg["mujoco_pos"], dtype=float)
        )
        K = fovy_intrinsics(float(cfg["fovy"]), width, height) if "fovy" in cfg else None
        return K, opengl_to_opencv_camera_pose(T_mj)
    K = intrinsics_matrix(*cfg["intrinsics"]) if cfg.get("intrinsics") else None
    T = np.array(cfg["T_base_cam"], dtype=float).reshape(4, 4) if cfg.get("T_base_cam") else None
    return K, T


class OxeRldsConverter:
    name = "oxe_rlds"
    version = VERSION
    reads_urls = True  # reads its source through path objects, a URL's included (converters/rlds.py)

    def __init__(self, entry: DatasetEntry, source: Path, options: OxeRldsOptions):
        self.entry, self.source, self.options = entry, source, options
        self.rlds = RldsSource(source)
        self.fps = options.fps
        self.quality = options.jpeg_quality
        self.fix = IMAGE_FIXES[options.image_fix]
        self.offsets = waypoint_offsets(self.fps, options.waypoint_horizon.count, options.waypoint_horizon.spacing_s)

    def plan(self, limit_episodes: int | None = None) -> list[WorkUnit]:
        return self.rlds.shard_units(limit_episodes)

    def source_info(self) -> dict:
        return {
            "path": str(self.source),
            "tfds_dir": str(self.rlds.tfds_dir),
            "version": self.rlds.version,
            "listing_sha256": self.rlds.listing_sha256(),
        }

    def dataset_metadata(self) -> dict:
        posed = [v for v, c in self.options.cameras.items() if c]
        return {
            "fps": self.fps,
            "embodiment": self.entry.embodiment,
            "state_source": self.options.state["key"],
            "action_source": self.options.action["keys"],
            "state_action_units": "raw source values (see the source's documentation)",
            "views": list(self.options.images),
            "views_with_poses": posed or "none: the source has no calibration and the catalog gives no camera pose",
            "image_encoding": "source bytes"
            if self.fix is None
            else f"JPEG quality {self.quality} after {self.options.image_fix}",
            "waypoint_offsets_steps": self.offsets,
        }

    def convert_unit(self, unit: WorkUnit, codebook: Codebook, stats: UnitStats) -> Iterator[EpisodeRows | Rejected]:
        for item in self.rlds.episodes(unit, list(self.options.images.values())):
            if isinstance(item, Rejected):
                yield item
                continue
            index, episode = item
            where = f"{self.rlds.tfds_dir.name}/train episode {index}"
            try:
                yield self._convert(index, episode, codebook, stats)
            except (KeyError, ValueError) as e:
                yield Rejected(where, "convert", f"{type(e).__name__}: {e}")

    def _lookup(self, steps: dict, key: str) -> np.ndarray:
        node = steps
        for part in key.split("/"):
            if not isinstance(node, dict) or part not in node:
                raise KeyError(f"steps/{key} not in the source")
            node = node[part]
        return node

    def _images(self, raw: list[bytes], view: str) -> tuple[list[bytes], tuple[int, int]]:
        if self.fix is None:
            sizes = {image_size(b) for b in raw}
            if len(sizes) != 1:
                raise ValueError(f"view {view}: images of different sizes {sorted(sizes)}")
            return list(raw), sizes.pop()
        out = []
        for t, data in enumerate(raw):
            bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            if bgr is None:
                raise ValueError(f"view {view} step {t}: undecodable image")
            out.append(encode_jpeg(self.fix(bgr[:, :, ::-1]), self.quality))
        return out, (bgr.shape[1], bgr.shape[0])

    def _gripper(self, steps: dict, state: np.ndarray) -> np.ndarray | None:
        cfg = self.options.state.get("gripper")
        if not cfg:
            return None
        if "finger_qpos" in cfg:
            i, j = cfg["finger_qpos"]
            return np.clip(1 - np.abs(state[:, i] - state[:, j]) / float(cfg["max_width_m"]), 0, 1)
        values = np.asarray(self._lookup(steps, f"observation/{cfg['key']}"), dtype=np.float64).reshape(len(state), -1)
        raw = values[:, cfg.get("index", 0)]
        return np.clip((raw - cfg["open"]) / (cfg["closed"] - cfg["open"]), 0, 1)

    def _convert(self, index: int, episode: dict, codebook: Codebook, stats: UnitStats) -> EpisodeRows:
        steps = episode["steps"]
        state_cfg = self.options.state
        state = np.asarray(self._lookup(steps, f"observation/{state_cfg['key']}"), dtype=np.float64)
        state = state.reshape(len(state), -1)
        arms = []
        if state_cfg.get("ee"):
            ee = state_cfg["ee"]
            T_base_ee = ee_transform(state, ee["layout"], ee.get("start", 0), ee.get("rotation_offset"))
            arms.append(ArmTrack("arm", T_base_ee, self._gripper(steps, state)))
        cameras = self.options.cameras
        views, notes = [], Counter()
        for view, key in self.options.images.items():
            images, (w, h) = self._images(list(self._lookup(steps, f"observation/{key}")), view)
            K, T_base_cam = camera_from_config(cameras[view], w, h) if cameras.get(view) else (None, None)
            track = None if T_base_cam is None or not arms else np.broadcast_to(T_base_cam, (len(state), 4, 4))
            views.append(ViewTrack(view, K, w, h, images, track))
            notes[f"{view}: {'poses' if track is not None and K is not None else 'no poses (no calibration)'}"] += 1
        action_parts = []
        action_root = steps["action"] if isinstance(steps.get("action"), dict) else steps
        for key in self.options.action["keys"]:
            if key not in action_root:
                raise KeyError(f"action key {key!r} not in the source")
            action_parts.append(np.asarray(action_root[key], dtype=np.float32).reshape(len(state), -1))
        language = self._lookup(steps, self.options.language)
        instructions = [s.decode() for s in dict.fromkeys(np.asarray(language).tolist()) if s]
        meta = episode.get("episode_metadata", {})
        episode_id = (
            meta["file_path"].decode()
            if "file_path" in meta
            else episode["episode_id"].decode()
            if "episode_id" in episode
            else f"train-{index:06d}"
        )
        rows = episode_rows(
            EpisodeInput(
                dataset=self.entry.name,
                split="train",
                episode_id=episode_id,
                fps=self.fps,
                arms=arms,
                views=views,
                instructions=instructions,
                state=state.astype(np.float32),
                action=np.concatenate(action_parts, axis=1),
                embodiment=self.entry.embodiment,
                ref_frame=self.options.ref_frame,
            ),
            codebook,
            self.offsets,
            stats.clipped_tokens,
        )
        stats.notes.update(notes)
        return EpisodeRows(episode_id, rows)
