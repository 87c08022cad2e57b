"""Write the synthetic world as a LeRobotDataset, v3.0 or v2.1 (formats.md 5.1-5.3).

v3.0: ``meta/info.json``, ``meta/tasks.parquet``, ``meta/episodes/chunk-000/file-000.parquet``,
``data/chunk-000/file-000.parquet`` (all episodes), ``videos/<key>/chunk-000/file-000.mp4``
(episodes concatenated; ``from_timestamp``/``to_timestamp`` per episode).
v2.1: ``meta/{info.json, episodes.jsonl, tasks.jsonl}``, ``data/chunk-000/episode_XXXXXX.parquet``,
``videos/chunk-000/<key>/episode_XXXXXX.mp4``.

Frame columns follow the InternData-A1 style that Pose-VLA reads (paper.md 1.2): besides
``observation.state`` / ``action``, an end-effector pose ``observation.ee_pose`` = ``[x, y, z,
qx, qy, qz, qw]`` in the robot base, ``observation.gripper`` with 1 = OPEN, and per camera
``observation.camera.<view>.intrinsics`` = ``[fx, fy, cx, cy]`` and
``observation.camera.<view>.extrinsics`` = camera-to-robot ``[x, y, z, qx, qy, qz, qw]``.
The catalog entry ``lerobot_demo`` maps exactly these columns.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.synthetic_world import Episode, ideal_cameras, make_episode, render
from schemas.geometry import matrix_to_euler_xyz, matrix_to_quat

FPS = 15
VIEW_KEYS = ("exterior_1", "exterior_2", "wrist")  # world roles, in camera order


@dataclass
class LerobotSample:
    root: Path
    episodes: list[Episode] = field(repr=False)


def _pose7(T: np.ndarray) -> np.ndarray:
    """``[x, y, z, qx, qy, qz, qw]`` rows of ``(N, 4, 4)`` transforms."""
    return np.concatenate([T[:, :3, 3], matrix_to_quat(T[:, :3, :3])[:, [1, 2, 3, 0]]], axis=1)


def encode_video(path: Path, frames: list[np.ndarray], fps: int, codec: str = "libx264") -> None:
    """MP4 of RGB frames with PyAV (yuv420p, every frame a keyframe candidate, exact timestamps)."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        stream.pix_fmt = "yuv420p"
        stream.time_base = Fraction(1, fps)
        stream.options = {"crf": "18", "g": "2"} if codec == "libx264" else {}
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _frame_table(ep: Episode, index: int, offset: int, task_index: int) -> pa.Table:
    T = ep.num_steps
    pose6 = np.concatenate([ep.T_base_ee[:, :3, 3], matrix_to_euler_xyz(ep.T_base_ee[:, :3, :3])], axis=1)
    state = np.concatenate([pose6, ep.gripper[:, None]], axis=1).astype(np.float32)
    action = np.concatenate([state[1:], state[-1:]]).astype(np.float32)
    columns = {
        "observation.state": state,
        "action": action,
        "observation.ee_pose": _pose7(ep.T_base_ee).astype(np.float32),
        "observation.gripper": (1.0 - ep.gripper)[:, None].astype(np.float32),  # 1 = open in this source
    }
    for key, cam in zip(VIEW_KEYS, ep.cameras, strict=True):
        K = cam.K
        columns[f"observation.camera.{key}.intrinsics"] = np.broadcast_to(
            [K[0, 0], K[1, 1], K[0, 2], K[1, 2]], (T, 4)
        ).astype(np.float32)
        columns[f"observation.camera.{key}.extrinsics"] = _pose7(
            np.stack([ep.T_base_cam(cam, t) for t in range(T)])
        ).astype(np.float32)
    arrays = {k: pa.FixedSizeListArray.from_arrays(pa.array(v.reshape(-1)), v.shape[1]) for k, v in columns.items()}
    arrays.update(
        {
            "timestamp": pa.array(np.arange(T, dtype=np.float32) / FPS),
            "frame_index": pa.array(np.arange(T, dtype=np.int64)),
            "episode_index": pa.array(np.full(T, index, dtype=np.int64)),
            "index": pa.array(np.arange(offset, offset + T, dtype=np.int64)),
            "task_index": pa.array(np.full(T, task_index, dtype=np.int64)),
        }
    )
    return pa.table(arrays)


def _features(ep: Episode, table: pa.Table, version: str) -> dict:
    features = {}
    for name in table.column_names:
        typ = table.schema.field(name).type
        if pa.types.is_fixed_size_list(typ):
            features[name] = {"dtype": "float32", "shape": [typ.list_size], "names": None}
        else:
            features[name] = {"dtype": {pa.float32(): "float32", pa.int64(): "int64"}[typ], "shape": [1], "names": None}
    for key, cam in zip(VIEW_KEYS, ep.cameras, strict=True):
        features[f"observation.images.{key}"] = {
            "dtype": "video",
            "shape": [cam.height, cam.width, 3],
            "names": ["height", "width", "channels"],
            "info": {
                "video.height": cam.height,
                "video.width": cam.width,
                "video.codec": "h264",
                "video.pix_fmt": "yuv420p",
                "video.is_depth_map": False,
                "video.fps": FPS,
                "video.channels": 3,
                "has_audio": False,
            },
        }
    if version == "v3.0":
        for spec in features.values():
            if spec["dtype"] != "video":
                spec["fps"] = FPS
    return features


