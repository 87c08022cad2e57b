"""Per-unit statistics: computed from the rows a unit converts, stored by its sink with its shard
(``stats/<split>/<unit>.json``), merged by ``build_mixture`` instead of a scan of every shard."""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

import pipelines.statistics
from converters.base import EpisodeRows, Rejected, UnitStats, WorkUnit, load_converter
from pipelines.build_mixture import build
from pipelines.engine import Engine, _convert, safe_units
from pipelines.manifest import Manifest, read_dataset
from pipelines.samples import MANO_SAMPLES, SAMPLES, SYNTHETIC_MANO_DIR, ensure_sample
from pipelines.statistics import (
    STATS_DIR,
    UnitStatistics,
    dataset_statistics,
    load_unit_statistics,
    scan_statistics,
    table_statistics,
    unit_stats_relpath,
)
from schemas.catalog import load_catalog
from schemas.stats import ALPHA, ZERO_THRESHOLD
from schemas.tokenizer import default_codebook

MEMBERS = {  # demo_trajectory's members (catalog.yaml), small
    "droid": {"num_episodes": 6, "num_steps": 12, "episodes_per_shard": 2},
    "lerobot_demo": {"num_episodes": 4, "num_steps": 10},
    "egodex": {"num_episodes": 3, "num_steps": 10},
}


def engine(dataset: str, source: Path, out: Path) -> Engine:
    return Engine(load_catalog().dataset(dataset), source, out, default_codebook(), workers=2)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """``<root>/out/<dataset>`` converted by the engine (Ray) for each of :data:`MEMBERS`."""
    root = tmp_path_factory.mktemp("unit_stats")
    for name, kwargs in MEMBERS.items():
        SAMPLES[name](root / "src" / name, seed=3, **kwargs)
        engine(name, root / "src" / name, root / "out").run(progress=False)
    return root


def stored_and_scanned(root: Path) -> tuple[UnitStatistics, UnitStatistics]:
    """(every listed shard's stored statistics merged, every shard scanned and merged); asserts
    that each listed shard has statistics naming its sha256 and that no other statistics exist."""
    manifest = Manifest.read(root)
    stored, scanned = UnitStatistics(), UnitStatistics()
    for shard in manifest.shards:
        found = load_unit_statistics(root / unit_stats_relpath(shard.path), shard.sha256)
        assert found is not None, f"{shard.path}: no statistics naming its sha256"
        stored.merge(found[0])
        scanned.merge(scan_statistics(root / shard.path)[0])
    files = sorted(p.relative_to(root).as_posix() for p in (root / STATS_DIR).rglob("*") if p.is_file())
    assert files == sorted(unit_stats_relpath(s.path) for s in manifest.shards)
    return stored, scanned


def assert_same(stored: UnitStatistics, scanned: UnitStatistics) -> None:
    """Counts, min, max and quantiles (the same sketch buckets) exactly; mean and std up to float
    rounding (Chan et al.'s merge in another order)."""
    assert stored.counts == scanned.counts and stored.episode_rows == scanned.episode_rows
    assert sorted(stored.features) == sorted(scanned.features)
    for name, mine in stored.features.items():
        a, b = mine.summary(), scanned.features[name].summary()
        for key in ("count", "min", "max", "q01", "q99"):
            assert a[key] == b[key], (name, key)
        np.testing.assert_allclose(a["mean"], b["mean"], rtol=1e-12, atol=1e-12, err_msg=name)
        np.testing.assert_allclose(a["std"], b["std"], rtol=1e-9, atol=1e-12, err_msg=name)


def assert_quantiles_within_tolerance(stats: UnitStatistics, rows: pa.Table) -> None:
    """q01 / q99 within the sketch's documented relative error (``schemas.stats.ALPHA``) of a
    sample value of the right rank, per dimension, for the poses of ``rows``."""
    for name, (column, field, width) in pipelines.statistics.POSE_FEATURES.items():
        items = pc.list_flatten(rows.column(column).combine_chunks())
        if not len(items):
            continue
        x = np.asarray(items.field(field).flatten().to_numpy(zero_copy_only=False), float).reshape(-1, width)
        summary = stats.features[name].summary()
        for q, key in ((0.01, "q01"), (0.99, "q99")):
            lo, hi = np.quantile(x, q, axis=0, method="lower"), np.quantile(x, q, axis=0, method="higher")
            bound = ALPHA * np.maximum(np.abs(lo), np.abs(hi)) + ZERO_THRESHOLD
            got = np.asarray(summary[key])
            assert np.all((got >= np.minimum(lo, hi) - bound) & (got <= np.maximum(lo, hi) + bound)), (name, key)


