"""The conversion engine: one Ray task per work unit, on a laptop or a cluster (same code path).

Each task converts one unit with the dataset's converter, validates every episode's rows against
schema v1, and commits the unit's shard atomically (pipelines.storage) together with the
statistics of its stored rows (:class:`pipelines.statistics.UnitStatistics`, the sufficient
statistics a mixture merges instead of rescanning the shard). The driver records each
committed shard in the manifest as it lands, so a killed job resumes where it stopped: units
whose shard is listed with a matching sha256 are skipped. Rejected episodes go to
``quarantine.jsonl`` with location, stage and reason; the job goes on. Work unit names become
safe file stems (:func:`pipelines.layout.unit_stem`); two units with one stem are refused up
front. One run at a time per dataset folder (:mod:`pipelines.runlock`). A unit that fails because
the output side is out of space or read-only stops the run as an environment error.

Sources and outputs may be fsspec URLs (``s3://``, ``gs://``, ``hf://``, :mod:`pipelines.filesystems`).
Everything written goes through a sink (:mod:`pipelines.sinks`): a local folder, or an object
store where each shard is uploaded whole and the manifest last. A converter that reads its source
through path objects (``reads_urls = True``: the RLDS ones) streams from the URL; for any other,
each unit's source files (the payload values that name paths below the source URL) are staged into
a scratch folder for the unit and deleted after it (:func:`pipelines.filesystems.staged`); the
converter itself is planned and opened on the URL, so files it reads outside a unit's payload must
be read through path methods (``read_text``, ``open``), not by a library that needs a local name.
"""

from __future__ import annotations

import errno
import json
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from converters.base import Rejected, UnitStats, WorkUnit, load_converter
from pipelines.filesystems import StorageError, as_path, is_url, staged
from pipelines.layout import QUARANTINE_NAME, dataset_dir, unit_stem
from pipelines.manifest import Manifest, ManifestError
from pipelines.sinks import open_sink
from pipelines.statistics import UnitStatistics, unit_stats_relpath
from pipelines.storage import ShardInfo
from schemas.catalog import DatasetEntry
from schemas.record import find_problems
from schemas.tokenizer import Codebook

# Worker processes: TensorFlow on one thread each. A task reserves one CPU (``num_cpus=1``); TF's
# default pools span every core, so one worker used ~1.2 cores and two workers on 2 cores only
# reached 1.2x one (measured, bench).
_WORKER_THREADS = {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}
# Quiet output, the default (``--verbose`` keeps every log): TF_CPP_MIN_LOG_LEVEL=3 drops TensorFlow's
# C++ INFO/WARNING lines, but not its oneDNN notice ("I0000 ... port.cc:153] oneDNN custom operations
# are on", TF 2.21), which goes through absl while TensorFlow loads; TF_ENABLE_ONEDNN_OPTS=0, the switch
# that notice names, turns those ops and the notice off. posetok runs no TensorFlow maths (it reads
# and parses records), so nothing it writes changes.
QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "0"}


def quiet_native_logs() -> None:
    """Apply :data:`QUIET_ENV` to this process, keeping any value the user set; effective only
    before TensorFlow is first imported."""
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)


@dataclass
class UnitOutcome:
    unit: str
    shard: ShardInfo | None
    rejected: list[dict]
    episodes: int
    rows: int
    seconds: float
    clipped_tokens: dict = field(default_factory=dict)
    notes: dict = field(default_factory=dict)
    depth_store: dict | None = None  # {"path", "sha256"} when the unit wrote depth maps