def write_lerobot_sample(
    out: str | Path,
    *,
    seed: int = 0,
    num_episodes: int = 4,
    num_steps: int = 80,
    episodes_per_shard: int = 0,
    episodes: list[Episode] | None = None,
    version: str = "v3.0",
) -> LerobotSample:
    """Write episodes as a LeRobotDataset of ``version`` ("v3.0" or "v2.1")."""
    import pandas as pd

    del episodes_per_shard
    root = Path(out)
    if episodes is None:
        episodes = [
            make_episode(seed, i, num_steps, ideal_cameras(np.random.default_rng([seed, 10_000 + i]), 320, 240))
            for i in range(num_episodes)
        ]
    tasks = list(dict.fromkeys(ep.instructions[0] for ep in episodes))
    tables, offset, episode_rows = [], 0, []
    video_frames: dict[str, list[np.ndarray]] = {k: [] for k in VIEW_KEYS}
    for i, ep in enumerate(episodes):
        table = _frame_table(ep, i, offset, tasks.index(ep.instructions[0]))
        frames = {
            key: [render(ep, cam, t) for t in range(ep.num_steps)]
            for key, cam in zip(VIEW_KEYS, ep.cameras, strict=True)
        }
        start_s = len(video_frames[VIEW_KEYS[0]]) / FPS
        row = {
            "episode_index": i,
            "tasks": [ep.instructions[0]],
            "length": ep.num_steps,
            "data/chunk_index": 0,
            "data/file_index": 0,
            "dataset_from_index": offset,
            "dataset_to_index": offset + ep.num_steps,
            "meta/episodes/chunk_index": 0,
            "meta/episodes/file_index": 0,
        }
        for key in VIEW_KEYS:
            row.update(
                {
                    f"videos/observation.images.{key}/chunk_index": 0,
                    f"videos/observation.images.{key}/file_index": 0,
                    f"videos/observation.images.{key}/from_timestamp": start_s,
                    f"videos/observation.images.{key}/to_timestamp": start_s + ep.num_steps / FPS,
                }
            )
        if version == "v2.1":
            pq.write_table(table, _mkparent(root / f"data/chunk-000/episode_{i:06d}.parquet"))
            for key in VIEW_KEYS:
                encode_video(root / f"videos/chunk-000/observation.images.{key}/episode_{i:06d}.mp4", frames[key], FPS)
        for key in VIEW_KEYS:
            video_frames[key] += frames[key]
        tables.append(table)
        episode_rows.append(row)
        offset += ep.num_steps
    info = {
        "codebase_version": version,
        "robot_type": "synthetic_franka",
        "total_episodes": len(episodes),
        "total_frames": offset,
        "total_tasks": len(tasks),
        "chunks_size": 1000,
        "fps": FPS,
        "splits": {"train": f"0:{len(episodes)}"},
        "features": _features(episodes[0], tables[0], version),
    }
    meta = root / "meta"
    meta.mkdir(parents=True, exist_ok=True)
    if version == "v3.0":
        info.update(
            {
                "data_files_size_in_mb": 100,
                "video_files_size_in_mb": 500,
                "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
                "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
            }
        )
        pq.write_table(pa.concat_tables(tables), _mkparent(root / "data/chunk-000/file-000.parquet"))
        for key in VIEW_KEYS:
            encode_video(root / f"videos/observation.images.{key}/chunk-000/file-000.mp4", video_frames[key], FPS)
        pd.DataFrame({"task_index": range(len(tasks))}, index=pd.Index(tasks)).to_parquet(meta / "tasks.parquet")
        pq.write_table(pa.Table.from_pylist(episode_rows), _mkparent(meta / "episodes/chunk-000/file-000.parquet"))
    else:
        info.update(
            {
                "total_videos": len(episodes) * len(VIEW_KEYS),
                "total_chunks": 1,
                "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
                "video_path": "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4",
            }
        )
        (meta / "episodes.jsonl").write_text(
            "".join(
                json.dumps({"episode_index": r["episode_index"], "tasks": r["tasks"], "length": r["length"]}) + "\n"
                for r in episode_rows
            )
        )
        (meta / "tasks.jsonl").write_text(
            "".join(json.dumps({"task_index": i, "task": t}) + "\n" for i, t in enumerate(tasks))
        )
    (meta / "info.json").write_text(json.dumps(info, indent=2))
    return LerobotSample(root, episodes)


def _mkparent(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path
