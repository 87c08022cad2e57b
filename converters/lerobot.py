"""LeRobotDataset v2.0 / v2.1 / v3.0 -> schema v1, read the way LeRobot reads it.

Layout and fields follow huggingface/lerobot (``src/lerobot/datasets/``; v3.0 at tag ``v0.4.4``,
v2.x at ``v0.3.3``); the same rules, as a writer, are in ``pipelines/lerobot_format.py``:

```
<dataset>/meta/info.json                 codebase_version, fps, features, data_path, video_path, splits
v3.0: meta/tasks.parquet, meta/episodes/chunk-*/file-*.parquet (per episode: data file, global
      frame range, per video key chunk/file and from/to timestamps in the concatenated mp4)
      data/chunk-XXX/file-XXX.parquet (one row group per episode), videos/<key>/chunk-XXX/file-XXX.mp4
v2.x: meta/tasks.jsonl, meta/episodes.jsonl, data/chunk-XXX/episode_XXXXXX.parquet,
      videos/chunk-XXX/<key>/episode_XXXXXX.mp4 (one file per episode, timestamps from 0)
```

- A source may hold several datasets (a LeRobot cache: every folder with ``meta/info.json``):
  all convert into one output, episode ids prefixed by the dataset's path under the source.
- Views are the ``video`` / ``image`` features of ``meta/info.json`` (``observation.images.<view>``)
  unless the catalog maps them; depth maps (``info.is_depth_map``, or the legacy
  ``video.is_depth_map``; lerobot ``configs/video.py is_depth_map``) never become RGB: they go to
  the depth store of the view named in ``cameras.<view>.depth``, de-quantized as lerobot
  ``datasets/depth_utils.py dequantize_depth`` does (12-bit codes, log or linear between
  ``depth_min`` and ``depth_max`` metres with ``shift``).
- Images stored in the parquet (``use_videos=False``: dtype ``image``, struct of PNG bytes) are
  kept as their original bytes; video frames are looked up by TIMESTAMP (``from_timestamp +
  timestamp``, within 1 ms, as lerobot ``video_utils.decode_video_frames`` checks), never by
  counting, and re-encoded to JPEG once at ``jpeg_quality``.
- ``timestamp`` of each frame becomes ``timestamp_s``; ``task_index`` of each frame its
  instruction (one episode can hold several tasks); ``meta/info.json`` ``splits``
  (``{"train": "0:80", "val": "80:100"}``, episode ranges) give each episode its split.
- v3.0 episode reads touch only the row groups whose ``episode_index`` statistics contain the
  episode (LeRobot writes one row group per episode), not the whole data file.

LeRobot has no standard for poses, so the catalog entry's ``options`` say which columns hold them
(every name is checked against ``meta/info.json`` before anything converts):

```yaml
options:
  state_column: observation.state          # default: observation.state if present
  action_column: action                    # default: action if present
  ee_pose: {column: observation.ee_pose, layout: xyz_qxyzw}   # xyz_qxyzw | xyz_qwxyz | xyz_euler_xyz | matrix16
  gripper: {column: observation.gripper, open: 1.0, closed: 0.0}   # mapped linearly to 0 open .. 1 closed
  # bimanual: ee_pose: [{name: left_arm, column: ..., layout: ..., gripper: {...}}, {name: right_arm, ...}]
  cameras:                                  # view -> video/image key, optional calibration columns
    head: {video: observation.images.head, intrinsics: ..., extrinsics: ..., extrinsics_layout: xyz_qxyzw,
           depth: observation.images.head_depth}
  intrinsics_layout: fx_fy_cx_cy
  jpeg_quality: 95
```

Extrinsics are camera-to-robot (``T_base_cam``), one per frame (moving wrist cameras welcome).
A camera without calibration columns keeps its images and no poses (``K`` null if unknown).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from converters.base import EpisodeRows, Rejected, UnitStats, WorkUnit, encode_jpeg, image_size, source_record
from converters.robot_rows import ArmTrack, EpisodeInput, ViewTrack, episode_rows
from schemas.catalog import DatasetEntry
from schemas.converter_options import LerobotOptions
from schemas.geometry import intrinsics_matrix
from schemas.pose_layouts import pose_from_layout
from schemas.tokenizer import Codebook
from schemas.waypoints import waypoint_offsets

VERSION = "0.2.0"
TIMESTAMP_TOLERANCE_S = 1e-3
DEPTH_QMAX = 4095  # lerobot configs/video.py DEPTH_QMAX: 12-bit depth codes
DEPTH_DEFAULTS = {"depth_min": 0.01, "depth_max": 10.0, "shift": 3.5, "use_log": True}  # configs/video.py:62-65
IMAGE_PREFIX = "observation.images."


def intrinsics_from(values: np.ndarray, layout: str) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    if layout == "fx_fy_cx_cy":
        return intrinsics_matrix(v[0], v[1], v[2], v[3])
    if layout == "matrix9":
        return v.reshape(3, 3)
    raise ValueError(f"unknown intrinsics layout {layout!r}: use fx_fy_cx_cy or matrix9")


def decode_at_timestamps(path: Path, start_s: float, timestamps: np.ndarray, fmt: str = "rgb24") -> list[np.ndarray]:
    """Frames of ``path`` at ``start_s + timestamps`` (seconds), matched within 1 ms; ``fmt`` is
    PyAV's pixel format of the returned arrays (``rgb24``, or ``gray12le`` for depth codes)."""
    import av

    wanted = start_s + np.asarray(timestamps, dtype=np.float64)
    found: dict[int, np.ndarray] = {}
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        container.seek(int(max(float(wanted.min()) - 1.0, 0) / stream.time_base), stream=stream, backward=True)
        for frame in container.decode(stream):
            t = float(frame.pts * stream.time_base)
            if t > wanted.max() + TIMESTAMP_TOLERANCE_S:
                break
            i = int(np.argmin(np.abs(wanted - t)))
            if abs(wanted[i] - t) <= TIMESTAMP_TOLERANCE_S:
                found[i] = frame.to_ndarray(format=fmt)
    missing = [float(wanted[i]) for i in range(len(wanted)) if i not in found]
    if missing:
        raise ValueError(
            f"{path.name}: no video frame within {TIMESTAMP_TOLERANCE_S * 1e3:.0f} ms of "
            f"{len(missing)} timestamp(s), first {missing[0]:.4f} s"
        )
    return [found[i] for i in range(len(wanted))]


