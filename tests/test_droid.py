"""DROID end to end: the generated sample converts to the generator's ground truth, identically
with 1 or 2 workers, survives a SIGKILL of the job or of a Ray worker and failing disk writes, and
quarantines corrupt input precisely."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from converters.base import EpisodeRows, Rejected, UnitStats, jpeg_size, load_converter
from pipelines.manifest import Manifest, read_dataset
from pipelines.samples.droid import DroidFaults, write_droid_sample
from schemas.catalog import load_catalog
from schemas.geometry import compose, invert_transform, quat_to_matrix
from schemas.record import validate
from schemas.tokenizer import default_codebook

REPO = Path(__file__).resolve().parent.parent
EPISODES, STEPS = 6, 60


def run_convert(source: Path, out: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "pipelines.convert", "--dataset", "droid", "--source", str(source), "--out", str(out),
           "--quiet", "--no-preview", *args]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)


def shard_digests(root: Path) -> dict[str, str]:
    return {s.path: s.sha256 for s in Manifest.read(root).shards}


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    return write_droid_sample(tmp_path_factory.mktemp("droid_src"), seed=7, num_episodes=EPISODES, num_steps=STEPS,
                              episodes_per_shard=1)


@pytest.fixture(scope="module")
def converted(sample, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("out1")
    proc = run_convert(sample.root, out, "--workers", "1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out / "droid"


def angle_deg(Ra: np.ndarray, Rb: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip((np.trace(Ra.T @ Rb) - 1) / 2, -1, 1))))


def test_camera_frame_poses_match_ground_truth(sample, converted):
    table = read_dataset(converted)
    validate(table)
    assert table.num_rows == EPISODES * STEPS * 3
    by_id = dict(zip(sample.episode_ids, sample.episodes, strict=True))
    worst_t = worst_r = worst_wp = 0.0
    views_seen = set()
    for row in table.to_pylist():
        ep = by_id[row["episode_id"]]
        cam = next(c for c in ep.cameras if c.view == row["view"])
        t = row["frame_index"]
        T_cam_base = invert_transform(ep.T_base_cam(cam, t))
        truth = compose(T_cam_base, ep.T_base_ee[t])
        (ego,) = row["ego"]
        worst_t = max(worst_t, np.linalg.norm(np.array(ego["t"]) - truth[:3, 3]))
        worst_r = max(worst_r, angle_deg(quat_to_matrix(np.array(ego["q"])), truth[:3, :3]))
        assert abs(ego["gripper"] - ep.gripper[t]) < 1e-6
        for wp in row["waypoints"]:
            future = compose(T_cam_base, ep.T_base_ee[t + wp["offset_steps"]])
            worst_wp = max(worst_wp, np.linalg.norm(np.array(wp["t"]) - future[:3, 3]))
        assert [w["offset_steps"] for w in row["waypoints"]] == [k for k in (15, 30, 45, 60, 75) if t + k < STEPS]
        np.testing.assert_allclose(np.array(row["K"]).reshape(3, 3), cam.K, atol=1e-9)
        assert row["instruction"] == list(ep.instructions)
        views_seen.add(row["view"])
    assert views_seen == {"exterior_1_left", "exterior_2_left", "wrist_left"}
    assert worst_t < 1e-3 and worst_wp < 1e-3, (worst_t, worst_wp)
    assert worst_r < 0.1, worst_r


def test_output_is_readable_and_listed(converted):
    import datasets

    manifest = Manifest.read(converted)
    files = sorted(p.relative_to(converted).as_posix() for p in (converted / "data").rglob("*.parquet"))
    assert files == sorted(s.path for s in manifest.shards) and len(files) == EPISODES
    assert all(len(s.sha256) == 64 for s in manifest.shards)
    assert manifest.splits()["train"] == {"rows": EPISODES * STEPS * 3, "episodes": EPISODES, "shards": EPISODES}
    assert manifest.metadata["state_names"][:3] == ["cartesian_position.x", "cartesian_position.y",
                                                    "cartesian_position.z"]
    ds = datasets.load_dataset("parquet", data_dir=str(converted / "data"), split="train")
    assert isinstance(ds.features["image"], datasets.Image) and ds[0]["image"].size == (320, 180)
    assert len(ds) == EPISODES * STEPS * 3
    # images are the source JPEG bytes, untouched
    raw = pq.read_table(converted / manifest.shards[0].path, columns=["image"]).column("image")[0]["bytes"].as_py()
    assert jpeg_size(raw) == (320, 180)


def test_two_workers_give_byte_identical_shards(sample, converted, tmp_path):
    proc = run_convert(sample.root, tmp_path, "--workers", "2")
    assert proc.returncode == 0, proc.stderr
    assert shard_digests(tmp_path / "droid") == shard_digests(converted)
    assert (tmp_path / "droid/quarantine.jsonl").read_text() == (converted / "quarantine.jsonl").read_text()


def test_sigkill_midway_then_resume_gives_same_checksums(sample, converted, tmp_path):
    cmd = [sys.executable, "-m", "pipelines.convert", "--dataset", "droid", "--source", str(sample.root),
           "--out", str(tmp_path), "--workers", "1", "--quiet", "--no-preview"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    manifest = tmp_path / "droid/manifest.json"
    committed = 0
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if manifest.exists():
            try:
                committed = len(json.loads(manifest.read_text())["shards"])
            except (json.JSONDecodeError, KeyError):
                committed = 0
            if committed >= 1:
                break
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)
    assert 1 <= committed < EPISODES, f"kill did not land mid-run ({committed} units committed)"
    resumed = run_convert(sample.root, tmp_path, "--workers", "1")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed)" in resumed.stdout and f"{EPISODES} (" in resumed.stdout
    assert shard_digests(tmp_path / "droid") == shard_digests(converted)
    assert not list((tmp_path / "droid").rglob("*.partial"))


def test_sigkill_of_a_ray_worker_mid_unit_is_retried_to_the_same_checksums(sample, converted, tmp_path):
    """A worker process killed while it runs a unit: Ray retries the task, nothing is lost or doubled."""
    import psutil

    cmd = [sys.executable, "-m", "pipelines.convert", "--dataset", "droid", "--source", str(sample.root),
           "--out", str(tmp_path), "--workers", "1", "--quiet", "--no-preview"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    manifest, killed = tmp_path / "droid/manifest.json", None
    deadline = time.time() + 240
    while killed is None and time.time() < deadline and proc.poll() is None:
        committed = 0
        if manifest.exists():
            try:
                committed = len(json.loads(manifest.read_text())["shards"])
            except (json.JSONDecodeError, KeyError):
                pass
        if committed >= 1:  # a warm worker: kill it inside its next unit
            for child in psutil.Process(proc.pid).children(recursive=True):
                try:
                    if any("ray::convert_unit" in part for part in child.cmdline()):
                        child.kill()
                        killed = committed
                        break
                except psutil.Error:
                    continue
        time.sleep(0.005)
    out, err = proc.communicate(timeout=300)
    assert killed is not None and killed < EPISODES, "no worker was caught inside a unit"
    assert proc.returncode == 0, err
    assert "quarantined    0 episode(s)" in out
    assert shard_digests(tmp_path / "droid") == shard_digests(converted)
    assert not list((tmp_path / "droid").rglob("*.partial"))


def test_disk_full_leaves_no_visible_shard(sample, tmp_path):
    """Writes that fail at the OS level (file-size limit: EFBIG, the same path as ENOSPC) abort the
    unit; neither a shard nor a partial file remains."""
    script = f"""