# ------------------------------------------------------------------- stored == a full scan
def test_engine_stores_statistics_that_merge_to_a_full_scan(data):
    for name in MEMBERS:
        root = data / "out" / name
        stored, scanned = stored_and_scanned(root)
        assert_same(stored, scanned)
        whole_features, whole_counts = table_statistics(read_dataset(root))
        assert whole_counts == stored.plain_counts()
        assert {k: v.summary()["count"] for k, v in whole_features.items()} == {
            k: v.summary()["count"] for k, v in stored.features.items()
        }
        assert_quantiles_within_tolerance(stored, read_dataset(root))
    droid = stored_and_scanned(data / "out" / "droid")[0]
    assert len(Manifest.read(data / "out" / "droid").shards) == 3 and droid.features["state"].count == 6 * 12


SLOW_SAMPLES = sorted(set(SAMPLES) - {"droid", "bop_ycbv", "robotwin2", "lerobot_demo", "egodex"})


@pytest.mark.parametrize(
    "dataset",
    ["droid", "bop_ycbv", "robotwin2", "lerobot_demo", "egodex"]
    + [pytest.param(d, marks=pytest.mark.slow) for d in SLOW_SAMPLES],
)
def test_every_bundled_sample_stores_the_statistics_of_its_shards(dataset, tmp_path):
    """The engine's unit path (in-process, as a Ray task runs it) on a bundled sample: each unit's
    stored statistics equal a scan of the shard it committed."""
    folder = ensure_sample(dataset, tmp_path / "src", num_episodes=2)
    entry = load_catalog().dataset(dataset)
    options = dict(entry.options)
    if dataset in MANO_SAMPLES:
        options["mano_dir"] = str(folder / SYNTHETIC_MANO_DIR)
    converter = load_converter(entry, folder, options)
    root, manifest = tmp_path / "out", Manifest(dataset=dataset, codebook=default_codebook().codebook_id)
    for unit in safe_units(converter.plan()):  # named as the engine names them
        outcome = _convert(str(root), converter, unit, default_codebook().to_json(), 0.0)
        if outcome.shard is not None:
            manifest.add_shard(outcome.shard)
    manifest.write(root)
    assert manifest.shards
    assert_same(*stored_and_scanned(root))


# ------------------------------------------------------------------------ quarantined units
class ScriptedConverter:
    """Yields what a unit's payload says: rows of a real table, a rejection, rows that fail
    validation (a duplicated episode: every sample_id twice), or a crash."""

    def __init__(self, episodes: dict[str, pa.Table]):
        self.episodes = episodes

    def convert_unit(self, unit: WorkUnit, book, stats: UnitStats):
        for step in unit.payload["steps"]:
            kind, _, episode = step.partition(":")
            if kind == "rows":
                yield EpisodeRows(episode, self.episodes[episode])
            elif kind == "twice":
                yield EpisodeRows(episode, pa.concat_tables([self.episodes[episode]] * 2))
            elif kind == "reject":
                yield Rejected(episode, "read", "unreadable episode")
            else:
                raise RuntimeError("converter crashed")


def test_quarantined_rows_and_units_contribute_nothing(data, tmp_path):
    table = read_dataset(data / "out" / "droid", split="train")
    episodes = {e: table.filter(pc.equal(table.column("episode_id"), e)) for e in table.column("episode_id").unique()
                .to_pylist()}
    a, b, c = sorted(episodes)[:3]
    converter = ScriptedConverter(episodes)
    book, root = default_codebook().to_json(), tmp_path / "out"

    def run(name: str, steps: list[str]):
        return _convert(str(root), converter, WorkUnit(name, "train", {"steps": steps}), book, 0.0)

    kept = run("kept", [f"rows:{a}", f"reject:{b}", f"twice:{b}", f"rows:{c}"])
    assert [r["stage"] for r in kept.rejected] == ["read", "validate"] and kept.episodes == 2
    stored = load_unit_statistics(root / unit_stats_relpath(kept.shard.path), kept.shard.sha256)[0]
    assert_same(stored, scan_statistics(root / kept.shard.path)[0])
    expected = UnitStatistics()
    expected.add(pa.concat_tables([episodes[a], episodes[c]]))
    assert_same(stored, expected)
    assert set(stored.counts["episode_frames"]) == {a, c}

    empty = run("all_rejected", [f"reject:{a}", f"twice:{b}"])
    assert empty.shard is None
    with pytest.raises(RuntimeError, match="converter crashed"):
        run("crashed", [f"rows:{a}", "crash:"])
    assert sorted(p.name for p in root.rglob("*") if p.is_file()) == ["kept.json", "kept.parquet"]