def dequantize_depth(codes: np.ndarray, info: dict) -> np.ndarray:
    """Metres from LeRobot's 12-bit depth codes (lerobot ``datasets/depth_utils.py dequantize_depth``)."""
    p = {k: info.get(f"video.{k}", info.get(k, DEPTH_DEFAULTS[k])) for k in DEPTH_DEFAULTS}
    lo, hi, shift = float(p["depth_min"]), float(p["depth_max"]), float(p["shift"])
    if p["use_log"]:
        log_lo, log_hi = np.log(lo + shift), np.log(hi + shift)
        depth = np.exp(codes.astype(np.float64) * (log_hi - log_lo) / DEPTH_QMAX + log_lo) - shift
    else:
        depth = codes.astype(np.float64) * (hi - lo) / DEPTH_QMAX + lo
    return np.clip(depth, lo, hi).astype(np.float32)


def is_depth_map(feature: dict) -> bool:
    """lerobot ``configs/video.py is_depth_map``: canonical ``info.is_depth_map`` or the legacy key."""
    info, video_info = feature.get("info") or {}, feature.get("video_info")
    return bool(
        info.get("is_depth_map")
        or info.get("video.is_depth_map")
        or (isinstance(video_info, dict) and video_info.get("video.is_depth_map"))
    )


def parse_splits(splits: dict, total_episodes: int) -> dict[int, str]:
    """Episode index -> split from ``meta/info.json`` ``splits`` (``{"train": "0:80", ...}``)."""
    out: dict[int, str] = {}
    for name, spec in (splits or {}).items():
        m = re.fullmatch(r"\s*(\d+)\s*:\s*(\d+)\s*", str(spec))
        if not m:
            raise ValueError(f"meta/info.json splits.{name}: {spec!r} is not an episode range 'start:end'")
        for e in range(int(m.group(1)), min(int(m.group(2)), total_episodes)):
            out[e] = "test" if name.startswith("test") else "val" if name.startswith(("val", "eval")) else "train"
    return out