import resource, signal, sys
from pathlib import Path
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # a failing write returns EFBIG instead of killing us
resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
from converters.base import load_converter
from pipelines.engine import convert_unit
from schemas.catalog import load_catalog
from schemas.tokenizer import default_codebook
entry = load_catalog().dataset("droid")
unit = load_converter(entry, Path({str(sample.root)!r}), {{}}).plan()[0]
try:
    convert_unit({str(tmp_path / "droid")!r}, entry.model_dump_json(), {str(sample.root)!r}, "{{}}", unit,
                 default_codebook().to_json())
except OSError as e:
    print("write failed:", e)
    sys.exit(3)
"""
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "File too large" in proc.stdout or "error 27" in proc.stdout
    assert [p for p in (tmp_path / "droid").rglob("*") if p.is_file()] == []


@pytest.fixture(scope="module")
def faulty(tmp_path_factory):
    """6 episodes, 2 per shard: episode 1 has a corrupt wrist JPEG, episode 2 no calibration,
    and the last shard (episodes 4, 5) is truncated inside its second record."""
    sample = write_droid_sample(tmp_path_factory.mktemp("faulty"), seed=3, num_episodes=6, num_steps=30,
                                episodes_per_shard=2,
                                faults=DroidFaults(corrupt_jpeg=frozenset({(1, 5, "wrist_left")}),
                                                   no_calibration=frozenset({2})))
    shard = sample.tfds_dir / "droid-train.tfrecord-00002-of-00003"
    data = shard.read_bytes()
    shard.write_bytes(data[: int(len(data) * 0.75)])
    return sample


def test_corrupt_inputs_are_quarantined_and_the_rest_converts(faulty, tmp_path):
    proc = run_convert(faulty.root, tmp_path, "--workers", "2")
    assert proc.returncode == 1 and "more than --max-error-rate" in proc.stderr  # 3 of 6 episodes lost
    root = tmp_path / "droid"
    records = [json.loads(line) for line in (root / "quarantine.jsonl").read_text().splitlines()]
    by_stage = {r["stage"]: r for r in records}
    assert set(by_stage) == {"image", "calibration", "read"}
    ids = faulty.episode_ids
    assert ids[1] in by_stage["image"]["location"]
    assert "view wrist_left: step 5: JPEG truncated or corrupt (no EOI marker" in by_stage["image"]["reason"]
    assert ids[2] in by_stage["calibration"]["location"]
    assert by_stage["calibration"]["reason"].startswith("no usable calibration (")
    assert by_stage["read"]["location"].endswith("droid-train.tfrecord-00002-of-00003")
    assert "unreadable after episode 1 of this shard" in by_stage["read"]["reason"]
    assert "1 episode(s) lost" in by_stage["read"]["reason"]
    converted = set(read_dataset(root, columns=["episode_id"]).column("episode_id").to_pylist())
    assert converted == {ids[0], ids[3], ids[4]}
    assert Manifest.read(root).quarantine == {"episodes": 3, "by_stage": {"calibration": 1, "image": 1, "read": 1}}
    again = run_convert(faulty.root, tmp_path, "--max-error-rate", "0.6")
    assert again.returncode == 0, again.stderr


def test_calibration_fallback_and_idle_filter(faulty):
    entry = load_catalog().dataset("droid")
    (faulty.root / "calibration" / "cam2base_extrinsics.json").write_text("{}")
    (faulty.root / "calibration" / "cam2base_extrinsic_superset.json").write_text("{}")
    converter = load_converter(entry, faulty.root, {"use_keep_ranges": True})
    stats = UnitStats()
    results = list(converter.convert_unit(converter.plan()[0], default_codebook(), stats))
    assert isinstance(results[0], EpisodeRows) and isinstance(results[1], Rejected)
    assert stats.notes["exterior_1_left extrinsics from episode_metadata"] == 1
    frames = sorted(set(results[0].table.column("frame_index").to_pylist()))
    assert frames == list(range(2, 28))  # keep_ranges [[2, T - 2)]
    assert stats.notes["idle steps dropped"] == 4


def test_jpeg_header_check():
    import cv2

    ok, buf = cv2.imencode(".jpg", np.zeros((180, 320, 3), np.uint8))
    data = buf.tobytes()
    assert jpeg_size(data) == (320, 180)
    garbage = b"\xff\xd8" + b"\x00" * 50 + b"\xff\xd9"
    for bad, message in [(b"", "no SOI"), (data[:100], "no EOI"), (garbage, "bad marker")]:
        with pytest.raises(ValueError, match=message):
            jpeg_size(bad)


def test_bundled_sample_command(tmp_path):
    """`make convert DATASET=droid` with no source: generates the sample, converts it, says so."""
    proc = subprocess.run([sys.executable, "-m", "pipelines.convert", "--dataset", "droid", "--out", str(tmp_path),
                           "--quiet"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "BUNDLED SYNTHETIC SAMPLE" in proc.stdout
    assert f"preview        {tmp_path / 'droid' / 'preview.png'}" in proc.stdout
    assert (tmp_path / "droid" / "preview.png").stat().st_size > 10_000
    assert "episodes       8" in proc.stdout and "quarantined    0 episode(s)" in proc.stdout