@dataclass
class RunSummary:
    dataset: str
    root: Path
    units_total: int
    units_converted: int
    units_resumed: int
    episodes: int
    rows: int
    bytes: int
    seconds: float
    quarantined_episodes: int
    quarantine_by_stage: dict
    notes: dict
    units_failed: int = 0  # crashed units (quarantined whole); not counted as converted
    quarantined_images: int = 0  # rows dropped from episodes that were kept
    clipped_tokens: dict = field(default_factory=dict)  # per token family
    stale_lock: dict | None = None  # holder of a dead run's lock that this run took over

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    @property
    def quarantine_rate(self) -> float:
        total = self.episodes + self.quarantined_episodes
        return self.quarantined_episodes / total if total else 0.0

    @property
    def image_quarantine_rate(self) -> float:
        """Share of rows (images) dropped from kept episodes, among all rows of kept episodes."""
        total = self.rows + self.quarantined_images
        return self.quarantined_images / total if total else 0.0


RECORD_INTERVAL_S = 1.0  # manifest + quarantine rewritten at most this often while units land
# Images fully decoded while converting: every 8th row (a decode, 0.07 ms per 320x180 JPEG, costs
# about 3/4 of a DROID row's conversion, 0.1 ms); `python -m pipelines.validate` decodes every one.
ENGINE_IMAGE_STRIDE = 8
# Failures of the output side, not of the data: they stop the run (exit 2) instead of quarantining.
ENVIRONMENT_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


class RunEnvironmentError(OSError):
    """The run cannot go on for a reason outside the data (disk full, read-only output)."""
# What a cluster's workers need of this repository: its code, shipped by Ray as the working dir.
CLUSTER_RUNTIME_ENV = {
    "working_dir": str(Path(__file__).resolve().parent.parent),
    "excludes": [".venv", ".git", "out", "tests"],
}
_CONVERTERS: dict = {}


def _converter(entry_json: str, source: str, options_json: str):
    """One converter instance per worker process and dataset (builders are costly to open)."""
    key = (entry_json, source, options_json)
    if key not in _CONVERTERS:
        entry = DatasetEntry.model_validate_json(entry_json)
        _CONVERTERS[key] = load_converter(entry, as_path(source), json.loads(options_json))
    return _CONVERTERS[key]


def convert_unit(
    root: str, entry_json: str, source: str, options_json: str, unit: WorkUnit, codebook_json: str
) -> UnitOutcome:
    """Convert and commit one unit (runs inside a Ray task; pure function of its arguments).
    ``root`` (the dataset's output folder) and ``source`` are local paths or fsspec URLs."""
    start = time.perf_counter()
    converter = _converter(entry_json, source, options_json)
    remote = unit_source_paths(unit, source) if is_url(source) and not getattr(converter, "reads_urls", False) else []
    if remote:
        with staged(remote, source) as local:
            payload = {k: str(local.get(v, v)) if isinstance(v, str) else v for k, v in unit.payload.items()}
            return _convert(root, converter, replace(unit, payload=payload), codebook_json, start)
    return _convert(root, converter, unit, codebook_json, start)


def unit_source_paths(unit: WorkUnit, source: str) -> list:
    """The files and folders a unit's payload names below the URL ``source`` (what is staged)."""
    prefix = str(source).rstrip("/") + "/"
    return [as_path(v) for v in unit.payload.values() if isinstance(v, str) and v.startswith(prefix)]


def _convert(root: str, converter, unit: WorkUnit, codebook_json: str, start: float) -> UnitOutcome:
    book = Codebook.from_json(codebook_json)
    stats = UnitStats()
    statistics = UnitStatistics()  # of the rows stored: what build_mixture merges instead of a scan
    rejected: list[dict] = []
    episodes = rows = 0
    sink = open_sink(root).begin_unit(unit.split, unit.name)
    try:
        for result in converter.convert_unit(unit, book, stats):
            if isinstance(result, Rejected):
                rejected.append({"unit": unit.name, **asdict(result)})
                continue
            problems = find_problems(result.table, image_stride=ENGINE_IMAGE_STRIDE)
            if problems:
                shown = "; ".join(str(p) for p in problems[:3])
                rejected.append(
                    {
                        "unit": unit.name,
                        "location": result.episode_id,
                        "stage": "validate",
                        "reason": f"{len(problems)} schema violation(s): {shown}",
                        "episodes": 1,
                    }
                )
                continue
            statistics.add(sink.write(result.table, result.depth))
            episodes += 1
            rows += result.table.num_rows
        shard, depth_store = sink.commit(statistics)
    except BaseException:
        sink.abort()
        raise
    return UnitOutcome(
        unit.name,
        shard,
        rejected,
        episodes,
        rows,
        time.perf_counter() - start,
        dict(stats.clipped_tokens),
        dict(stats.notes),
        depth_store,
    )


