"""AgiBot World Beta raw episodes -> schema v1.  Source layout (the dataset root holds four folders;
OpenDriveLab/AgiBot-World ``scripts/convert_to_lerobot.py`` at 8185618, lines 494-496, 578-590;
AgibotTech/Genie-Envisioner ``gesim_video_gen_examples/get_example_gesim_inputs.py`` at 7e007c7, lines 48-71)::

    task_info/task_<T>.json
    observations/<T>/<E>/videos/<cam>_color.mp4            cam = head, hand_left, hand_right (+ 5 fisheyes)
    observations/<T>/<E>/depth/head_depth_<i:06d>.png      uint16 millimetres, head camera, one per frame
    parameters/<T>/<E>/parameters/camera/<cam>_intrinsic_params.json
    parameters/<T>/<E>/parameters/camera/<cam>_extrinsic_params_aligned.json
    proprio_stats/<T>/<E>/proprio_stats.h5

Episodes are the digit-named folders ``observations/<T>/<E>`` (ODL ``convert_to_lerobot.py:578-590``);
one work unit each. Where each field comes from:

* Arms ``left_arm`` / ``right_arm``: ``state/end/position`` ``(N, 2, 3)`` [m] and
  ``state/end/orientation`` ``(N, 2, 4)`` quaternion **x, y, z, w** of the flanges in the robot
  base frame, ``[:, 0]`` left, ``[:, 1]`` right (Genie-Envisioner ``get_example_gesim_inputs.py:15,30,40``
  builds ``end2base`` with ``Rotation.from_quat``; ``utils/get_traj_maps.py:40-44`` reorders
  ``[3, 0, 1, 2]`` for a w-first routine; huggingface/lerobot ``examples/port_datasets/agibot_hdf5/
  port_agibot.py:44`` at 066b81a "flange quaternion with xyzw"). The ego pose is the gripper tip,
  ``options.tip_offset_m`` (0.23 m) along the flange's +z (Genie-Envisioner ``utils/get_traj_maps.py:85-92``
  ``correct_matrix``; Pose-VLA uses 0.227 m).
* Grippers: ``state/effector/position`` ``(N, 2)`` holds raw readings from ``options.gripper_open``
  (35, fully open) to ``options.gripper_closed`` (120, fully closed) despite the dataset card's
  "open range in mm" (Genie-Envisioner ``utils/get_traj_maps.py:129-130`` divides by 120); mapped
  to 0 open .. 1 closed and clipped. A dexterous-hand episode (``(N, 12)`` joint angles) has no
  gripper value and no ``state`` / ``action``.
* Views ``head`` / ``left_wrist`` / ``right_wrist`` from ``head`` / ``hand_left`` / ``hand_right``:
  ``K`` from ``{"intrinsic": {"fx", "fy", "ppx", "ppy"}}`` for the stored video size (``fx != fy``
  on the real cameras); ``T_base_cam`` per frame from the aligned extrinsics, a list of
  ``{"extrinsic": {"rotation_matrix", "translation_vector"}}`` that maps camera (OpenCV axes) to
  base (Genie-Envisioner ``data/agibotworld_dataset.py:334-351`` reads ``c2w`` and inverts it to
  project; ``get_traj_maps.py:82,101-103`` projects ``K @ (w2c @ pose)``). Wrist cameras move:
  entry ``i`` belongs to frame ``i`` (ODL ``convert_to_lerobot.py:519-524``). Both arms are posed
  in every view; ``in_view`` says whether a tip projects inside the image.
* Images: every ``<cam>_color.mp4`` frame (AV1 in the release, ODL ``convert_to_lerobot.py:57-60``;
  H.264 re-encodes work too) decoded with PyAV and re-encoded as JPEG at ``options.jpeg_quality``.
* Depth (head rows): ``head_depth_<i:06d>.png / 1000`` metres (ODL ``convert_to_lerobot.py:485-488``);
  readings above ``options.depth_max_m`` (4 m) are set to 0 = no reading, as Pose-VLA's reader
  does (hetolin/PoseVLA ``data/ds_raw/agibot.py`` ``parse_depth``). An episode without a depth
  folder converts without depth (counted in the notes).
* Instructions: per frame, the task's ``task_name`` and the ``action_text`` of the
  ``label_info.action_config`` segment covering it, segments ``[start_frame, end_frame)``
  (lerobot ``port_agibot.py:244-249,354-361``); unlabelled frames get the task name only.
* ``timestamp_s`` from the h5 ``timestamp`` (ns), relative to the first frame.
* ``state`` = ODL's 20-vector ``[joint 14, effector 2, head 2, waist 2]`` (ODL ``convert_to_lerobot.py:509-511``)
  with the grippers mapped to 0..1; ``action`` = ODL's 22-vector ``[joint 14, effector 2, head 2,
  waist 2, robot velocity 2]`` (lines 515-517; ``action/effector/position`` is already 0 open ..
  1 closed, lerobot ``port_agibot.py:97``), or none when an action array's length differs from the state's.

Missing or unreadable files (camera JSON, h5, video, depth PNG) or inconsistent frame counts
quarantine that episode with the file and the reason; the other episodes convert.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from converters.base import (
    EpisodeRows,
    Rejected,
    UnitStats,
    WorkUnit,
    encode_jpeg,
    png_size,
    require,
    source_record,
)
from converters.egodex import decode_frames
from converters.robot_rows import ArmTrack, EpisodeInput, ViewTrack, episode_rows
from schemas.catalog import DatasetEntry
from schemas.converter_options import AgibotOptions
from schemas.geometry import intrinsics_matrix, make_transform, quat_to_matrix
from schemas.tokenizer import Codebook
from schemas.waypoints import waypoint_offsets

VERSION = "0.1.0"
CAMERAS = {"head": "head", "hand_left": "left_wrist", "hand_right": "right_wrist"}  # AgiBot name -> view
ARMS = ("left", "right")
STATE_NAMES = (
    [f"{arm}_joint_{i}" for arm in ARMS for i in range(7)]
    + [f"{arm}_gripper" for arm in ARMS]
    + ["head_yaw", "head_pitch", "waist_pitch", "waist_lift"]
)
ACTION_NAMES = [*STATE_NAMES, "velocity_x", "yaw_rate"]
STATE_KEYS = ("state/joint/position", "state/effector/position", "state/head/position", "state/waist/position")
ACTION_KEYS = (
    "action/joint/position",
    "action/effector/position",
    "action/head/position",
    "action/waist/position",
    "action/robot/velocity",
)


def flange_poses(f) -> np.ndarray:
    """``(2, N, 4, 4)`` flange poses (left, right) in the base frame from the xyzw quaternions."""
    position = np.asarray(require(f, "state/end/position"), dtype=np.float64)
    xyzw = np.asarray(require(f, "state/end/orientation"), dtype=np.float64)
    if position.ndim != 3 or position.shape[1:] != (2, 3) or xyzw.shape != (*position.shape[:2], 4):
        raise ValueError(
            f"state/end/position {position.shape} and state/end/orientation {xyzw.shape}: "
            f"expected (N, 2, 3) and (N, 2, 4)"
        )
    R = quat_to_matrix(xyzw[..., [3, 0, 1, 2]])
    return np.swapaxes(make_transform(R, position), 0, 1)


def gripper_closure(raw: np.ndarray, open_value: float, closed_value: float) -> np.ndarray:
    """Raw ``state/effector/position`` readings -> 0 open .. 1 closed (clipped)."""
    return np.clip((np.asarray(raw, dtype=np.float64) - open_value) / (closed_value - open_value), 0.0, 1.0)


def read_intrinsics(path: Path) -> np.ndarray:
    """``K`` [px] from ``{"intrinsic": {"fx", "fy", "ppx", "ppy"}}``."""
    data = json.loads(path.read_text())
    try:
        k = data["intrinsic"]
        return intrinsics_matrix(float(k["fx"]), float(k["fy"]), float(k["ppx"]), float(k["ppy"]))
    except (KeyError, TypeError) as e:
        raise ValueError(
            f"{path.name}: expected {{'intrinsic': {{fx, fy, ppx, ppy}}}} ({type(e).__name__}: {e})"
        ) from None


def read_extrinsics(path: Path) -> np.ndarray:
    """``(N, 4, 4)`` camera -> base [m] from the per-frame aligned extrinsics list."""
    data = json.loads(path.read_text())
    try:
        R = np.array([entry["extrinsic"]["rotation_matrix"] for entry in data], dtype=np.float64).reshape(-1, 3, 3)
        t = np.array([entry["extrinsic"]["translation_vector"] for entry in data], dtype=np.float64).reshape(-1, 3)
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(
            f"{path.name}: expected a list of {{'extrinsic': {{rotation_matrix, translation_vector}}}} "
            f"({type(e).__name__}: {e})"
        ) from None
    return make_transform(R, t)


def read_depth_mm(path: Path) -> np.ndarray:
    """uint16 millimetres of a depth PNG; ValueError for a truncated or undecodable file."""
    data = path.read_bytes()
    try:
        png_size(data)
    except ValueError as e:
        raise ValueError(f"{path.name}: {e}") from None
    mm = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if mm is None or mm.dtype != np.uint16 or mm.ndim != 2:
        raise ValueError(f"{path.name}: not a single-channel 16-bit depth PNG")
    return mm


def segment_texts(entry: dict | None, n: int) -> list[list[str]]:
    """Per frame ``[task_name, action_text]`` from a task_info episode entry (segments ``[start, end)``)."""
    if entry is None:
        return [[] for _ in range(n)]
    task = str(entry.get("task_name", "")).strip()
    texts = [[task] for _ in range(n)]
    for seg in entry.get("label_info", {}).get("action_config", []):
        for i in range(max(int(seg["start_frame"]), 0), min(int(seg["end_frame"]), n)):
            texts[i] = [task, str(seg.get("action_text", "")).strip()]
    return texts


class AgibotConverter:
    name = "agibot"
    version = VERSION

    def __init__(self, entry: DatasetEntry, source: Path, options: AgibotOptions):
        self.entry, self.source, self.options = entry, source, options
        self.episodes = sorted(
            (int(e.parent.name), int(e.name))
            for e in source.glob("observations/*/*")
            if e.is_dir() and e.name.isdigit() and e.parent.name.isdigit()
        )
        if not self.episodes:
            raise FileNotFoundError(f"{source}: no AgiBot World episodes (expected observations/<task>/<episode>/)")
        self.fps = options.fps
        self.quality = options.jpeg_quality
        self.tip_offset = options.tip_offset_m
        self.gripper_range = (options.gripper_open, options.gripper_closed)
        self.depth_max = options.depth_max_m
        self.offsets = waypoint_offsets(self.fps, options.waypoint_horizon.count, options.waypoint_horizon.spacing_s)

    def plan(self, limit_episodes: int | None = None) -> list[WorkUnit]:
        """One unit per episode folder."""
        episodes = self.episodes[:limit_episodes] if limit_episodes is not None else self.episodes
        return [WorkUnit(f"task_{t}_{e}", "train", {"task": t, "episode": e}) for t, e in episodes]

    def source_info(self) -> dict:
        files = [
            p
            for top in ("task_info", "observations", "parameters", "proprio_stats")
            for p in (self.source / top).rglob("*")
            if p.is_file()
        ]
        return source_record(self.source, "AgiBot World Beta raw", files)

    def dataset_metadata(self) -> dict:
        return {
            "fps": self.fps,
            "embodiment": self.entry.embodiment,
            "state_names": STATE_NAMES,
            "state_units": "joints rad, grippers 0 open..1 closed, head rad, waist pitch rad / lift m",
            "action_names": ACTION_NAMES,
            "action_units": "as state, + base velocity m/s and yaw rate rad/s",
            "ego_frame": f"gripper tip = flange + {self.tip_offset} m along flange +z, robot base frame",
            "views": list(CAMERAS.values()),
            "image_encoding": f"JPEG quality {self.quality}, re-encoded from the episode videos",
            "depth": f"head PNG mm / 1000, readings > {self.depth_max} m set to 0 (no reading)",
            "waypoint_offsets_steps": self.offsets,
        }

    def convert_unit(self, unit: WorkUnit, codebook: Codebook, stats: UnitStats) -> Iterator[EpisodeRows | Rejected]:
        import av

        task, episode = unit.payload["task"], unit.payload["episode"]
        try:
            yield self._convert(task, episode, codebook, stats)
        except (OSError, KeyError, ValueError, av.FFmpegError) as e:
            yield Rejected(f"{task}/{episode}", "read", f"{type(e).__name__}: {e}")

    def _task_entry(self, task: int, episode: int, stats: UnitStats) -> dict | None:
        path = self.source / "task_info" / f"task_{task}.json"
        entries = json.loads(path.read_text()) if path.is_file() else []
        entry = next((e for e in entries if int(e.get("episode_id", -1)) == episode), None)
        if entry is None:
            stats.notes[f"no task_info entry ({path.name}): no instructions"] += 1
        return entry

    def _views(self, task: int, episode: int, n: int) -> list[ViewTrack]:
        params = self.source / "parameters" / str(task) / str(episode) / "parameters" / "camera"
        videos = self.source / "observations" / str(task) / str(episode) / "videos"
        views = []
        for cam, view in CAMERAS.items():
            K = read_intrinsics(params / f"{cam}_intrinsic_params.json")
            c2b = read_extrinsics(params / f"{cam}_extrinsic_params_aligned.json")
            if len(c2b) != n:
                raise ValueError(f"{cam}_extrinsic_params_aligned.json has {len(c2b)} entries for {n} frames")
            video = videos / f"{cam}_color.mp4"
            if not video.is_file():
                raise FileNotFoundError(f"missing {video.relative_to(self.source)}")
            frames = decode_frames(video)
            if len(frames) != n:
                raise ValueError(f"{video.name} has {len(frames)} frames for {n} proprio rows")
            h, w = frames[0].shape[:2]
            views.append(ViewTrack(view, K, w, h, [encode_jpeg(im, self.quality) for im in frames], c2b))
        return views

    def _depth(self, task: int, episode: int, n: int, size: tuple[int, int], stats: UnitStats) -> list | None:
        folder = self.source / "observations" / str(task) / str(episode) / "depth"
        if not folder.is_dir():
            stats.notes["no depth folder: rows without depth"] += 1
            return None
        files = sorted(folder.glob("head_depth*.png"))
        if len(files) != n:
            raise ValueError(f"depth/ has {len(files)} head_depth PNGs for {n} frames")
        maps = []
        for path in files:
            mm = read_depth_mm(path)
            if mm.shape[::-1] != size:
                raise ValueError(f"{path.name} is {mm.shape[1]}x{mm.shape[0]}, the head video {size[0]}x{size[1]}")
            m = mm.astype(np.float64) / 1000.0
            maps.append(np.where(m > self.depth_max, 0.0, m))
        return maps

    def _convert(self, task: int, episode: int, codebook: Codebook, stats: UnitStats) -> EpisodeRows:
        import h5py

        path = self.source / "proprio_stats" / str(task) / str(episode) / "proprio_stats.h5"
        if not path.is_file():
            raise FileNotFoundError(f"missing {path.relative_to(self.source)}")
        with h5py.File(path, "r") as f:
            flanges = flange_poses(f)
            n = flanges.shape[1]
            state_parts = [np.asarray(require(f, k), dtype=np.float64).reshape(n, -1) for k in STATE_KEYS]
            action_parts = [np.asarray(require(f, k), dtype=np.float64) for k in ACTION_KEYS]
            stamps = np.asarray(require(f, "timestamp"), dtype=np.int64)
        if len(stamps) != n or np.any(np.diff(stamps) <= 0):
            raise ValueError(f"proprio_stats.h5 timestamp: {len(stamps)} values for {n} frames, must increase")
        effector = state_parts[1]
        gripper = gripper_closure(effector, *self.gripper_range) if effector.shape[1] == 2 else None
        action = None
        if gripper is None:  # (N, 12) hand joints: no gripper value, no 20-vector state / 22-vector action
            stats.notes["dexterous hands: no gripper value, state or action"] += 1
        elif all(len(a) == n for a in action_parts):
            state_parts[1] = gripper
            action = np.concatenate([a.reshape(n, -1) for a in action_parts], axis=1).astype(np.float32)
        else:
            state_parts[1] = gripper
            stats.notes["action length differs from state: no action"] += 1

        tip = make_transform(np.eye(3), [0.0, 0.0, self.tip_offset])
        views = self._views(task, episode, n)
        head = views[0]
        depth = self._depth(task, episode, n, (head.width, head.height), stats)
        episode_id = f"{task}/{episode}"
        ep = EpisodeInput(
            dataset=self.entry.name,
            split="train",
            episode_id=episode_id,
            fps=self.fps,
            arms=[
                ArmTrack(f"{arm}_arm", flanges[a] @ tip, None if gripper is None else gripper[:, a])
                for a, arm in enumerate(ARMS)
            ],
            views=views,
            instructions=[],
            state=None if gripper is None else np.concatenate(state_parts, axis=1).astype(np.float32),
            action=action,
            embodiment=self.entry.embodiment,
            timestamps=(stamps - stamps[0]) * 1e-9,
            step_instructions=segment_texts(self._task_entry(task, episode, stats), n),
        )
        rows = episode_rows(ep, codebook, self.offsets, stats.clipped_tokens)
        row_depth = None
        if depth is not None:  # rows are frame-major, views in CAMERAS order: head is every len(views)-th row
            row_depth = [depth[i // len(views)] if i % len(views) == 0 else None for i in range(rows.num_rows)]
        return EpisodeRows(episode_id, rows, row_depth)