@dataclass
class LerobotFolder:
    """One LeRobot dataset under the source: its root, ``meta/info.json`` and episode metadata."""

    root: Path
    prefix: str  # path under the source ("" when the source is the dataset itself)

    def __post_init__(self) -> None:
        info_path = self.root / "meta" / "info.json"
        try:
            self.info = json.loads(info_path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"{info_path}: unreadable ({e})") from None
        self.codebase = self.info.get("codebase_version", "")
        if self.codebase not in ("v2.0", "v2.1", "v3.0"):
            raise ValueError(f"{info_path}: codebase_version {self.codebase!r} is not v2.0, v2.1 or v3.0")
        self.features: dict = self.info.get("features", {})
        self.episodes = self._episodes()
        self.tasks = self._tasks()
        self.splits = parse_splits(self.info.get("splits"), len(self.episodes))
        self._footers: dict[Path, pq.FileMetaData] = {}  # data file -> its parsed footer (read once)

    def _episodes(self) -> dict[int, dict]:
        if self.codebase == "v3.0":
            files = sorted((self.root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
            if not files:
                raise ValueError(f"{self.root}/meta/episodes: no episode metadata parquet")
            rows = pa.concat_tables([pq.read_table(f) for f in files]).to_pylist()
        else:
            lines = (self.root / "meta" / "episodes.jsonl").read_text().splitlines()
            rows = [json.loads(x) for x in lines if x.strip()]
        return {int(e["episode_index"]): e for e in sorted(rows, key=lambda e: e["episode_index"])}

    def _tasks(self) -> dict[int, str]:
        if self.codebase == "v3.0":
            table = pq.read_table(self.root / "meta" / "tasks.parquet")
            text = "task" if "task" in table.column_names else "__index_level_0__"
            return dict(zip(table.column("task_index").to_pylist(), table.column(text).to_pylist(), strict=True))
        lines = (self.root / "meta" / "tasks.jsonl").read_text().splitlines()
        return {t["task_index"]: t["task"] for t in (json.loads(x) for x in lines if x.strip())}

    def episode_id(self, index: int) -> str:
        return f"{self.prefix}/episode_{index:06d}" if self.prefix else f"episode_{index:06d}"

    def data_path(self, ep: dict) -> Path:
        chunks = int(self.info.get("chunks_size", 1000))
        if self.codebase == "v3.0":
            return self.root / self.info["data_path"].format(
                chunk_index=ep["data/chunk_index"], file_index=ep["data/file_index"]
            )
        return self.root / self.info["data_path"].format(
            episode_chunk=ep["episode_index"] // chunks, episode_index=ep["episode_index"]
        )

    def video(self, ep: dict, key: str) -> tuple[Path, float]:
        """(mp4 path, start of this episode inside it [s])."""
        chunks = int(self.info.get("chunks_size", 1000))
        if self.codebase == "v3.0":
            path = self.info["video_path"].format(
                video_key=key, chunk_index=ep[f"videos/{key}/chunk_index"], file_index=ep[f"videos/{key}/file_index"]
            )
            return self.root / path, float(ep[f"videos/{key}/from_timestamp"])
        path = self.info["video_path"].format(
            episode_chunk=ep["episode_index"] // chunks, video_key=key, episode_index=ep["episode_index"]
        )
        return self.root / path, 0.0

    def frames(self, ep: dict) -> pa.Table:
        """The episode's frames in order, reading only the row groups that can hold them."""
        path = self.data_path(ep)
        index = int(ep["episode_index"])
        if path not in self._footers:
            self._footers[path] = pq.read_metadata(path)
        parquet = pq.ParquetFile(path, metadata=self._footers[path])
        groups = list(range(parquet.num_row_groups))
        column = parquet.schema_arrow.get_field_index("episode_index")
        if self.codebase == "v3.0" and column >= 0:
            groups = [g for g in groups if _may_hold(parquet.metadata.row_group(g).column(column), index)]
        table = parquet.read_row_groups(groups) if groups else parquet.schema_arrow.empty_table()
        table = table.filter(pc.equal(table.column("episode_index"), index))
        if table.num_rows != ep["length"]:
            raise ValueError(f"{path.name}: {table.num_rows} frames for episode {index}, meta says {ep['length']}")
        return table.sort_by("frame_index")


def _may_hold(column_chunk, value: int) -> bool:
    stats = column_chunk.statistics
    if stats is None or not stats.has_min_max:
        return True
    return stats.min <= value <= stats.max


def arm_specs(options: LerobotOptions) -> list[dict]:
    """End-effectors named by the options: ``ee_pose`` is one ``{column, layout, name}`` (with the
    top-level ``gripper``) or a list of them, each with its own ``gripper`` (bimanual robots)."""
    pose = options.ee_pose
    if not pose:
        return []
    if isinstance(pose, dict):
        return [{**pose, "gripper": options.gripper}]
    return list(pose)


def find_folders(source: Path) -> list[LerobotFolder]:
    """Every LeRobot dataset under ``source`` (a folder holding ``meta/info.json``)."""
    roots = sorted({p.parent.parent for p in source.glob("**/meta/info.json")})
    if not roots:
        raise FileNotFoundError(f"{source}: no LeRobot dataset (expected <source>/meta/info.json)")
    return [LerobotFolder(r, "" if r == source else r.relative_to(source).as_posix()) for r in roots]


def unit_stem(prefix: str, index: int) -> str:
    """Work-unit (shard) name: the dataset path made file-safe, then the episode."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", prefix).strip("._")
    return f"{safe}__episode_{index:06d}" if prefix else f"episode_{index:06d}"


class LerobotConverter:
    name = "lerobot"
    version = VERSION

    def __init__(self, entry: DatasetEntry, source: Path, options: LerobotOptions):
        self.entry, self.options, self.source = entry, options, source
        self.folders = find_folders(source)
        stems = [unit_stem(f.prefix, 0) for f in self.folders]
        clashes = {s for s in stems if stems.count(s) > 1}
        if clashes:
            names = [f.prefix for f, s in zip(self.folders, stems, strict=True) if s in clashes]
            raise ValueError(f"{source}: datasets {names} map to the same shard names; rename one folder")
        self.quality = options.jpeg_quality
        self.cameras = options.cameras or self._cameras_from_features(self.folders[0])
        self.arm_specs = arm_specs(options)
        self.state_col = options.state_column or self._default(self.folders[0], "observation.state")
        self.action_col = options.action_column or self._default(self.folders[0], "action")
        for folder in self.folders:
            self._check_mapping(folder)

    @staticmethod
    def _default(folder: LerobotFolder, name: str) -> str | None:
        return name if name in folder.features else None

    @staticmethod
    def _cameras_from_features(folder: LerobotFolder) -> dict:
        cams = {}
        for key, ft in folder.features.items():
            if ft.get("dtype") in ("video", "image") and not is_depth_map(ft):
                cams[key.removeprefix(IMAGE_PREFIX).replace(".", "_")] = {"video": key}
        if not cams:
            raise ValueError(f"{folder.root}/meta/info.json: no video or image feature to take views from")
        return cams

    def _check_mapping(self, folder: LerobotFolder) -> None:
        """Every column the options name exists in ``meta/info.json`` with the right kind."""
        problems = []
        feats = folder.features

        def need(what: str, name: str | None, kinds: tuple[str, ...] | None = None) -> None:
            if name is None:
                return
            if name not in feats:
                problems.append(f"{what} {name!r} is not a feature")
            elif kinds and feats[name].get("dtype") not in kinds:
                problems.append(f"{what} {name!r} has dtype {feats[name].get('dtype')!r}, expected one of {kinds}")

        need("state_column", self.state_col)
        need("action_column", self.action_col)
        for i, spec in enumerate(self.arm_specs):
            need(f"ee_pose[{i}].column", spec["column"])
            need(f"ee_pose[{i}].gripper.column", (spec.get("gripper") or {}).get("column"))
        for view, cam in self.cameras.items():
            need(f"cameras.{view}.video", cam.get("video"), ("video", "image"))
            need(f"cameras.{view}.intrinsics", cam.get("intrinsics"))
            need(f"cameras.{view}.extrinsics", cam.get("extrinsics"))
            need(f"cameras.{view}.depth", cam.get("depth"), ("video", "image"))
            if cam.get("depth") in feats and not is_depth_map(feats[cam["depth"]]):
                problems.append(f"cameras.{view}.depth {cam['depth']!r} is not flagged is_depth_map")
        if problems:
            raise ValueError(
                f"dataset {self.entry.name!r}: the catalog mapping does not match {folder.root}/meta/info.json: "
                + "; ".join(problems)
                + f". Available features: {', '.join(feats)}"
            )

    # ------------------------------------------------------------------------------ metadata
    def plan(self, limit_episodes: int | None = None) -> list[WorkUnit]:
        """One unit per episode, across every dataset under the source."""
        units = [
            WorkUnit(unit_stem(f.prefix, i), f.splits.get(i, "train"), {"folder": k, "episode_index": i})
            for k, f in enumerate(self.folders)
            for i in f.episodes
        ]
        return units[:limit_episodes] if limit_episodes is not None else units

    def source_info(self) -> dict:
        files = (p for p in self.source.rglob("*") if p.is_file())
        versions = sorted({f.codebase for f in self.folders})
        return source_record(self.source, f"LeRobotDataset {'/'.join(versions)}", files, datasets=len(self.folders))

    def dataset_metadata(self) -> dict:
        features = self.folders[0].features
        fps = sorted({float(f.info.get("fps") or self.options.fps) for f in self.folders})
        return {
            "fps": fps[0] if len(fps) == 1 else fps,
            "embodiment": self.entry.embodiment,
            "codebase_version": sorted({f.codebase for f in self.folders}),
            "lerobot_datasets": [f.prefix or "." for f in self.folders],
            "state_names": features.get(self.state_col, {}).get("names") if self.state_col else None,
            "action_names": features.get(self.action_col, {}).get("names") if self.action_col else None,
            "state_source_column": self.state_col,
            "action_source_column": self.action_col,
            "pose_mapping": {"ee_pose": self.arm_specs, "cameras": self.cameras},
            "image_encoding": f"videos: JPEG quality {self.quality}, decoded by timestamp; parquet images: as stored",
            "views": list(self.cameras),
        }

    # ---------------------------------------------------------------------------- conversion
    def convert_unit(self, unit: WorkUnit, codebook: Codebook, stats: UnitStats) -> Iterator[EpisodeRows | Rejected]:
        folder = self.folders[unit.payload["folder"]]
        ep = folder.episodes[unit.payload["episode_index"]]
        where = f"{folder.root} episode {ep['episode_index']}"
        try:
            yield self._convert(folder, ep, unit.split, codebook, stats)
        except (OSError, KeyError, ValueError, pa.ArrowException) as e:
            yield Rejected(where, "read", f"{type(e).__name__}: {e}")
        except Exception as e:  # noqa: BLE001 - PyAV raises its own error types for broken video
            if type(e).__module__.startswith("av"):
                yield Rejected(where, "video", f"{type(e).__name__}: {e}")
            else:
                raise

    def _arm(self, frames: pa.Table, spec: dict) -> ArmTrack:
        T_base_ee = pose_from_layout(self._column(frames, spec["column"]), spec["layout"])
        grip = spec.get("gripper")
        gripper = None
        if grip:
            raw = self._column(frames, grip["column"])[:, 0]
            gripper = np.clip((raw - grip["open"]) / (grip["closed"] - grip["open"]), 0.0, 1.0)
        return ArmTrack(spec.get("name", "arm"), T_base_ee, gripper)

    @staticmethod
    def _column(table: pa.Table, name: str) -> np.ndarray:
        if name not in table.column_names:
            raise KeyError(f"column {name!r} not in the data parquet (columns: {table.column_names})")
        col = table.column(name).combine_chunks()
        if pa.types.is_fixed_size_list(col.type) and col.null_count == 0:  # LeRobot's 1-D features: no Python rows
            return col.flatten().to_numpy(zero_copy_only=False).astype(np.float64).reshape(len(col), col.type.list_size)
        if pa.types.is_fixed_size_list(col.type) or pa.types.is_list(col.type):
            return np.asarray(col.to_pylist(), dtype=np.float64)
        return col.to_numpy(zero_copy_only=False).astype(np.float64)[:, None]

    def _images(self, folder: LerobotFolder, ep: dict, frames: pa.Table, key: str, ts: np.ndarray) -> list[bytes]:
        """Encoded images of ``key`` for every frame: parquet image bytes as stored, or video
        frames re-encoded to JPEG."""
        if folder.features[key].get("dtype") == "image":
            images = [item["bytes"] for item in frames.column(key).to_pylist()]
            for i, data in enumerate(images):
                try:
                    image_size(data)
                except ValueError as e:
                    raise ValueError(f"{key} frame {i}: {e}") from None
            return images
        path, start = folder.video(ep, key)
        return [encode_jpeg(im, self.quality) for im in decode_at_timestamps(path, start, ts)]

    def _depth(self, folder: LerobotFolder, ep: dict, key: str, ts: np.ndarray) -> list[np.ndarray]:
        feature = folder.features[key]
        path, start = folder.video(ep, key)
        info = feature.get("info") or feature.get("video_info") or {}
        return [dequantize_depth(c, info) for c in decode_at_timestamps(path, start, ts, fmt="gray12le")]

    def _convert(self, folder: LerobotFolder, ep: dict, split: str, codebook: Codebook, stats: UnitStats):
        frames = folder.frames(ep)
        fps = float(folder.info.get("fps") or self.options.fps)
        timestamps = frames.column("timestamp").to_numpy().astype(np.float64)
        if np.any(np.diff(timestamps) <= 0):
            raise ValueError(f"timestamps of episode {ep['episode_index']} are not increasing")
        arms = [self._arm(frames, spec) for spec in self.arm_specs]
        views, depth = [], []
        layout = self.options.intrinsics_layout
        for view, cam in self.cameras.items():
            images = self._images(folder, ep, frames, cam["video"], timestamps)
            K = T_base_cam = None
            if cam.get("intrinsics"):
                per_frame = self._column(frames, cam["intrinsics"])
                if np.max(np.abs(per_frame - per_frame[:1])) > 1e-6:
                    raise ValueError(
                        f"{cam['intrinsics']}: intrinsics change within the episode; one K per view is supported"
                    )
                K = intrinsics_from(per_frame[0], layout)
            if cam.get("extrinsics") and arms:
                T_base_cam = pose_from_layout(
                    self._column(frames, cam["extrinsics"]), cam.get("extrinsics_layout", "xyz_qxyzw")
                )
            w, h = image_size(images[0])
            views.append(ViewTrack(view, K, w, h, images, T_base_cam))
            depth.append(self._depth(folder, ep, cam["depth"], timestamps) if cam.get("depth") else None)
            stats.notes[f"{view}: {'calibrated' if K is not None and T_base_cam is not None else 'no poses'}"] += 1
        if "task_index" in frames.column_names:
            step_instructions = [
                [folder.tasks[t]] if t in folder.tasks else [] for t in frames.column("task_index").to_pylist()
            ]
        else:
            step_instructions = [list(ep.get("tasks", []))] * frames.num_rows
        episode_id = folder.episode_id(int(ep["episode_index"]))
        offsets = waypoint_offsets(fps, self.options.waypoint_horizon.count, self.options.waypoint_horizon.spacing_s)
        rows = episode_rows(
            EpisodeInput(
                dataset=self.entry.name,
                split=split,
                episode_id=episode_id,
                fps=fps,
                arms=arms,
                views=views,
                instructions=[],
                state=self._column(frames, self.state_col).astype(np.float32) if self.state_col else None,
                action=self._column(frames, self.action_col).astype(np.float32) if self.action_col else None,
                embodiment=self.entry.embodiment,
                timestamps=timestamps,
                step_instructions=step_instructions,
            ),
            codebook,
            offsets,
            stats.clipped_tokens,
        )
        row_depth = None
        if any(d is not None for d in depth):
            row_depth = [
                depth[v][f] if depth[v] is not None else None for f in range(frames.num_rows) for v in range(len(views))
            ]
        return EpisodeRows(episode_id, rows, depth=row_depth)