class Engine:
    """Plans, schedules and records the conversion of one catalog dataset into ``out``."""

    def __init__(
        self,
        entry: DatasetEntry,
        source: Path,
        out: Path,
        codebook: Codebook,
        options: dict | None = None,
        workers: int | None = None,
        address: str | None = None,
        verbose: bool = False,
    ):
        """``verbose``: forward the Ray workers' output and Ray's INFO logs to this process, and
        leave TensorFlow's logging as it is (default: quiet, see :data:`QUIET_ENV`)."""
        self.entry, self.source, self.codebook = entry, as_path(source), codebook
        self.verbose = verbose
        self.options = options or {}
        self.root = dataset_dir(out, entry.name)
        self.sink = open_sink(self.root)
        self.workers = workers or os.cpu_count() or 1
        self.address = address
        self.converter = load_converter(entry, self.source, self.options)

    # ------------------------------------------------------------------------------- resume
    def _existing_manifest(self, overwrite: bool) -> Manifest | None:
        if overwrite:
            self.sink.clear()
        try:
            manifest = self.sink.read_manifest()
        except ManifestError:
            return None
        same_source = manifest.source.get("listing_sha256") == self.converter.source_info()["listing_sha256"]
        same_converter = manifest.converter == {"name": self.converter.name, "version": self.converter.version}
        if not (same_source and same_converter and manifest.codebook == self.codebook.codebook_id):
            raise ManifestError(
                f"{self.root}: already holds a conversion from another source, converter version or codebook; "
                f"pass --overwrite to replace it, or choose another --out"
            )
        return manifest

    def _committed(self, manifest: Manifest | None, relpath: str) -> ShardInfo | None:
        info = manifest.shard(relpath) if manifest else None
        return info if info is not None and self.sink.committed(info) else None

    # ---------------------------------------------------------------------------------- run
    def run(self, limit_episodes: int | None = None, overwrite: bool = False, progress: bool = True) -> RunSummary:
        """Convert every planned unit not yet committed, holding the dataset folder's lock."""
        started = time.perf_counter()
        units = safe_units(self.converter.plan(limit_episodes))
        with self.sink.lock() as lock:
            summary = self._run(units, overwrite, progress)
        summary.seconds = time.perf_counter() - started
        summary.stale_lock = lock.stale
        return summary

    def _run(self, units: list[WorkUnit], overwrite: bool, progress: bool) -> RunSummary:
        import ray
        from tqdm import tqdm

        previous = self._existing_manifest(overwrite)
        manifest = Manifest(
            dataset=self.entry.name,
            codebook=self.codebook.codebook_id,
            source=self.converter.source_info(),
            converter={"name": self.converter.name, "version": self.converter.version},
            metadata=self.converter.dataset_metadata(),
        )
        quarantine = self._load_quarantine()
        self.sink.remove_partials()
        planned = {f"data/{u.split}/{u.name}.parquet": u for u in units}
        pending = []
        for relpath, unit in planned.items():
            info = self._committed(previous, relpath)
            if info is not None:
                manifest.add_shard(info)
                manifest.depth_stores += [
                    d for d in (previous.depth_stores if previous else []) if d["path"] == f"depth/{unit.name}.zarr"
                ]
            else:
                quarantine.pop(unit.name, None)
                pending.append(unit)
        for stale in set(s.path for s in (previous.shards if previous else [])) - set(planned):
            self.sink.remove(unit_stats_relpath(stale))  # statistics first: never left without their shard
            self.sink.remove(stale)
        resumed = len(units) - len(pending)
        committed = {u.name for u in units} - {u.name for u in pending}
        per_unit = {
            k: v for k, v in (previous.statistics.get("per_unit", {}) if previous else {}).items() if k in committed
        }
        manifest.statistics = conversion_statistics(per_unit)
        self._record(manifest, quarantine)

        rows = episodes = converted = 0
        if pending:
            self._init_ray()
            task = ray.remote(num_cpus=1, max_retries=2)(convert_unit)
            args = (str(self.root), self.entry.model_dump_json(), str(self.source), json.dumps(self.options))
            book = self.codebook.to_json()
            refs = {task.remote(*args, unit, book): unit for unit in pending}
            bar = tqdm(total=len(pending), desc=f"convert {self.entry.name}", unit="unit", disable=not progress)
            last_record = time.perf_counter()
            while refs:
                ray.wait(list(refs), num_returns=1)
                done, _ = ray.wait(list(refs), num_returns=len(refs), timeout=0)  # all that are ready
                for ref in done:
                    unit = refs.pop(ref)
                    try:
                        outcome: UnitOutcome = ray.get(ref)
                    except Exception as e:  # noqa: BLE001 - a crashed unit is quarantined, the job goes on
                        environment = _environment_failure(e)
                        if environment is not None:
                            manifest.statistics = conversion_statistics(per_unit)
                            self._record(manifest, quarantine)
                            raise RunEnvironmentError(
                                f"unit {unit.name}: {environment}; fix the output location "
                                f"(free space, permissions) and re-run: committed units are kept"
                            ) from None
                        n = planned_episodes(unit)
                        quarantine[unit.name] = [
                            {
                                "unit": unit.name,
                                "location": unit.name,
                                "stage": "convert",
                                "reason": f"converter crashed: {_short(e)}",
                                "episodes": n,
                            }
                        ]
                    else:
                        if outcome.shard is not None:
                            manifest.add_shard(outcome.shard)
                        if outcome.depth_store is not None:
                            kept = [d for d in manifest.depth_stores if d["path"] != outcome.depth_store["path"]]
                            manifest.depth_stores = sorted([*kept, outcome.depth_store], key=lambda d: d["path"])
                        quarantine[unit.name] = outcome.rejected
                        rows += outcome.rows
                        episodes += outcome.episodes
                        converted += 1
                        per_unit[unit.name] = {"clipped_tokens": outcome.clipped_tokens, "notes": outcome.notes}
                # The manifest is what a resume trusts; rewriting it after every unit cost the driver
                # a core's worth of JSON on long jobs. A unit committed but not yet listed is redone.
                if not refs or time.perf_counter() - last_record >= RECORD_INTERVAL_S:
                    manifest.statistics = conversion_statistics(per_unit)
                    self._record(manifest, quarantine)
                    last_record = time.perf_counter()
                bar.update(len(done))
                bar.set_postfix(rows=rows, quarantined=sum(r["episodes"] for v in quarantine.values() for r in v))
            bar.close()
        splits = manifest.splits()
        records = [r for v in quarantine.values() for r in v]
        return RunSummary(
            dataset=self.entry.name,
            root=self.root,
            units_total=len(units),
            units_converted=converted,
            units_resumed=resumed,
            episodes=sum(s["episodes"] for s in splits.values()),
            rows=sum(s["rows"] for s in splits.values()),
            bytes=sum(s.bytes for s in manifest.shards),
            seconds=0.0,
            quarantined_episodes=sum(r["episodes"] for r in records),
            quarantine_by_stage=dict(Counter(r["stage"] for r in records)),
            notes=manifest.statistics["notes"],
            units_failed=len(pending) - converted,
            quarantined_images=sum(r.get("images", 0) for r in records),
            clipped_tokens=manifest.statistics["clipped_tokens"],
        )

    def _init_ray(self) -> None:
        import ray

        if ray.is_initialized():
            return
        quiet = {} if self.verbose else {**QUIET_ENV, "PYTHONWARNINGS": "ignore"}
        env = {"env_vars": {**_WORKER_THREADS, **quiet}}
        logs = {"log_to_driver": self.verbose, "logging_level": "info" if self.verbose else "error"}
        if self.address:
            ray.init(address=self.address, runtime_env={**env, **CLUSTER_RUNTIME_ENV}, **logs)
        else:
            # address "local": always a fresh instance, never a cluster that `ray start` left running
            ray.init(address="local", num_cpus=self.workers, runtime_env=env, include_dashboard=False, **logs)

    # -------------------------------------------------------------------------- bookkeeping
    def _load_quarantine(self) -> dict[str, list[dict]]:
        out: dict[str, list[dict]] = {}
        for line in (self.sink.read_text(QUARANTINE_NAME) or "").splitlines():
            if line.strip():
                record = json.loads(line)
                out.setdefault(record["unit"], []).append(record)
        return out

    def _record(self, manifest: Manifest, quarantine: dict[str, list[dict]]) -> None:
        """Write quarantine.jsonl and manifest.json (last), each atomically (sorted: deterministic content)."""
        records = [r for unit in sorted(quarantine) for r in quarantine[unit]]
        manifest.quarantine = {
            "episodes": sum(r["episodes"] for r in records),
            "by_stage": dict(Counter(r["stage"] for r in records)),
        }
        images = sum(r.get("images", 0) for r in records)
        if images:  # rows dropped from episodes that were kept (counted apart from lost episodes)
            manifest.quarantine["images"] = images
        self.sink.finalize(manifest, records)