# ------------------------------------------------------------------- resume and overwrite
def test_resume_shrunk_plan_and_overwrite_keep_statistics_with_their_shards(tmp_path):
    source = tmp_path / "src"
    SAMPLES["droid"](source, seed=5, num_episodes=4, num_steps=8, episodes_per_shard=1)
    root = tmp_path / "out" / "droid"
    engine("droid", source, tmp_path / "out").run(limit_episodes=2, progress=False)
    assert len(Manifest.read(root).shards) == 2
    first = {p: p.stat().st_mtime_ns for p in (root / STATS_DIR).rglob("*.json")}
    engine("droid", source, tmp_path / "out").run(progress=False)  # resume: 2 kept, 2 converted
    assert len(Manifest.read(root).shards) == 4
    assert all(p.stat().st_mtime_ns == t for p, t in first.items())  # the resumed units' files are untouched
    assert_same(*stored_and_scanned(root))
    engine("droid", source, tmp_path / "out").run(limit_episodes=1, progress=False)  # stale units removed
    assert len(Manifest.read(root).shards) == 1
    assert_same(*stored_and_scanned(root))
    engine("droid", source, tmp_path / "out").run(overwrite=True, progress=False)
    assert len(Manifest.read(root).shards) == 4
    assert_same(*stored_and_scanned(root))


# --------------------------------------------------------------------------- build_mixture
def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns, p.stat().st_mode)
            for p in sorted(folder.rglob("*"))}


def test_mixture_over_read_only_members_merges_stored_statistics_without_a_scan(data, tmp_path, monkeypatch, capsys):
    members = tmp_path / "members"
    shutil.copytree(data / "out", members)
    for folder in (members, *members.rglob("*")):
        folder.chmod(folder.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))  # chmod -R a-w
    before = snapshot(members)

    def no_scan(path):
        raise AssertionError(f"{path} opened as Parquet although its statistics are stored")

    for module in ("pipelines.build_mixture", "pipelines.statistics"):  # no shard is read but for its sha256
        monkeypatch.setattr(f"{module}.open_parquet", no_scan)
    try:
        path = build("demo_trajectory", None, members, tmp_path / "mixtures", 0.3, fit=False)
    finally:
        monkeypatch.undo()
        after = snapshot(members)
        for folder in (members, *members.rglob("*")):
            folder.chmod(folder.stat().st_mode | stat.S_IWUSR)
    assert after == before  # nothing written, created or touched in a member (checked even as root)
    assert "note:" not in capsys.readouterr().err
    record = json.loads(path.read_text())
    for name in MEMBERS:
        features, counts = dataset_statistics(data / "out" / name)
        per_dataset = record["statistics"]["per_dataset"][name]
        assert per_dataset["counts"] == json.loads(json.dumps(counts))
        scanned = UnitStatistics()
        for shard in Manifest.read(data / "out" / name).shards:
            scanned.merge(scan_statistics(data / "out" / name / shard.path)[0])
        for feature, summary in per_dataset["summary"].items():
            expected = scanned.features[feature].summary()
            assert summary["count"] == expected["count"] and summary["q01"] == expected["q01"], feature
            np.testing.assert_allclose(summary["mean"], expected["mean"], rtol=1e-12, atol=1e-12)


