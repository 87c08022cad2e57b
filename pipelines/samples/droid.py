"""Write the synthetic world as a DROID dataset in its real on-disk layout.

``<out>/droid/1.0.1/``: an RLDS dataset written through tensorflow-datasets with DROID's feature
spec (formats.md 1.2-1.3): three 180x320 JPEG views; ``cartesian_position`` = xyz [m] + Euler
xyz [rad] of the end-effector in the robot base; ``gripper_position`` 0 = open; ``action`` =
next commanded cartesian position + gripper (7); three language instructions; 1.0.1 episode
metadata with the ORIGINAL calibrations (exterior cameras perturbed by a few mm / tenths of a
degree, as noisy as the real ones; the wrist camera's value is its pose at step 0).

``<out>/calibration/``: the KarlP/droid side files (formats.md 1.5(d)) for 1280x720 frames, in
both key variants seen in the wild: even episodes use ``"<serial>"`` keys and ``[fx, cx, fy, cy]``
lists, odd episodes ``"<serial>_left"`` keys and ``{"cameraMatrix": [...], "width", "height"}``.

:class:`DroidFaults` injects the failures a converter must survive (a corrupt JPEG, an episode
with no usable calibration); tests truncate shard files themselves.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from converters.droid import CALIBRATION_FILES
from pipelines.samples.rlds import chunks, write_rlds, write_rlds_records
from pipelines.synthetic_world import Episode, make_episode, render
from schemas.geometry import euler_xyz_to_matrix, make_transform, transform_to_pose6

DROID_VERSION = "1.0.1"
VIEWS = ("exterior_1_left", "exterior_2_left", "wrist_left")
SERIAL_KEYS = {
    "exterior_1_left": "ext1_cam_serial",
    "exterior_2_left": "ext2_cam_serial",
    "wrist_left": "wrist_cam_serial",
}
PATH_PREFIX = "gs://xembodiment_data/r2d2/r2d2-data-full/"
LAB = "SYNLAB"
JPEG_QUALITY = 95


@dataclass(frozen=True)
class DroidFaults:
    """Faults to write into the sample: ``corrupt_jpeg`` = {(episode, step, view)} gets
    truncated JPEG bytes; ``no_calibration`` episodes get neither side-file entries nor
    metadata extrinsics (all zeros)."""

    corrupt_jpeg: frozenset = frozenset()
    no_calibration: frozenset = frozenset()


@dataclass
class DroidSample:
    """What was written: the folder, the TFDS directory, and the ground-truth episodes in order."""

    root: Path
    tfds_dir: Path
    episodes: list[Episode] = field(repr=False)
    episode_ids: list[str] = field(repr=False)


def droid_features():
    """DROID's RLDS FeaturesDict (kpertsch/droid_dataset_builder + the 1.0.1 metadata keys)."""
    import tensorflow_datasets as tfds

    F = tfds.features

    def image() -> F.Image:
        return F.Image(shape=(180, 320, 3), dtype=np.uint8, encoding_format="jpeg")

    def vec(n: int) -> F.Tensor:
        return F.Tensor(shape=(n,), dtype=np.float64)

    return F.FeaturesDict(
        {
            "steps": F.Dataset(
                {
                    "observation": F.FeaturesDict(
                        {
                            "exterior_image_1_left": image(),
                            "exterior_image_2_left": image(),
                            "wrist_image_left": image(),
                            "cartesian_position": vec(6),
                            "gripper_position": vec(1),
                            "joint_position": vec(7),
                        }
                    ),
                    "action_dict": F.FeaturesDict(
                        {
                            "cartesian_position": vec(6),
                            "cartesian_velocity": vec(6),
                            "gripper_position": vec(1),
                            "gripper_velocity": vec(1),
                            "joint_position": vec(7),
                            "joint_velocity": vec(7),
                        }
                    ),
                    "action": vec(7),
                    "discount": F.Scalar(dtype=np.float32),
                    "reward": F.Scalar(dtype=np.float32),
                    "is_first": F.Scalar(dtype=np.bool_),
                    "is_last": F.Scalar(dtype=np.bool_),
                    "is_terminal": F.Scalar(dtype=np.bool_),
                    "language_instruction": F.Text(),
                    "language_instruction_2": F.Text(),
                    "language_instruction_3": F.Text(),
                }
            ),
            "episode_metadata": F.FeaturesDict(
                {
                    "file_path": F.Text(),
                    "recording_folderpath": F.Text(),
                    "building": F.Text(),
                    "collector_id": F.Text(),
                    "date": F.Text(),
                    "task_category": F.Text(),
                    "scene_id": F.Scalar(dtype=np.int64),
                    "extrinsics_exterior_cam_1": vec(6),
                    "extrinsics_exterior_cam_2": vec(6),
                    "extrinsics_wrist_cam": vec(6),
                }
            ),
        }
    )


