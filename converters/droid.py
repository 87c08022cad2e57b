"""DROID (RLDS, tensorflow-datasets) -> schema v1 (docs/formats/droid.md). Source layout:

```
<source>/droid/<version>/                   dataset_info.json, features.json, droid-train.tfrecord-*
<source>/calibration/                       KarlP/droid side files (all optional):
    cam2base_extrinsics.json                {episode_id: {"<serial>": [x,y,z,rx,ry,rz], "quality_metric", ...}}
    cam2base_extrinsic_superset.json        same, both exterior cameras
    intrinsics.json                         {episode_id: {serial: [fx,cx,fy,cy] | {"cameraMatrix": [4] | 3x3, ...}}}
    camera_serials.json                     {episode_id: {ext1_cam_serial, ext2_cam_serial, wrist_cam_serial}}
    episode_id_to_path.json                 {episode_id: "<LAB>/success|failure/<date>/<time dir>"}
    keep_ranges_1_0_1.json                  {"<recording_folderpath>--<file_path>": [[start, end), ...]}
```

The RLDS steps are those of kpertsch/droid_dataset_builder ``droid/droid.py:53-84`` (feature
spec ``droid.py:122-229``); the 1.0.1 release adds ``language_instruction_2/_3`` and episode
metadata read by huggingface/lerobot ``examples/port_datasets/droid_rlds/port_droid.py``
(``extrinsics_exterior_cam_1/_2``, ``extrinsics_wrist_cam``, ...). Where each field comes from,
and the one line that maps it to ours:

* ``observation/cartesian_position`` = ``[x, y, z, roll, pitch, yaw]`` of the end-effector
  (Polymetis "wrist site", not the TCP) in the robot base, metres + SciPy Euler "xyz" ->
  ``T_base_ee = pose6_to_transform(...)``; float32 precision on disk.
* ``observation/gripper_position`` 0 = open, 1 = closed -> ``gripper`` as is.
* Exterior camera poses: ``T_base_cam = pose6_to_transform(cam2base 6-vector)`` from the
  calibration files when present, else the 1.0.1 ``episode_metadata/extrinsics_exterior_cam_N``
  (the original, noisier calibration; all-zero or absent vectors count as absent).
* Wrist camera: ``extrinsics_wrist_cam`` is its base-frame pose at the first step; the camera is
  rigid on the gripper, so ``T_ee_cam = inv(T_base_ee[0]) @ T_base_cam[0]`` and
  ``T_base_cam[t] = T_base_ee[t] @ T_ee_cam`` (changes every step).
* Intrinsics exist only in ``intrinsics.json`` (the RLDS release has none); they describe the
  sensor frames (1280x720 by default) and are rescaled to the stored 320x180 images with the
  exact pixel-centre rule. A view without them keeps every row with ``K`` null and no poses
  (``T_ref_cam`` still set when extrinsics are known); the run summary names the missing file.
* Images: JPEG bytes pass through untouched (``SkipDecoding``); headers are checked, not decoded.
* ``state`` = cartesian_position (6) + gripper_position (1) + joint_position (7); ``action`` =
  DROID's ``action`` (commanded cartesian position (6) + gripper (1), ``droid.py:77``), float32.
* Success / failure from ``episode_metadata/file_path``; up to three instructions, de-duplicated.

Quarantined: an episode with 0 steps, a corrupt JPEG, a non-finite / non-rigid pose. A malformed
``intrinsics.json`` entry costs only its view's K and poses (a quarantine record with
``episodes=0`` names the file, episode, serial and field). Nothing is guessed. Steps are read as
whole tensors per episode, batched inside the tf.data graph.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from converters.base import EpisodeRows, InvalidInput, Rejected, UnitStats, WorkUnit, jpeg_size
from converters.rlds import RldsSource
from converters.robot_rows import ArmTrack, EpisodeInput, ViewTrack, episode_rows
from schemas.catalog import DatasetEntry
from schemas.converter_options import DroidOptions
from schemas.geometry import compose, intrinsics_matrix, invert_transform, pose6_to_transform, resize_intrinsics
from schemas.tokenizer import Codebook
from schemas.waypoints import waypoint_offsets

VERSION = "0.1.0"
# RLDS image key -> (canonical view, metadata extrinsics key, camera_serials.json key)
VIEWS = (
    ("exterior_image_1_left", "exterior_1_left", "extrinsics_exterior_cam_1", "ext1_cam_serial"),
    ("exterior_image_2_left", "exterior_2_left", "extrinsics_exterior_cam_2", "ext2_cam_serial"),
    ("wrist_image_left", "wrist_left", "extrinsics_wrist_cam", "wrist_cam_serial"),
)
PATH_MARKER = "r2d2-data-full/"
STATE_NAMES = [
    *(f"cartesian_position.{k}" for k in ("x", "y", "z", "roll", "pitch", "yaw")),
    "gripper_position",
    *(f"joint_position.{i}" for i in range(7)),
]
ACTION_NAMES = [*(f"cartesian_position.{k}" for k in ("x", "y", "z", "roll", "pitch", "yaw")), "gripper_position"]
CALIBRATION_FILES = (
    "cam2base_extrinsics.json",
    "cam2base_extrinsic_superset.json",
    "intrinsics.json",
    "camera_serials.json",
    "episode_id_to_path.json",
    "keep_ranges_1_0_1.json",
)


def episode_path(file_path: str) -> str:
    """``<LAB>/success/<date>/<time>`` from an RLDS ``file_path`` (KarlP episode_id_to_path form)."""
    rel = file_path.split(PATH_MARKER, 1)[-1]
    return rel.removesuffix("/trajectory.h5")


class Calibration:
    """The KarlP/droid side files found in ``folder`` (any may be absent), loaded once; lookups by
    episode id (``episode_id_to_path.json`` maps RLDS paths to ids)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.present = {name: (folder / name).is_file() for name in CALIBRATION_FILES}
        self.data = {
            name: json.loads((folder / name).read_text()) if self.present[name] else {} for name in CALIBRATION_FILES
        }
        self.path_to_id = {v: k for k, v in self.data["episode_id_to_path.json"].items()}

    def extrinsics(self, eid: str, serial: str | None) -> tuple[np.ndarray, str] | None:
        """(cam->base 6-vector, file) for a camera under its bare serial key: KarlP/droid
        ``CalibrationExample.ipynb`` takes the key that ``isdigit()`` as the serial."""
        if serial is None:
            return None
        for name in ("cam2base_extrinsics.json", "cam2base_extrinsic_superset.json"):
            entry = self.data[name].get(eid, {})
            if serial in entry:
                return np.asarray(entry[serial], dtype=np.float64), name
        return None

    def intrinsics(self, eid: str, serial: str | None, default_wh: tuple[int, int]) -> tuple[np.ndarray, tuple] | None:
        """(K [px], (W, H) of the frames it describes), or None when the episode / camera has no
        entry or the entry is zero-filled (KarlP's mark for "unknown"). Entry forms: ``[fx, cx, fy,
        cy]`` (KarlP/droid README) or ``{"cameraMatrix": [fx, cx, fy, cy] | 3x3, "width", "height"}``
        (KarlP/droid ``CalibrationExample.ipynb``: ``fx, cx, fy, cy = intr["cameraMatrix"]``; the
        ZED SDK's nested ``[[fx, 0, cx], [0, fy, cy], [0, 0, 1]]``). A malformed entry raises
        ValueError naming the field."""
        entry = self.data["intrinsics.json"].get(eid, {}).get(serial) if serial else None
        if entry is None:
            return None
        values, wh, field = entry, default_wh, ""
        if isinstance(entry, dict):
            if "cameraMatrix" not in entry:
                raise ValueError(f"no 'cameraMatrix' key (keys: {sorted(entry)})")
            values, field = entry["cameraMatrix"], "['cameraMatrix']"
            if "width" in entry and "height" in entry:
                wh = _positive_size(entry["width"], entry["height"])
        K = _camera_matrix(values, field)
        if not np.any(K[:2]):
            return None
        if not (np.isfinite(K).all() and K[0, 0] > 0 and K[1, 1] > 0):
            raise ValueError(f"{field}: focal lengths must be finite and > 0 (fx = {K[0, 0]:g}, fy = {K[1, 1]:g})")
        return K, wh

    def missing_intrinsics(self, eid: str, serial: str | None) -> str:
        """Why a view has no intrinsics, naming the side files that would give them."""
        checks = (
            ("intrinsics.json", bool(serial) and serial in self.data["intrinsics.json"].get(eid, {})),
            ("camera_serials.json", serial is not None),
            ("episode_id_to_path.json", eid in self.data["episode_id_to_path.json"]),
        )
        lacking = [f"{name} {'lacks it' if self.present[name] else 'absent'}" for name, ok in checks if not ok]
        if not lacking:
            return "intrinsics.json entry zero-filled"
        return f"{', '.join(lacking)} in {self.folder} (KarlP/droid intrinsics.json would add K and poses)"