def test_members_converted_before_stored_statistics_are_scanned_with_a_notice(data, tmp_path, capsys):
    current = build("demo_trajectory", None, data / "out", tmp_path / "current", 0.3, fit=False)
    assert "note:" not in capsys.readouterr().err
    old = tmp_path / "old"
    shutil.copytree(data / "out", old)
    shutil.rmtree(old / "droid" / STATS_DIR)  # as converted before per-unit statistics existed
    shard = Manifest.read(old / "lerobot_demo").shards[0]
    stale = old / "lerobot_demo" / unit_stats_relpath(shard.path)
    record = json.loads(stale.read_text())
    stale.write_text(json.dumps({**record, "sha256": "0" * 64}))  # statistics of other bytes: not used
    rebuilt = build("demo_trajectory", None, old, tmp_path / "rebuilt", 0.3, fit=False)
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "note: droid: 3 of 3 shard(s) have no stored per-unit statistics (converted by an older posetok); "
        "scanned them instead (re-convert to skip the scan)",
        f"note: lerobot_demo: 1 of {len(Manifest.read(old / 'lerobot_demo').shards)} shard(s) have no stored "
        "per-unit statistics (converted by an older posetok); scanned them instead (re-convert to skip the scan)",
    ]
    a, b = json.loads(current.read_text()), json.loads(rebuilt.read_text())
    for name in MEMBERS:
        assert a["members"][list(MEMBERS).index(name)]["rows"] == b["members"][list(MEMBERS).index(name)]["rows"]
        x, y = a["statistics"]["per_dataset"][name], b["statistics"]["per_dataset"][name]
        assert x["counts"] == y["counts"]
        for feature in x["summary"]:
            for key in ("count", "min", "max", "q01", "q99"):
                assert x["summary"][feature][key] == y["summary"][feature][key], (name, feature, key)
            np.testing.assert_allclose(x["summary"][feature]["mean"], y["summary"][feature]["mean"], rtol=1e-12)


def test_statistics_file_is_written_after_its_shard_and_never_alone(tmp_path, monkeypatch):
    """A failure while the statistics are written takes the just-committed shard with it: no
    statistics without a shard, and the manifest never lists a shard the unit did not finish."""
    table = read_dataset_rows(tmp_path)
    converter = ScriptedConverter({"e": table})

    def full(path, text):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("pipelines.sinks._write_durably", full)
    with pytest.raises(OSError, match="No space left"):
        _convert(str(tmp_path / "out"), converter, WorkUnit("u", "train", {"steps": ["rows:e"]}),
                 default_codebook().to_json(), 0.0)
    assert [p for p in (tmp_path / "out").rglob("*") if p.is_file()] == []


def read_dataset_rows(tmp_path: Path) -> pa.Table:
    """One small DROID episode's rows (the bundled sample, converted in-process)."""
    folder = ensure_sample("droid", tmp_path / "src", num_episodes=1, num_steps=4)
    entry = load_catalog().dataset("droid")
    converter = load_converter(entry, folder, dict(entry.options))
    unit = converter.plan()[0]
    rows = [r for r in converter.convert_unit(unit, default_codebook(), UnitStats()) if isinstance(r, EpisodeRows)]
    return rows[0].table


def test_ray_scan_of_shards_without_statistics_equals_the_stored_statistics(data, tmp_path, monkeypatch):
    """The fallback on Ray tasks (one per shard) gives the mixture entry and statistics that the
    stored per-unit statistics give in-process."""
    import ray

    from pipelines import build_mixture
    from pipelines.statistics import summaries
    from pipelines.storage import Sha256Cache

    def record(root: Path):
        entry, features, counts = build_mixture.member_record(
            "droid", root, 0.3, Sha256Cache(tmp_path / "cache.json"), tmp_path)
        shards = [(s["sha256"], s["rows"], s["row_groups"]) for s in entry["shards"]]
        return (entry["rows"], entry["episodes"], shards, counts), summaries(features)

    stored, stored_summary = record(data / "out" / "droid")
    old = tmp_path / "droid"
    shutil.copytree(data / "out" / "droid", old)
    shutil.rmtree(old / STATS_DIR)
    monkeypatch.setattr(build_mixture, "RAY_MIN_SHARDS", 0)  # one Ray task per shard
    try:
        scanned, scanned_summary = record(old)
    finally:
        ray.shutdown()
    assert scanned == stored and sorted(scanned_summary) == sorted(stored_summary)
    for name, summary in stored_summary.items():
        for key in ("count", "min", "max", "q01", "q99"):
            assert scanned_summary[name][key] == summary[key], (name, key)
        np.testing.assert_allclose(scanned_summary[name]["mean"], summary["mean"], rtol=1e-12, atol=1e-12)