def safe_units(units: list[WorkUnit]) -> list[WorkUnit]:
    """``units`` named by their safe file stems (:func:`pipelines.layout.unit_stem`); refuses two
    units with one stem (in any split: they share a depth store and a quarantine key), naming
    both, since one would silently replace the other's shard."""
    seen: dict[str, WorkUnit] = {}
    out = []
    for unit in units:
        stem = unit_stem(unit.name)
        if stem in seen:
            first = seen[stem]
            raise ValueError(
                f"work units {first.name!r} ({first.payload}) and {unit.name!r} ({unit.payload}) both map to the "
                f"shard name {stem!r}: one would overwrite the other. Rename one of these sources so that their "
                f"names differ by more than spaces or punctuation"
            )
        seen[stem] = unit
        out.append(replace(unit, name=stem))
    return out


def planned_episodes(unit: WorkUnit) -> int:
    """Episodes a unit was planned to hold (what a crash of the whole unit costs): an episode
    range's length, a LIBERO file's ``demos`` count, else 1."""
    return int(unit.payload.get("demos", unit.payload.get("end", 1) - unit.payload.get("start", 0)))


def _environment_failure(e: BaseException) -> OSError | None:
    """The OSError (out of space, read-only, over quota) behind a failed unit, or None when the
    failure is the data's (a Ray task error carries the worker's exception as ``cause``)."""
    cause = getattr(e, "cause", None) or e
    if isinstance(cause, StorageError):  # the output bucket refused a write
        return cause
    if not isinstance(cause, OSError):
        return None
    # pyarrow's write errors carry the errno only in their text ("[errno 28] No space left on device")
    if cause.errno in ENVIRONMENT_ERRNOS or any(os.strerror(n) in str(cause) for n in ENVIRONMENT_ERRNOS):
        return cause
    return None


def conversion_statistics(per_unit: dict[str, dict]) -> dict:
    """The manifest's conversion counters: per unit (kept exact across resumes) and their totals
    (token clips per family; converter notes such as filter rejections per reason)."""
    totals = {"clipped_tokens": Counter(), "notes": Counter()}
    for stats in per_unit.values():
        for key, counter in totals.items():
            counter.update(stats.get(key, {}))
    return {
        "clipped_tokens": dict(sorted(totals["clipped_tokens"].items())),
        "notes": dict(sorted(totals["notes"].items())),
        "per_unit": dict(sorted(per_unit.items())),
    }


def _short(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return (text[-1] if text else type(e).__name__)[:500]