def _positive_size(width, height) -> tuple[int, int]:
    try:
        wh = (int(width), int(height))
    except (TypeError, ValueError):
        raise ValueError(f"['width'], ['height']: not integers ({width!r}, {height!r})") from None
    if min(wh) <= 0:
        raise ValueError(f"['width'], ['height']: must be > 0 ({wh[0]}, {wh[1]})")
    return wh


def _camera_matrix(values, field: str) -> np.ndarray:
    """3x3 K from KarlP's ``[fx, cx, fy, cy]`` or a nested 3x3 ``[[fx, s, cx], [0, fy, cy], [0, 0, 1]]``."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{field}: not a list of numbers ({values!r})") from None
    if array.shape == (4,):
        fx, cx, fy, cy = array
        return intrinsics_matrix(fx, fy, cx, cy)
    if array.shape == (3, 3):
        if np.any(array[:2]) and (np.any(array[[1, 2, 2], [0, 0, 1]]) or array[2, 2] != 1):
            raise ValueError(f"{field}: 3x3 matrix is not [[fx, s, cx], [0, fy, cy], [0, 0, 1]] ({values!r})")
        return array
    raise ValueError(f"{field}: shape {array.shape} ({values!r}), expected [fx, cx, fy, cy] or a 3x3 matrix")


class DroidConverter:
    name = "droid"
    version = VERSION
    reads_urls = True  # reads its source through path objects, a URL's included (converters/rlds.py)

    def __init__(self, entry: DatasetEntry, source: Path, options: DroidOptions):
        self.entry = entry
        self.source = source
        self.options = options
        self.rlds = RldsSource(source)
        self.tfds_dir = self.rlds.tfds_dir
        calib = options.calibration_dir
        self.calibration = Calibration(Path(calib) if calib else source / "calibration")
        self.sensor_wh = options.calibration_wh
        self.use_keep_ranges = options.use_keep_ranges
        self.offsets = waypoint_offsets(options.fps, options.waypoint_horizon.count, options.waypoint_horizon.spacing_s)

    # ----------------------------------------------------------------------------- planning
    def plan(self, limit_episodes: int | None = None) -> list[WorkUnit]:
        """One unit per TFDS shard file of the train split (truncated by ``limit_episodes``)."""
        return self.rlds.shard_units(limit_episodes)

    def source_info(self) -> dict:
        return {
            "path": str(self.source),
            "tfds_dir": str(self.tfds_dir),
            "version": self.rlds.version,
            "listing_sha256": self.rlds.listing_sha256(),
            "calibration_dir": str(self.calibration.folder) if self.calibration.folder.is_dir() else None,
        }

    def dataset_metadata(self) -> dict:
        return {
            "fps": self.options.fps,
            "embodiment": self.entry.embodiment,
            "state_names": STATE_NAMES,
            "state_units": "m, rad (Euler xyz), gripper 0 open..1 closed, joints rad",
            "action_names": ACTION_NAMES,
            "action_units": "m, rad (Euler xyz) absolute target in robot base; gripper 0..1",
            "ego_frame": "Polymetis end-effector (DROID 'wrist site'), no TCP offset",
            "views": [v[1] for v in VIEWS],
            "waypoint_offsets_steps": self.offsets,
            "calibration": "KarlP/droid cam2base_extrinsics(.superset) + intrinsics when present, else RLDS 1.0.1 "
            "episode_metadata extrinsics; wrist camera from its step-0 pose and the EE trajectory; views without "
            "intrinsics keep their rows with K null and no poses",
            "intrinsics_sensor_wh": list(self.sensor_wh),
        }

    # ------------------------------------------------------------------------------ reading
    def convert_unit(self, unit: WorkUnit, codebook: Codebook, stats: UnitStats) -> Iterator[EpisodeRows | Rejected]:
        for item in self.rlds.episodes(unit, [key for key, *_ in VIEWS]):
            if isinstance(item, Rejected):
                yield item
            else:
                yield from self._convert_episode(item[1], item[0], codebook, stats)

    def _convert_episode(
        self, episode: dict, index: int, codebook: Codebook, stats: UnitStats
    ) -> list[EpisodeRows | Rejected]:
        """The episode's rows, or its quarantine record; plus one record (``episodes=0``) per view
        whose ``intrinsics.json`` entry is malformed: that view keeps its rows without K and poses."""
        meta, steps = episode["episode_metadata"], episode["steps"]
        file_path = meta["file_path"].decode()
        rel = episode_path(file_path)
        eid = self.calibration.path_to_id.get(rel, rel)
        where = f"{self.tfds_dir.name}/train episode {index} ({eid})"
        obs = steps["observation"]
        cart = obs["cartesian_position"].astype(np.float64)
        T = len(cart)
        if T == 0:
            return [Rejected(where, "empty", "episode has 0 steps (steps dataset is empty)")]
        T_base_ee = pose6_to_transform(cart)
        gripper = obs["gripper_position"][:, 0].astype(np.float64)
        serials = self.calibration.data["camera_serials.json"].get(eid, {})

        sizes = {}
        for image_key, view, _, _ in VIEWS:
            try:
                sizes[view] = self._check_images(obs[image_key])
            except ValueError as e:
                return [Rejected(where, "image", f"view {view}: {e}")]

        notes = Counter()  # merged into the unit's stats only if the episode converts
        views, malformed = [], []
        for image_key, view, meta_key, serial_key in VIEWS:
            serial = serials.get(serial_key)
            try:
                intr = self.calibration.intrinsics(eid, serial, self.sensor_wh)
            except ValueError as e:
                malformed.append(Rejected(
                    f"{where} view {view}", "calibration",
                    f"{self.calibration.folder / 'intrinsics.json'}[{eid!r}][{serial!r}]{e}: "
                    "this view's rows are kept without K and poses", episodes=0,
                ))
                intr = None
            else:
                if intr is None:
                    notes[f"{view} rows with K null, no poses: {self.calibration.missing_intrinsics(eid, serial)}"] += 1
            K = None if intr is None else resize_intrinsics(intr[0], intr[1], sizes[view])
            T_base_cam = self._camera_track(eid, serial, view, meta, meta_key, T_base_ee, notes)
            views.append(ViewTrack(view, K, *sizes[view], list(obs[image_key]), T_base_cam))

        keep = None
        if self.use_keep_ranges:
            key = f"{meta['recording_folderpath'].decode()}--{file_path}"
            ranges = self.calibration.data["keep_ranges_1_0_1.json"].get(key)
            if ranges is not None:
                keep = np.unique(np.concatenate([np.arange(s, min(e, T)) for s, e in ranges] or [np.arange(0)]))
                notes["idle steps dropped"] += T - len(keep)
        notes["success episodes" if "/success/" in file_path else "failure episodes"] += 1
        state = np.concatenate([cart, obs["gripper_position"], obs["joint_position"]], axis=1).astype(np.float32)
        try:  # refuses non-finite or non-rigid poses and bad intrinsics
            ep = EpisodeInput(
                dataset=self.entry.name,
                split="train",
                episode_id=eid,
                fps=self.options.fps,
                arms=[ArmTrack("arm", T_base_ee, gripper)],
                views=views,
                instructions=[
                    steps[k][0].decode()
                    for k in ("language_instruction", "language_instruction_2", "language_instruction_3")
                    if k in steps  # _2, _3: 1.0.1 only
                ],
                state=state,
                action=steps["action"].astype(np.float32),
                embodiment=self.entry.embodiment,
                keep_steps=keep,
            )
        except InvalidInput as e:
            return [Rejected(where, "convert", str(e))]
        rows = episode_rows(ep, codebook, self.offsets, stats.clipped_tokens)
        stats.notes.update(notes)
        return [EpisodeRows(eid, rows), *malformed]

    @staticmethod
    def _check_images(images) -> tuple[int, int]:
        """(width, height) shared by every JPEG of a view; ValueError naming the bad step."""
        first = None
        for t, data in enumerate(images):
            try:
                size = jpeg_size(data)
            except ValueError as e:
                raise ValueError(f"step {t}: {e}") from None
            if first is None:
                first = size
            elif size != first:
                raise ValueError(f"step {t}: {size[0]}x{size[1]} JPEG, expected {first[0]}x{first[1]} like step 0")
        return first

    def _camera_track(self, eid, serial, view, meta, meta_key, T_base_ee, notes: Counter) -> np.ndarray | None:
        """``T_base_cam (T, 4, 4)`` of one view, or None when no calibration exists for it (counted)."""
        T = len(T_base_ee)
        if view.startswith("wrist"):
            pose6 = np.asarray(meta.get(meta_key, np.zeros(6)), dtype=np.float64)  # 1.0.1 only
            if not np.any(pose6):
                notes[f"{view} rows without T_ref_cam: no {meta_key} in episode_metadata"] += 1
                return None
            T_ee_cam = compose(invert_transform(T_base_ee[0]), pose6_to_transform(pose6))
            notes["wrist camera from episode_metadata + EE trajectory"] += 1
            return compose(T_base_ee, T_ee_cam)
        found = self.calibration.extrinsics(eid, serial)
        if found is not None:
            pose6, source = found
            notes[f"{view} extrinsics from {source}"] += 1
        else:
            pose6 = np.asarray(meta.get(meta_key, np.zeros(6)), dtype=np.float64)
            if not np.any(pose6):
                notes[f"{view} rows without T_ref_cam: no {meta_key} in episode_metadata or cam2base files"] += 1
                return None
            notes[f"{view} extrinsics from episode_metadata"] += 1
        return np.broadcast_to(pose6_to_transform(pose6), (T, 4, 4))
