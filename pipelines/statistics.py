"""Statistics of converted datasets: computed per work unit while it converts, stored with the
unit, merged by whoever needs a dataset's or a mixture's (``schemas.stats``; docs/conversion.md).

Features: ``state`` and ``action`` (raw embodiment vectors, counted once per frame: the first row
of each ``(episode_id, frame_index)``, every camera's row of a frame carries the same vectors) and
the camera-frame poses ``ego.t``, ``waypoints.t``, ``objects.t`` [m] and ``objects.size`` [m]
(counted once per row: they differ per camera); plus counts a person wants to look at
(categories, episode lengths in frames) and the rows per ``(episode_id, split)`` that a mixture's
split rule needs. Every part is a sum over rows, so any partition of the rows into tables
(batches of episodes during conversion, shard by shard in a scan) merges to the same result:
counts, min, max and the quantile sketches exactly, mean and std up to float rounding.

A unit's statistics are written by its sink, after its shard, to ``stats/<split>/<unit>.json``
(:func:`unit_stats_relpath`), and name the shard's sha256: they count for a shard only while
that sha256 is the manifest's (:func:`load_unit_statistics`). Arrow columns are flattened with
``pyarrow.compute``; no Python loop over rows.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.filesystems import as_path
from pipelines.manifest import Manifest
from pipelines.storage import ShardInfo, open_parquet
from schemas.stats import FeatureStats

POSE_FEATURES = {
    "ego.t": ("ego", "t", 3),
    "waypoints.t": ("waypoints", "t", 3),
    "objects.t": ("objects", "t", 3),
    "objects.size": ("objects", "size", 3),
}
COLUMNS = ["episode_id", "split", "frame_index", "view", "state", "action", "ego", "waypoints", "objects"]
BATCH_ROWS = 20_000  # rows a UnitStatistics keeps before counting them (bounded memory, see the class)
STATS_DIR = "stats"
UNIT_STATS_FORMAT = "posetok-unit-stats/1"


def unit_stats_relpath(shard_relpath: str) -> str:
    """``stats/<split>/<unit>.json``: the statistics of the shard ``data/<split>/<unit>.parquet``."""
    _, split, name = shard_relpath.split("/")
    return f"{STATS_DIR}/{split}/{name.removesuffix('.parquet')}.json"


def _fixed(values: pa.Array, width: int) -> np.ndarray:
    values = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    flat = values.flatten() if len(values) else pa.array([], pa.float64())
    return np.asarray(flat.to_numpy(zero_copy_only=False), dtype=np.float64).reshape(-1, width)


def _vectors(column: pa.ChunkedArray) -> np.ndarray | None:
    """``(N, D)`` of a list<float> column whose non-null rows all have length D (else None)."""
    column = column.combine_chunks()
    valid = column.filter(column.is_valid())
    if len(valid) == 0:
        return None
    lengths = pc.list_value_length(valid).to_numpy()
    if lengths.min() != lengths.max() or lengths[0] == 0:
        return None
    return np.asarray(pc.list_flatten(valid).to_numpy(zero_copy_only=False), dtype=np.float64).reshape(len(valid), -1)


def _frame_rows(table: pa.Table) -> pa.Table:
    """The first row of every ``(episode_id, frame_index)`` of ``table``, in table order."""
    episodes = pc.dictionary_encode(table.column("episode_id").combine_chunks()).indices.to_numpy()
    frames = np.asarray(table.column("frame_index").to_numpy(), dtype=np.int64)
    frames = frames - frames.min()
    _, first = np.unique(episodes.astype(np.int64) * (int(frames.max()) + 1) + frames, return_index=True)
    return table.take(np.sort(first))


def table_statistics(table: pa.Table) -> tuple[dict[str, FeatureStats], dict]:
    """(feature statistics, counts) of one table of rows (see the module docstring)."""
    features: dict[str, FeatureStats] = {}
    frames = _frame_rows(table) if table.num_rows else None
    for name in ("state", "action"):
        rows = _vectors(frames.column(name)) if frames is not None else None
        if rows is not None:
            features[name] = FeatureStats(rows.shape[1])
            features[name].add(rows)
    for name, (column, field, width) in POSE_FEATURES.items():
        items = pc.list_flatten(table.column(column).combine_chunks())
        if len(items):
            values = _fixed(items.field(field), width)
            features[name] = FeatureStats(width)
            features[name].add(values)
    categories = Counter()
    objects = pc.list_flatten(table.column("objects").combine_chunks())
    if len(objects):
        categories.update(objects.field("category").to_pylist())
    episodes = Counter(frames.column("episode_id").to_pylist()) if frames is not None else {}
    return features, {"categories": dict(categories), "episode_frames": dict(episodes)}


def merge_into(total: dict[str, FeatureStats], part: dict[str, FeatureStats]) -> None:
    for name, stats in part.items():
        if name not in total:
            total[name] = FeatureStats(stats.dim)
        if total[name].dim == stats.dim:
            total[name].merge(stats)


class UnitStatistics:
    """Mergeable statistics of some rows (a unit's, a shard's, a dataset's): :meth:`add` tables,
    :meth:`merge` others; ``features``, ``counts`` and ``episode_rows`` (rows per
    ``(episode_id, split)``). Added tables are kept (their :data:`COLUMNS` only: no images) until
    :data:`BATCH_ROWS` rows are pending or a result is read, then counted in one pass: a fixed cost
    per pass (a few ms) would otherwise be paid per episode (measured CPU time per DROID row: 12.5 us
    counted episode by episode, about 4 us in one pass)."""

    def __init__(self) -> None:
        self._features: dict[str, FeatureStats] = {}
        self._counts = {"categories": Counter(), "episode_frames": Counter()}
        self._episode_rows: Counter = Counter()
        self._pending: list[pa.Table] = []
        self._pending_rows = 0

    def add(self, table: pa.Table) -> None:
        """Add rows of the record schema (at least :data:`COLUMNS`)."""
        if table.num_rows:
            self._pending.append(table.select(COLUMNS).replace_schema_metadata(None))
            self._pending_rows += table.num_rows
        if self._pending_rows >= BATCH_ROWS:
            self._count_pending()

    def _count_pending(self) -> None:
        if not self._pending:
            return
        table = pa.concat_tables(self._pending)
        self._pending, self._pending_rows = [], 0
        features, counts = table_statistics(table)
        merge_into(self._features, features)
        for key, counter in self._counts.items():
            counter.update(counts[key])
        pairs = zip(table.column("episode_id").to_pylist(), table.column("split").to_pylist(), strict=True)
        self._episode_rows.update(Counter(pairs))

    @property
    def features(self) -> dict[str, FeatureStats]:
        self._count_pending()
        return self._features

    @property
    def counts(self) -> dict[str, Counter]:
        self._count_pending()
        return self._counts

    @property
    def episode_rows(self) -> Counter:
        self._count_pending()
        return self._episode_rows

    def __getstate__(self) -> dict:  # a Ray task returns counted statistics, not pending rows
        self._count_pending()
        return self.__dict__

    def merge(self, other: UnitStatistics) -> None:
        merge_into(self.features, other.features)
        for key, counter in self.counts.items():
            counter.update(other.counts[key])
        self.episode_rows.update(other.episode_rows)

    def plain_counts(self) -> dict:
        return {key: dict(counter) for key, counter in self.counts.items()}

    def dumps(self, shard: ShardInfo, row_groups: list[int]) -> str:
        """The JSON text of ``stats/<split>/<unit>.json`` for the committed ``shard`` (keys sorted:
        the same rows give the same bytes)."""
        record = {
            "format": UNIT_STATS_FORMAT,
            "shard": shard.path,
            "sha256": shard.sha256,
            "rows": shard.rows,
            "row_groups": row_groups,
            "episodes": [[e, s, n] for (e, s), n in sorted(self.episode_rows.items())],
            "features": {name: stats.to_dict() for name, stats in sorted(self.features.items())},
            "counts": {key: dict(sorted(counter.items())) for key, counter in self.counts.items()},
        }
        return json.dumps(record, sort_keys=True) + "\n"

    @classmethod
    def loads(cls, text: str) -> tuple[UnitStatistics, dict]:
        """(statistics, the record's ``format``, ``shard``, ``sha256``, ``rows``, ``row_groups``)."""
        record = json.loads(text)
        out = cls()
        out._features = {name: FeatureStats.from_dict(d) for name, d in record["features"].items()}
        out._counts = {key: Counter(record["counts"].get(key, {})) for key in out._counts}
        out._episode_rows = Counter({(e, s): n for e, s, n in record["episodes"]})
        return out, {k: record[k] for k in ("format", "shard", "sha256", "rows", "row_groups")}


def load_unit_statistics(path: str | Path, shard_sha256: str) -> tuple[UnitStatistics, list[int]] | None:
    """(statistics, row groups) stored at ``path`` for the shard whose sha256 is ``shard_sha256``;
    None when the file is absent, unreadable, of another format, or written for other bytes of the
    shard (a dataset converted before per-unit statistics were stored has none: scan its shards)."""
    try:
        stats, record = UnitStatistics.loads(as_path(str(path)).read_text())
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if record["format"] != UNIT_STATS_FORMAT or record["sha256"] != shard_sha256:
        return None
    return stats, record["row_groups"]


def scan_statistics(path: str | Path) -> tuple[UnitStatistics, list[int]]:
    """(statistics, row groups) of one shard, read from its Parquet file (the fallback)."""
    parquet = open_parquet(path)
    stats = UnitStatistics()
    stats.add(parquet.read(columns=COLUMNS))
    meta = parquet.metadata
    return stats, [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]


def shard_statistics(root: str | Path, shard: ShardInfo) -> tuple[UnitStatistics, list[int], bool]:
    """(statistics, row groups, scanned) of one listed shard of the dataset at ``root``: the stored
    per-unit statistics, else a scan of the shard (``scanned`` True)."""
    root = as_path(root)
    stored = load_unit_statistics(root / unit_stats_relpath(shard.path), shard.sha256)
    if stored is not None:
        return *stored, False
    return *scan_statistics(root / shard.path), True


def dataset_statistics(root: str | Path) -> tuple[dict[str, FeatureStats], dict]:
    """Statistics of every shard of a converted dataset, merged (stored per unit, else scanned)."""
    total = UnitStatistics()
    for shard in Manifest.read(root).shards:
        total.merge(shard_statistics(root, shard)[0])
    return total.features, total.plain_counts()


def summaries(features: dict[str, FeatureStats]) -> dict:
    return {name: stats.summary() for name, stats in sorted(features.items())}
