"""LeRobotDataset v2.0 / v2.1 / v3.0 -> schema v1.  Source layout (formats.md section 5):

```
<source>/meta/info.json                  codebase_version, fps, features, data_path, video_path
v3.0: meta/tasks.parquet, meta/episodes/chunk-*/file-*.parquet (per episode: data file, global
      frame range, per video key chunk/file and from/to timestamps in the concatenated mp4)
      data/chunk-XXX/file-XXX.parquet, videos/<key>/chunk-XXX/file-XXX.mp4
v2.x: meta/tasks.jsonl, meta/episodes.jsonl, data/chunk-XXX/episode_XXXXXX.parquet,
      videos/chunk-XXX/<key>/episode_XXXXXX.mp4 (one file per episode, timestamps from 0)
```

LeRobot has no standard for poses, so the catalog entry's ``options`` say which columns hold them:

```yaml
options:
  state_column: observation.state          # raw state -> `state`
  action_column: action                    # raw action -> `action`
  ee_pose: {column: observation.ee_pose, layout: xyz_qxyzw}   # xyz_qxyzw | xyz_qwxyz | xyz_euler_xyz | matrix16
  gripper: {column: observation.gripper, open: 1.0, closed: 0.0}   # mapped linearly to 0 open .. 1 closed
  cameras:                                  # view -> video key, and optional per-frame calibration columns
    head: {video: observation.images.head, intrinsics: ..., extrinsics: ..., extrinsics_layout: xyz_qxyzw}
  intrinsics_layout: fx_fy_cx_cy
  jpeg_quality: 95
```

Extrinsics are camera-to-robot (``T_base_cam``), one per frame (moving wrist cameras welcome).
A camera without calibration columns keeps its images and no poses (``K`` null if unknown).
Video frames are looked up by TIMESTAMP (``from_timestamp + timestamp``, within 1 ms), never by
counting frames, and re-encoded to JPEG once at ``jpeg_quality`` (recorded in the manifest).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from converters.base import EpisodeRows, Rejected, UnitStats, WorkUnit, encode_jpeg, source_record
from converters.robot_rows import ArmTrack, EpisodeInput, ViewTrack, episode_rows, waypoint_offsets
from schemas.catalog import DatasetEntry
from schemas.geometry import euler_xyz_to_matrix, intrinsics_matrix, make_transform, quat_to_matrix
from schemas.tokenizer import Codebook

VERSION = "0.1.0"
TIMESTAMP_TOLERANCE_S = 1e-3


def pose_layout_to_transform(values: np.ndarray, layout: str) -> np.ndarray:
    """``(T, 4, 4)`` from per-frame pose vectors in a named layout."""
    v = np.asarray(values, dtype=np.float64)
    if layout == "xyz_qxyzw":
        return make_transform(quat_to_matrix(v[:, [6, 3, 4, 5]]), v[:, :3])
    if layout == "xyz_qwxyz":
        return make_transform(quat_to_matrix(v[:, 3:7]), v[:, :3])
    if layout == "xyz_euler_xyz":
        return make_transform(euler_xyz_to_matrix(v[:, 3:6]), v[:, :3])
    if layout == "matrix16":
        return v.reshape(-1, 4, 4)
    raise ValueError(f"unknown pose layout {layout!r}: use xyz_qxyzw, xyz_qwxyz, xyz_euler_xyz or matrix16")


def intrinsics_from(values: np.ndarray, layout: str) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    if layout == "fx_fy_cx_cy":
        return intrinsics_matrix(v[0], v[1], v[2], v[3])
    if layout == "matrix9":
        return v.reshape(3, 3)
    raise ValueError(f"unknown intrinsics layout {layout!r}: use fx_fy_cx_cy or matrix9")


def decode_at_timestamps(path: Path, start_s: float, timestamps: np.ndarray) -> list[np.ndarray]:
    """RGB frames of ``path`` at ``start_s + timestamps`` (seconds), matched within 1 ms."""
    import av

    wanted = start_s + np.asarray(timestamps, dtype=np.float64)
    found: dict[int, np.ndarray] = {}
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        container.seek(int(max(start_s - 1.0, 0) / stream.time_base), stream=stream, backward=True)
        for frame in container.decode(stream):
            t = float(frame.pts * stream.time_base)
            if t > wanted[-1] + TIMESTAMP_TOLERANCE_S:
                break
            i = int(np.argmin(np.abs(wanted - t)))
            if abs(wanted[i] - t) <= TIMESTAMP_TOLERANCE_S:
                found[i] = frame.to_ndarray(format="rgb24")
    missing = [float(wanted[i]) for i in range(len(wanted)) if i not in found]
    if missing:
        raise ValueError(
            f"{path.name}: no video frame within {TIMESTAMP_TOLERANCE_S * 1e3:.0f} ms of "
            f"{len(missing)} timestamp(s), first {missing[0]:.4f} s"
        )
    return [found[i] for i in range(len(wanted))]


class LerobotConverter:
    name = "lerobot"
    version = VERSION

    def __init__(self, entry: DatasetEntry, source: Path, options: dict):
        self.entry, self.options = entry, options
        infos = sorted(source.glob("**/meta/info.json"))
        if not infos:
            raise FileNotFoundError(f"{source}: no LeRobot dataset (expected <source>/meta/info.json)")
        self.root = infos[0].parent.parent
        self.source = source
        self.info = json.loads(infos[0].read_text())
        self.codebase = self.info.get("codebase_version", "")
        if self.codebase not in ("v2.0", "v2.1", "v3.0"):
            raise ValueError(f"{infos[0]}: codebase_version {self.codebase!r} is not v2.0, v2.1 or v3.0")
        self.fps = float(self.info.get("fps") or entry.fps or 30.0)
        self.quality = int(options.get("jpeg_quality", 95))
        self.cameras = options.get("cameras") or {}
        if not self.cameras:
            raise ValueError(f"dataset {entry.name!r}: catalog options.cameras must map views to video keys")
        self.offsets = waypoint_offsets(self.fps, entry.waypoint_horizon.count, entry.waypoint_horizon.spacing_s)
        self.episodes = self._episodes()
        self.tasks = self._tasks()

    # ------------------------------------------------------------------------------ metadata
    def _episodes(self) -> list[dict]:
        if self.codebase == "v3.0":
            files = sorted((self.root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
            return sorted(
                pa.concat_tables([pq.read_table(f) for f in files]).to_pylist(), key=lambda e: e["episode_index"]
            )
        lines = (self.root / "meta" / "episodes.jsonl").read_text().splitlines()
        return sorted((json.loads(x) for x in lines if x.strip()), key=lambda e: e["episode_index"])

    def _tasks(self) -> dict[int, str]:
        if self.codebase == "v3.0":
            table = pq.read_table(self.root / "meta" / "tasks.parquet")
            text = "task" if "task" in table.column_names else "__index_level_0__"
            return dict(zip(table.column("task_index").to_pylist(), table.column(text).to_pylist(), strict=True))
        lines = (self.root / "meta" / "tasks.jsonl").read_text().splitlines()
        return {t["task_index"]: t["task"] for t in (json.loads(x) for x in lines if x.strip())}

    def _data_path(self, ep: dict) -> Path:
        chunks = int(self.info.get("chunks_size", 1000))
        if self.codebase == "v3.0":
            return self.root / self.info["data_path"].format(
                chunk_index=ep["data/chunk_index"], file_index=ep["data/file_index"]
            )
        return self.root / self.info["data_path"].format(
            episode_chunk=ep["episode_index"] // chunks, episode_index=ep["episode_index"]
        )

    def _video(self, ep: dict, key: str) -> tuple[Path, float]:
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

    def plan(self, limit_episodes: int | None = None) -> list[WorkUnit]:
        """One unit per episode."""
        eps = self.episodes[:limit_episodes] if limit_episodes is not None else self.episodes
        return [
            WorkUnit(f"episode_{e['episode_index']:06d}", "train", {"episode_index": e["episode_index"]}) for e in eps
        ]

    def source_info(self) -> dict:
        files = (p for p in self.root.rglob("*") if p.is_file())
        return source_record(self.source, f"LeRobotDataset {self.codebase}", files, root=self.root)

    def dataset_metadata(self) -> dict:
        features = self.info.get("features", {})
        state_col, action_col = self.options.get("state_column"), self.options.get("action_column")
        return {
            "fps": self.fps,
            "embodiment": self.entry.embodiment,
            "codebase_version": self.codebase,
            "state_names": features.get(state_col, {}).get("names") if state_col else None,
            "action_names": features.get(action_col, {}).get("names") if action_col else None,
            "state_source_column": state_col,
            "action_source_column": action_col,
            "pose_mapping": {k: self.options.get(k) for k in ("ee_pose", "gripper", "cameras")},
            "image_encoding": f"JPEG quality {self.quality}, decoded from the source videos by timestamp",
            "views": list(self.cameras),
            "waypoint_offsets_steps": self.offsets,
        }

    # ---------------------------------------------------------------------------- conversion
    def convert_unit(self, unit: WorkUnit, codebook: Codebook, stats: UnitStats) -> Iterator[EpisodeRows | Rejected]:
        ep = next(e for e in self.episodes if e["episode_index"] == unit.payload["episode_index"])
        try:
            yield self._convert(ep, codebook, stats)
        except (OSError, KeyError, ValueError, pa.ArrowException) as e:
            yield Rejected(f"{self.root} episode {ep['episode_index']}", "read", f"{type(e).__name__}: {e}")
        except Exception as e:  # noqa: BLE001 - PyAV raises its own error types for broken video
            if type(e).__module__.startswith("av"):
                yield Rejected(f"{self.root} episode {ep['episode_index']}", "video", f"{type(e).__name__}: {e}")
            else:
                raise

    def _frames(self, ep: dict) -> pa.Table:
        table = pq.read_table(self._data_path(ep))
        table = table.filter(pc.equal(table.column("episode_index"), ep["episode_index"]))
        if table.num_rows != ep["length"]:
            raise ValueError(
                f"{self._data_path(ep).name}: {table.num_rows} frames for episode "
                f"{ep['episode_index']}, meta says {ep['length']}"
            )
        return table.sort_by("frame_index")

    @staticmethod
    def _column(table: pa.Table, name: str) -> np.ndarray:
        if name not in table.column_names:
            raise KeyError(f"column {name!r} not in the data parquet (columns: {table.column_names})")
        col = table.column(name).combine_chunks()
        if pa.types.is_fixed_size_list(col.type) or pa.types.is_list(col.type):
            return np.asarray(col.to_pylist(), dtype=np.float64)
        return col.to_numpy(zero_copy_only=False).astype(np.float64)[:, None]

    def _convert(self, ep: dict, codebook: Codebook, stats: UnitStats) -> EpisodeRows:
        frames = self._frames(ep)
        timestamps = frames.column("timestamp").to_numpy().astype(np.float64)
        arms = []
        pose_opt = self.options.get("ee_pose")
        if pose_opt:
            T_base_ee = pose_layout_to_transform(self._column(frames, pose_opt["column"]), pose_opt["layout"])
            grip_opt = self.options.get("gripper")
            gripper = None
            if grip_opt:
                raw = self._column(frames, grip_opt["column"])[:, 0]
                gripper = np.clip((raw - grip_opt["open"]) / (grip_opt["closed"] - grip_opt["open"]), 0.0, 1.0)
            arms.append(ArmTrack(pose_opt.get("name", "arm"), T_base_ee, gripper))
        views = []
        layout = self.options.get("intrinsics_layout", "fx_fy_cx_cy")
        for view, cam in self.cameras.items():
            path, start = self._video(ep, cam["video"])
            rgb = decode_at_timestamps(path, start, timestamps)
            K = T_base_cam = None
            if cam.get("intrinsics"):
                per_frame = self._column(frames, cam["intrinsics"])
                if np.max(np.abs(per_frame - per_frame[:1])) > 1e-6:
                    raise ValueError(
                        f"{cam['intrinsics']}: intrinsics change within the episode; one K per view is supported"
                    )
                K = intrinsics_from(per_frame[0], layout)
            if cam.get("extrinsics") and arms:
                T_base_cam = pose_layout_to_transform(
                    self._column(frames, cam["extrinsics"]), cam.get("extrinsics_layout", "xyz_qxyzw")
                )
            h, w = rgb[0].shape[:2]
            views.append(ViewTrack(view, K, w, h, [encode_jpeg(im, self.quality) for im in rgb], T_base_cam))
            stats.notes[f"{view}: {'calibrated' if K is not None and T_base_cam is not None else 'no poses'}"] += 1
        task_ids = frames.column("task_index").to_pylist() if "task_index" in frames.column_names else []
        instructions = [self.tasks[t] for t in dict.fromkeys(task_ids) if t in self.tasks] or list(ep.get("tasks", []))
        state_col, action_col = self.options.get("state_column"), self.options.get("action_column")
        episode_id = f"episode_{ep['episode_index']:06d}"
        rows = episode_rows(
            EpisodeInput(
                dataset=self.entry.name,
                split="train",
                episode_id=episode_id,
                fps=self.fps,
                arms=arms,
                views=views,
                instructions=instructions,
                state=self._column(frames, state_col).astype(np.float32) if state_col else None,
                action=self._column(frames, action_col).astype(np.float32) if action_col else None,
                embodiment=self.entry.embodiment,
            ),
            codebook,
            self.offsets,
            stats.clipped_tokens,
        )
        return EpisodeRows(episode_id, rows)
