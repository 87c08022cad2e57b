"""The engine loses nothing silently and reports environment faults clearly: unit names, the run
lock, exit codes, quarantine accounting and the run summary. Faults are injected into the bundled
samples (pipelines/samples)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

import pipelines.manifest
from pipelines.convert import main as convert_main
from pipelines.convert import print_summary
from pipelines.engine import Engine, RunEnvironmentError, RunSummary, safe_units
from pipelines.layout import check_name
from pipelines.manifest import Manifest
from pipelines.runlock import RunLock, RunLockedError
from pipelines.samples import SAMPLES
from schemas.catalog import load_catalog
from schemas.tokenizer import default_codebook

LIBERO_NAME = "TASK01 pick up the green tin (v2)_demo"


def sample(dataset: str, folder, episodes: int = 2, steps: int = 8, per_shard: int = 1):
    SAMPLES[dataset](folder, seed=3, num_episodes=episodes, num_steps=steps, episodes_per_shard=per_shard)
    return folder


def engine(dataset: str, source, out, **kw) -> Engine:
    return Engine(load_catalog().dataset(dataset), source, out, default_codebook(), workers=2, **kw)


# ----------------------------------------------------------------------------- unit names
def test_unit_names_become_safe_distinct_stems_and_duplicates_are_refused():
    from converters.base import WorkUnit

    units = safe_units([WorkUnit(LIBERO_NAME, "train", {"file": "a.hdf5"}), WorkUnit("ok_name", "train")])
    assert units[1].name == "ok_name" and check_name(units[0].name, "unit") == units[0].name
    assert units[0].name.startswith("TASK01_pick_up_the_green_tin_v2_") and units[0].name != "TASK01_pick_up"
    assert safe_units([WorkUnit(LIBERO_NAME, "train")])[0].name == units[0].name
    with pytest.raises(ValueError, match=r"'x' \(\{'file': 'a/x'\}\) and 'x' \(\{'file': 'b/x'\}\)"):
        safe_units([WorkUnit("x", "train", {"file": "a/x"}), WorkUnit("x", "val", {"file": "b/x"})])


def test_robotwin_folders_that_sanitise_alike_are_refused_up_front(tmp_path):
    """RoboTwin task folders ``pick block/`` and ``pick_block/`` both give unit ``pick_block_...``:
    one episode would silently replace the other's shard."""
    src = sample("robotwin2", tmp_path / "src", episodes=1, steps=4)
    shutil.copytree(src / "pick_block", src / "pick block")
    with pytest.raises(ValueError, match=r"pick block/.*pick_block/|pick_block/.*pick block/"):
        engine("robotwin2", src, tmp_path / "out").run(progress=False)
    assert not (tmp_path / "out" / "robotwin2" / "data").exists()


# ----------------------------------------------------------------------------------- lock
HOLDER = """
import sys, time
from pipelines.runlock import RunLock
lock = RunLock(sys.argv[1]).acquire()
print("locked", flush=True)
time.sleep(120)
"""


def hold_lock(root) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(root)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_second_concurrent_run_is_refused_and_a_dead_runs_lock_is_taken_over(tmp_path, capsys):
    src = sample("robotwin2", tmp_path / "src", episodes=1, steps=4)
    root = tmp_path / "out" / "robotwin2"
    holder = hold_lock(root)
    try:
        with pytest.raises(RunLockedError, match=f"pid {holder.pid} on"):
            RunLock(root).acquire()
        rc = convert_main(["--dataset", "robotwin2", "--source", str(src), "--out", str(tmp_path / "out"),
                           "--quiet", "--no-preview"])
        assert rc == 2 and "another conversion is running" in capsys.readouterr().err
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert json.loads((root / ".lock").read_text())["pid"] == holder.pid  # left behind by the killed run
    with RunLock(root) as lock:
        assert lock.stale["pid"] == holder.pid
        assert json.loads((root / ".lock").read_text())["pid"] == os.getpid()
    assert not (root / ".lock").exists()


def test_summary_prints_clipped_tokens_per_family_and_notes_that_dropped_data(tmp_path, capsys):
    summary = RunSummary("droid", tmp_path, 2, 2, 0, 4, 400, 10, 1.0, 0, {},
                         notes={"idle steps dropped": 7, "omni3d filter: truncated": 2, "success episodes": 4},
                         clipped_tokens={"loc": 3, "tz": 1})
    print_summary(summary, None)
    out = capsys.readouterr().out
    assert "clipped tokens loc 3, tz 1" in out
    dropped = out.split("data dropped by the converter:\n")[1].split("notes:")[0]
    assert "idle steps dropped: 7" in dropped and "omni3d filter: truncated: 2" in dropped
    assert "success episodes" not in dropped and "success episodes: 4" in out


# ------------------------------------------------------------------------- exit codes (2)
def run_cli(args, capsys) -> tuple[int, str]:
    rc = convert_main([*args, "--quiet", "--no-preview"])
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    return rc, err