def _episode_names(seed: int, index: int, success: bool) -> tuple[str, str]:
    """(KarlP episode id, DROID relative path) for an episode."""
    rng = np.random.default_rng([seed, 20_000 + index])
    day, hour, minute, sec = int(rng.integers(1, 28)), int(rng.integers(8, 19)), int(rng.integers(60)), index % 60
    user = f"{int(rng.integers(16**8)):08x}"
    eid = f"{LAB}+{user}+2023-07-{day:02d}-{hour:02d}h-{minute:02d}m-{sec:02d}s"
    outcome = "success" if success else "failure"
    rel = f"{LAB}/{outcome}/2023-07-{day:02d}/Fri_Jul_{day:02d}_{hour:02d}:{minute:02d}:{sec:02d}_2023"
    return eid, rel


def _jpeg(image_rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", image_rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise RuntimeError("cv2.imencode failed")
    return buf.tobytes()


def _synthetic_joints(pose6: np.ndarray) -> np.ndarray:
    """Seven smooth joint-like values [rad] (the world has no arm model; DROID stores 7 joints)."""
    return np.tanh(np.concatenate([pose6, pose6[:, :1] - pose6[:, 1:2]], axis=1))


def _episode_example(ep: Episode, seed: int, eid: str, rel: str, faults: DroidFaults) -> dict:
    T = ep.num_steps
    pose6 = transform_to_pose6(ep.T_base_ee)
    grip = ep.gripper[:, None]
    next_pose6 = np.concatenate([pose6[1:], pose6[-1:]])
    next_grip = np.concatenate([grip[1:], grip[-1:]])
    cart_vel = np.clip(np.diff(pose6, axis=0, append=pose6[-1:]) * ep.fps, -1, 1)
    joints = _synthetic_joints(pose6)
    cams = dict(zip(VIEWS, ep.cameras, strict=True))  # camera roles: exterior 1, exterior 2, wrist
    steps = []
    for s in range(T):
        obs = {"cartesian_position": pose6[s], "gripper_position": grip[s], "joint_position": joints[s]}
        for view, key in (
            ("exterior_1_left", "exterior_image_1_left"),
            ("exterior_2_left", "exterior_image_2_left"),
            ("wrist_left", "wrist_image_left"),
        ):
            data = _jpeg(render(ep, cams[view], s))
            if (ep.index, s, view) in faults.corrupt_jpeg:
                data = data[: len(data) // 3]  # cut mid-scan: no EOI marker
            obs[key] = io.BytesIO(data)  # TFDS stores file-like bytes as they are
        steps.append(
            {
                "observation": obs,
                "action_dict": {
                    "cartesian_position": next_pose6[s],
                    "cartesian_velocity": cart_vel[s],
                    "gripper_position": next_grip[s],
                    "gripper_velocity": np.clip((next_grip[s] - grip[s]) * ep.fps, -1, 1),
                    "joint_position": joints[min(s + 1, T - 1)],
                    "joint_velocity": np.zeros(7),
                },
                "action": np.concatenate([next_pose6[s], next_grip[s]]),
                "discount": 1.0,
                "reward": float(ep.success and s == T - 1),
                "is_first": s == 0,
                "is_last": s == T - 1,
                "is_terminal": s == T - 1,
                "language_instruction": ep.instructions[0],
                "language_instruction_2": ep.instructions[1],
                "language_instruction_3": ep.instructions[2],
            }
        )
    metadata = {
        "file_path": f"{PATH_PREFIX}{rel}/trajectory.h5",
        "recording_folderpath": f"{PATH_PREFIX}{rel}/recordings/MP4",
        "building": "synthetic",
        "collector_id": eid.split("+")[1],
        "date": eid.split("+")[2][:10],
        "task_category": "pick",
        "scene_id": int(seed * 1000 + ep.index),
    }
    metadata.update(_metadata_extrinsics(ep, seed, faults))
    return {"steps": steps, "episode_metadata": metadata}


def _metadata_extrinsics(ep: Episode, seed: int, faults: DroidFaults) -> dict:
    """The 1.0.1 metadata calibrations: cam->base 6-vectors; exteriors noisy, wrist at step 0."""
    keys = {
        "exterior_1_left": "extrinsics_exterior_cam_1",
        "exterior_2_left": "extrinsics_exterior_cam_2",
        "wrist_left": "extrinsics_wrist_cam",
    }
    if ep.index in faults.no_calibration:
        return {k: np.zeros(6) for k in keys.values()}
    rng = np.random.default_rng([seed, 30_000 + ep.index])
    out = {}
    for view, cam in zip(VIEWS, ep.cameras, strict=True):
        T = ep.T_base_cam(cam, 0)
        if not cam.is_wrist:
            noise = make_transform(
                euler_xyz_to_matrix(rng.normal(scale=np.radians(0.3), size=3)), rng.normal(scale=0.005, size=3)
            )
            T = T @ noise
        out[keys[view]] = transform_to_pose6(T)
    return out


def _write_calibration(
    root: Path, seed: int, episodes: list[Episode], eids: list[str], rels: list[str], faults: DroidFaults
) -> None:
    cam2base, superset, intrinsics, serials, id_to_path, keep_ranges = {}, {}, {}, {}, {}, {}
    for ep, eid, rel in zip(episodes, eids, rels, strict=True):
        cams = dict(zip(VIEWS, ep.cameras, strict=True))  # camera roles: exterior 1, exterior 2, wrist
        serials[eid] = {SERIAL_KEYS[v]: cams[v].serial for v in VIEWS}
        id_to_path[eid] = rel
        start, end = 2, ep.num_steps - 2
        keep_ranges[f"{PATH_PREFIX}{rel}/recordings/MP4--{PATH_PREFIX}{rel}/trajectory.h5"] = [[start, end]]
        if ep.index in faults.no_calibration:
            continue
        suffix = "" if ep.index % 2 == 0 else "_left"
        ext1, ext2 = cams["exterior_1_left"], cams["exterior_2_left"]
        cam2base[eid] = {
            f"{ext1.serial}{suffix}": transform_to_pose6(ext1.T_base_cam).tolist(),
            "quality_metric": 0.93,
            "metric_type": "reprojection",
        }
        superset[eid] = {}
        for cam in (ext1, ext2):
            superset[eid][f"{cam.serial}{suffix}"] = transform_to_pose6(cam.T_base_cam).tolist()
            superset[eid][f"{cam.serial}{suffix}_quality_metric"] = 0.9
            superset[eid][f"{cam.serial}{suffix}_metric_type"] = "reprojection"
        intrinsics[eid] = {}
        for cam in ep.cameras:
            K = cam.K_full
            values = [K[0, 0], K[0, 2], K[1, 1], K[1, 2]]  # KarlP order: fx, cx, fy, cy
            intrinsics[eid][cam.serial] = (
                values
                if ep.index % 2 == 0
                else {"cameraMatrix": values, "width": cam.full_wh[0], "height": cam.full_wh[1]}
            )
    files = {
        "cam2base_extrinsics.json": cam2base,
        "cam2base_extrinsic_superset.json": superset,
        "intrinsics.json": intrinsics,
        "camera_serials.json": serials,
        "episode_id_to_path.json": id_to_path,
        "keep_ranges_1_0_1.json": keep_ranges,
    }
    root.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (root / name).write_text(json.dumps(data, indent=1))


def write_droid_sample(
    out: str | Path,
    *,
    seed: int = 0,
    num_episodes: int = 8,
    num_steps: int = 100,
    episodes_per_shard: int = 2,
    faults: DroidFaults = DroidFaults(),
    episodes: list[Episode] | None = None,
) -> DroidSample:
    """Write ``num_episodes`` synthetic episodes (or the ``episodes`` given, whose cameras are in the
    roles exterior 1, exterior 2, wrist) as DROID RLDS + calibration files under ``out``."""
    root = Path(out)
    tfds_dir = root / "droid" / DROID_VERSION
    if episodes is None:
        episodes = [make_episode(seed, i, num_steps) for i in range(num_episodes)]
    num_episodes = len(episodes)
    names = [_episode_names(seed, ep.index, ep.success) for ep in episodes]
    eids, rels = [n[0] for n in names], [n[1] for n in names]
    write_rlds(tfds_dir, "droid", DROID_VERSION, droid_features(), chunks(range(num_episodes), episodes_per_shard),
               lambda i: _episode_example(episodes[i], seed, eids[i], rels[i], faults),
               "posetok synthetic sample in DROID RLDS format")
    _write_calibration(root / "calibration", seed, episodes, eids, rels, faults)
    return DroidSample(root, tfds_dir, episodes, eids)


def replicate_droid_sample(source: str | Path, out: str | Path, times: int) -> Path:
    """``times`` copies of every episode of a DROID sample as one larger DROID dataset under ``out``.

    Copy ``k`` of an episode gets the episode id ``<id>-copy<k>`` and the path ``<path>_copy<k>``
    (episode metadata and every calibration side file are renamed together), so all episodes
    are distinct to a converter while nothing is rendered again: a cheap way to scale benchmarks.
    Copy 0 keeps the original names; shards keep their size, in copy-major order.
    """
    import tensorflow as tf

    source, root = Path(source), Path(out)
    src_dir = source / "droid" / DROID_VERSION
    shard_files = sorted(src_dir.glob("droid-train.tfrecord-*"))
    if not shard_files:
        raise FileNotFoundError(f"{src_dir}: no droid-train.tfrecord-* shards to replicate")
    calibration = {name: json.loads((source / "calibration" / name).read_text()) for name in CALIBRATION_FILES}
    id_of_path = {rel: eid for eid, rel in calibration["episode_id_to_path.json"].items()}
    renamed: dict[str, dict] = {name: {} for name in CALIBRATION_FILES}

    def copy_record(raw: bytes, k: int) -> bytes:
        example = tf.train.Example.FromString(raw)
        feature = example.features.feature
        old_file = feature["episode_metadata/file_path"].bytes_list.value[0].decode()
        rel = old_file.removeprefix(PATH_PREFIX).removesuffix("/trajectory.h5")
        new_rel = rel if k == 0 else f"{rel}_copy{k}"
        eid = id_of_path[rel]
        new_eid = eid if k == 0 else f"{eid}-copy{k}"
        new_file = f"{PATH_PREFIX}{new_rel}/trajectory.h5"
        new_folder = f"{PATH_PREFIX}{new_rel}/recordings/MP4"
        old_folder = feature["episode_metadata/recording_folderpath"].bytes_list.value[0].decode()
        feature["episode_metadata/file_path"].bytes_list.value[0] = new_file.encode()
        feature["episode_metadata/recording_folderpath"].bytes_list.value[0] = new_folder.encode()
        for name in ("cam2base_extrinsics.json", "cam2base_extrinsic_superset.json", "intrinsics.json",
                     "camera_serials.json"):
            if eid in calibration[name]:
                renamed[name][new_eid] = calibration[name][eid]
        renamed["episode_id_to_path.json"][new_eid] = new_rel
        ranges = calibration["keep_ranges_1_0_1.json"].get(f"{old_folder}--{old_file}")
        if ranges is not None:
            renamed["keep_ranges_1_0_1.json"][f"{new_folder}--{new_file}"] = ranges
        return example.SerializeToString()

    def shards():
        for k in range(times):
            for path in shard_files:
                yield (copy_record(raw.numpy(), k) for raw in tf.data.TFRecordDataset(str(path)))

    write_rlds_records(root / "droid" / DROID_VERSION, "droid", DROID_VERSION, droid_features(), shards(),
                       times * len(shard_files), f"{times}x replicated posetok synthetic sample in DROID RLDS format")
    (root / "calibration").mkdir(parents=True, exist_ok=True)
    for name, data in renamed.items():
        (root / "calibration" / name).write_text(json.dumps(data, indent=1))
    return root
