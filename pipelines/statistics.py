"""Statistics of converted datasets, computed per shard and merged (``schemas.stats``).

Features: ``state`` and ``action`` (raw embodiment vectors) and the camera-frame poses
``ego.t``, ``waypoints.t``, ``objects.t`` [m] and ``objects.size`` [m]; plus counts a person
wants to look at (categories, episode lengths in frames). Arrow columns are flattened with
``pyarrow.compute``; no Python loop over rows.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines.manifest import Manifest
from schemas.stats import FeatureStats

POSE_FEATURES = {
    "ego.t": ("ego", "t", 3),
    "waypoints.t": ("waypoints", "t", 3),
    "objects.t": ("objects", "t", 3),
    "objects.size": ("objects", "size", 3),
}
COLUMNS = ["episode_id", "frame_index", "view", "state", "action", "ego", "waypoints", "objects"]


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


def table_statistics(table: pa.Table) -> tuple[dict[str, FeatureStats], dict]:
    """(feature statistics, counts) of one table of rows. ``state``/``action`` are counted once
    per frame (first view), poses once per row (they differ per camera)."""
    features: dict[str, FeatureStats] = {}
    first_view = pc.equal(table.column("view"), table.column("view")[0]) if table.num_rows else None
    for name in ("state", "action"):
        rows = _vectors(table.filter(first_view).column(name)) if first_view is not None else None
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
    episodes = Counter(table.column("episode_id").filter(first_view).to_pylist()) if first_view is not None else {}
    return features, {"categories": dict(categories), "episode_frames": dict(episodes)}


def merge_into(total: dict[str, FeatureStats], part: dict[str, FeatureStats]) -> None:
    for name, stats in part.items():
        if name not in total:
            total[name] = FeatureStats(stats.dim)
        if total[name].dim == stats.dim:
            total[name].merge(stats)


def dataset_statistics(root: str | Path) -> tuple[dict[str, FeatureStats], dict]:
    """Statistics of every shard of a converted dataset, merged."""
    root = Path(root)
    manifest = Manifest.read(root)
    features: dict[str, FeatureStats] = {}
    counts = {"categories": Counter(), "episode_frames": Counter()}
    for shard in manifest.shards:
        part, part_counts = table_statistics(pq.read_table(root / shard.path, columns=COLUMNS))
        merge_into(features, part)
        for key in counts:
            counts[key].update(part_counts[key])
    return features, {k: dict(v) for k, v in counts.items()}


def summaries(features: dict[str, FeatureStats]) -> dict:
    return {name: stats.summary() for name, stats in sorted(features.items())}