def test_environment_and_usage_errors_exit_2_with_one_line(tmp_path, capsys):
    src = sample("robotwin2", tmp_path / "src", episodes=1, steps=4)
    (tmp_path / "file").write_text("x")
    base = ["--dataset", "robotwin2", "--source", str(src)]
    rc, err = run_cli([*base, "--out", str(tmp_path / "file")], capsys)
    assert rc == 2 and "is a file" in err
    rc, err = run_cli([*base, "--out", str(tmp_path / "file" / "below")], capsys)
    assert rc == 2 and "environment" in err and "file" in err
    rc, err = run_cli([*base, "--out", str(tmp_path / "out"), "--set", "views=[head, wrist"], capsys)
    assert rc == 2 and "not valid YAML" in err
    rc, err = run_cli([*base, "--out", str(tmp_path / "out"), "--set", "jpeg_quality=300"], capsys)
    assert rc == 2 and "options.jpeg_quality: Input should be less than or equal to 100 (got 300)" in err
    assert not (tmp_path / "out").exists()
    rc, err = run_cli(["--dataset", "robotwin2", "--source", str(tmp_path / "nope"), "--out", str(tmp_path)], capsys)
    assert rc == 2 and "no such file" in err


def test_disk_full_at_the_manifest_write_is_an_environment_error(tmp_path, capsys, monkeypatch):
    src = sample("robotwin2", tmp_path / "src", episodes=1, steps=4)

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(pipelines.manifest.os, "fsync", full)
    rc, err = run_cli(["--dataset", "robotwin2", "--source", str(src), "--out", str(tmp_path / "out")], capsys)
    assert rc == 2 and "No space left on device" in err and "manifest.json" in err
    assert not list((tmp_path / "out" / "robotwin2").glob(".*.partial"))


def test_truncated_calibration_json_is_a_one_line_error(tmp_path, capsys):
    src = sample("droid", tmp_path / "src", episodes=2, steps=6, per_shard=2)
    calib = src / "calibration" / "cam2base_extrinsics.json"
    calib.write_text(calib.read_text()[:40])
    rc, err = run_cli(["--dataset", "droid", "--source", str(src), "--out", str(tmp_path / "out")], capsys)
    assert rc == 2 and f"malformed JSON in {calib} " in err


# ---------------------------------------------------------- runs through Ray (one session)
def test_names_with_spaces_convert_crashes_and_bad_images_are_counted_apart(tmp_path, capsys):
    """A LIBERO file named with spaces and parentheses converts (safe stem); a unit that crashes is
    not 'converted'; DexYCB's bad image costs one image, not an episode (no 1-of-N share mix-up)."""
    src = sample("libero_spatial", tmp_path / "libero", episodes=4, steps=6, per_shard=2)
    files = sorted(src.rglob("*.hdf5"))
    files[1].rename(files[1].with_name(f"{LIBERO_NAME}.hdf5"))
    run = engine("libero_spatial", src, tmp_path / "out")
    stem = next(u.name for u in safe_units(run.converter.plan()) if u.name.startswith("TASK01"))
    crash = tmp_path / "out" / "libero_spatial" / "data" / "train" / f"{files[0].stem}.parquet"
    (crash / "blocker").mkdir(parents=True)  # the shard cannot be committed: the unit crashes
    summary = run.run(progress=False)
    assert (summary.root / "data" / "train" / f"{stem}.parquet").is_file()
    assert (summary.units_converted, summary.units_failed) == (1, 1)
    assert summary.quarantine_by_stage == {"convert": 1} and summary.quarantined_episodes == 2

    dex = sample("dexycb", tmp_path / "dexycb", episodes=2, steps=6)
    image = sorted(dex.rglob("color_000003.jpg"))[0]
    image.write_bytes(image.read_bytes()[:300])
    summary = engine("dexycb", dex, tmp_path / "out").run(progress=False)
    assert summary.episodes == 2 and summary.quarantined_episodes == 0 and summary.quarantine_rate == 0
    assert summary.quarantined_images == 1 and summary.image_quarantine_rate == pytest.approx(1 / (summary.rows + 1))
    assert Manifest.read(summary.root).quarantine == {"episodes": 0, "by_stage": {"read": 1}, "images": 1}
    print_summary(summary, None)
    out = capsys.readouterr().out
    assert "dropped images 1 row(s)" in out and "clipped tokens" in out


def mount_tmpfs(path, options: str) -> bool:
    """A real small or read-only filesystem at ``path`` (needs root; False when it cannot mount)."""
    path.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], check=True,
                       capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return True


def unmount(path) -> None:
    for _ in range(20):
        if subprocess.run(["umount", str(path)], capture_output=True).returncode == 0:
            return
        time.sleep(0.5)


def test_read_only_out_exits_2_with_one_line(tmp_path, capsys):
    src = sample("robotwin2", tmp_path / "src", episodes=1, steps=4)
    out = tmp_path / "ro"
    if not mount_tmpfs(out, "ro,size=64k"):
        pytest.skip("needs root to mount a read-only tmpfs")
    try:
        rc, err = run_cli(["--dataset", "robotwin2", "--source", str(src), "--out", str(out)], capsys)
    finally:
        unmount(out)
    assert rc == 2 and "Read-only file system" in err


def test_disk_full_inside_a_unit_stops_the_run_as_an_environment_error(tmp_path):
    """ENOSPC while a worker writes a shard is not 'converter crashed': the run stops (exit 2)."""
    src = sample("robotwin2", tmp_path / "src", episodes=1, steps=30)
    out = tmp_path / "small"
    if not mount_tmpfs(out, "size=96k"):
        pytest.skip("needs root to mount a 96 KiB tmpfs (a real full disk)")
    try:
        with pytest.raises(OSError, match="No space left on device") as error:
            engine("robotwin2", src, out).run(progress=False)
        assert isinstance(error.value, RunEnvironmentError) and "unit pick_block" in str(error.value)
        assert not (out / "robotwin2" / ".lock").exists()
    finally:
        unmount(out)
