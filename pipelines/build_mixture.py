"""Build a training mixture from converted datasets, as described in ``catalog.yaml``.

    python -m pipelines.build_mixture --mixture stage1_pose [--catalog catalog.yaml] [--data out]
                                      [--out out/mixtures] [--val-fraction 0.05] [--fit-codebook]

For every member: its manifest and schema version are checked and its shards listed (path,
sha256, rows) after checking each shard's sha256 against the manifest (hashes are remembered by
size and mtime in ``<out>/.sha256-cache.json``, so a re-run only hashes changed files);
statistics are the per-unit ones the conversion stored with each shard
(``stats/<split>/<unit>.json``, :mod:`pipelines.statistics`), merged, so no shard is read for
them; a shard without them (converted before they were stored) is scanned instead, with a one-line
notice per member. Nothing is written into a member dataset: a mixture over a read-only folder or
bucket builds. Episodes are split into train / val by a STABLE HASH of ``dataset/episode_id``, so
an episode is in exactly one split whatever the mixture. Weights are the catalog's explicit ones, or
temperature sampling ``p_i ~ n_i ** alpha`` over the members' train rows (Pose-VLA:
alpha = 0.43). Output: ``<out>/<mixture>.json`` (members, shards with checksums, effective
weights, row and episode counts per split, statistics per dataset and per embodiment, codebook
id, split rule, content hash); with ``--fit-codebook`` also ``<out>/<mixture>.codebook.json``,
quantile-fitted on the mixture's train poses.

Scaled out: with ``--address`` (a Ray cluster), or when more than ``RAY_MIN_SHARDS`` shards of a
member need reading (no stored statistics, or at a URL), the per-shard work (sha256, the stored
statistics or the scan) runs as one Ray task per shard; the driver merges the results in manifest
order with the mergeable statistics of ``schemas.stats``, so the mixture is the same as the
single-process one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.compute as pc

from pipelines.filesystems import as_path, is_url
from pipelines.layout import dataset_dir, partial_path
from pipelines.manifest import Manifest, ManifestError
from pipelines.statistics import (
    POSE_FEATURES,
    UnitStatistics,
    merge_into,
    shard_statistics,
    summaries,
    unit_stats_relpath,
)
from pipelines.storage import Sha256Cache, ShardInfo, file_sha256, open_parquet
from schemas.catalog import CatalogError, load_catalog
from schemas.mixture import MIXTURE_FORMAT, SPLIT_RULE, SPLITS, content_hash, relative_path, split_of
from schemas.tokenizer import default_codebook, fit_codebook

DEFAULT_VAL_FRACTION = 0.05
RAY_MIN_SHARDS = 64  # a member with more shards to read is read by Ray tasks (one per shard)
FIT_SAMPLES_PER_FAMILY = 2_000_000


def effective_weights(
    names: list[str], weights: list[float | None], rows: list[int], alpha: float | None
) -> list[float]:
    """Normalised sampling probabilities: explicit weights, or ``rows ** alpha``."""
    raw = [float(r) ** alpha if alpha is not None else float(w) for w, r in zip(weights, rows, strict=True)]
    total = sum(raw)
    if total <= 0:
        raise ValueError(f"mixture members {names} have no rows to sample")
    return [r / total for r in raw]


def shard_summary(root: str, shard: ShardInfo, name: str, val_fraction: float, sha256: str | None) -> dict:
    """What the mixture needs of one listed shard of dataset ``name`` (folder or URL ``root``): its
    sha256 (hashed here when ``sha256`` is None), row groups, rows and episodes per mixture split
    and statistics (a :class:`UnitStatistics`): the stored per-unit ones when they are those of the
    manifest's shard, else from a scan of the shard (``scanned``). A pure function of its
    arguments: the body of one Ray task."""
    path = as_path(root) / shard.path
    if not path.is_file():
        return {"sha256": None}
    statistics, row_groups, scanned = shard_statistics(root, shard)
    rows, episodes = Counter(), {split: set() for split in SPLITS}
    for (episode, source_split), count in statistics.episode_rows.items():
        split = split_of(name, episode, val_fraction, source_split)
        rows[split] += count
        episodes[split].add(episode)
    return {
        "sha256": sha256 or file_sha256(path),
        "row_groups": row_groups,
        "rows": rows,
        "episodes": episodes,
        "statistics": statistics,
        "scanned": scanned,
    }


def shard_summaries(name: str, root: Path, shards: list[ShardInfo], val_fraction: float, hashes: Sha256Cache,
                    address: str | None) -> list[dict]:
    """:func:`shard_summary` of every shard, in order: Ray tasks when ``address`` is given or more
    than :data:`RAY_MIN_SHARDS` shards need reading (hashed by the tasks), else here (hashes
    cached). A local shard with stored statistics needs no reading beyond its cached hash; a shard
    at a URL is hashed by streaming it, so every one counts."""
    heavy = shards if is_url(root) else [s for s in shards if not (root / unit_stats_relpath(s.path)).is_file()]
    if address is None and len(heavy) <= RAY_MIN_SHARDS:
        return [
            shard_summary(str(root), s, name, val_fraction, hashes.sha256(p) if not is_url(p) and p.is_file() else None)
            for s, p in ((s, root / s.path) for s in shards)
        ]
    import ray

    from pipelines.engine import CLUSTER_RUNTIME_ENV

    if not ray.is_initialized():
        local = {"address": "local", "include_dashboard": False}
        where = {"address": address, "runtime_env": CLUSTER_RUNTIME_ENV} if address else local
        ray.init(**where, log_to_driver=False, logging_level="error")
    task = ray.remote(num_cpus=1)(shard_summary)
    return ray.get([task.remote(str(root), s, name, val_fraction, None) for s in shards])


def member_record(
    name: str, root: Path, val_fraction: float, hashes: Sha256Cache, out: Path, address: str | None = None
) -> tuple[dict, dict, dict]:
    """(mixture entry, feature statistics, counts) of one converted dataset; every shard's sha256
    must match the manifest. Paths are stored relative to ``out`` (the mixture's folder). An
    episode whose rows would fall into two splits (the source put it in two) is refused. Reads the
    member, never writes it."""
    manifest = Manifest.read(root)
    shards, rows, episodes = [], Counter(), {split: set() for split in SPLITS}
    statistics = UnitStatistics()
    parts = shard_summaries(name, root, manifest.shards, val_fraction, hashes, address)
    for shard, part in zip(manifest.shards, parts, strict=True):
        path = root / shard.path
        if part["sha256"] != shard.sha256:
            raise ManifestError(
                f"{path}: missing or changed since conversion (sha256 differs from the manifest's "
                f"{shard.sha256}); re-run `make convert DATASET={name}`"
            )
        rows.update(part["rows"])
        for split in SPLITS:
            episodes[split] |= part["episodes"][split]
        statistics.merge(part["statistics"])
        shards.append(
            {
                "path": relative_path(path, out),
                "sha256": shard.sha256,
                "rows": shard.rows,
                "row_groups": part["row_groups"],
            }
        )
    scanned = sum(part["scanned"] for part in parts)
    if scanned:
        print(f"note: {name}: {scanned} of {len(parts)} shard(s) have no stored per-unit statistics (converted by an "
              f"older posetok); scanned them instead (re-convert to skip the scan)", file=sys.stderr)
    twice = sorted(e for a in SPLITS for b in SPLITS if a < b for e in episodes[a] & episodes[b])
    if twice:
        raise ManifestError(
            f"{len(twice)} episode(s) in two splits (e.g. {twice[:3]}): the source put rows of one episode in "
            f"more than one split; its converter must give each recording one episode_id and one split"
        )
    entry = {
        "dataset": name,
        "root": relative_path(root, out),
        "schema_version": manifest.schema_version,
        "codebook": manifest.codebook,
        "embodiment": manifest.metadata.get("embodiment"),
        "state_names": manifest.metadata.get("state_names"),
        "action_names": manifest.metadata.get("action_names"),
        "shards": shards,
        "rows": dict(rows),
        "episodes": {k: len(v) for k, v in episodes.items()},
    }
    return entry, statistics.features, statistics.plain_counts()


def fit_samples(members: list[dict], val_fraction: float) -> dict[str, np.ndarray]:
    """Train-split pose values per token family (systematically subsampled to a fixed cap), of the
    items that are tokenised: in front of the camera, with a 2D anchor (``center_uv``; the rule of
    ``schemas.tokenizer.poses_of_row``). Shard paths are absolute (as ``load_mixture`` gives them)."""
    values: dict[str, list[np.ndarray]] = {"txy": [], "tz": [], "size": []}
    for member in members:
        for shard in member["shards"]:
            table = open_parquet(shard["path"]).read(columns=["episode_id", "split", "ego", "waypoints", "objects"])
            keep = [
                split_of(member["dataset"], e, val_fraction, s) == "train"
                for e, s in zip(table.column("episode_id").to_pylist(), table.column("split").to_pylist(), strict=True)
            ]
            table = table.filter(keep)
            for name, (column, field, _) in POSE_FEATURES.items():
                items = pc.list_flatten(table.column(column).combine_chunks())
                items = items.filter(items.field("center_uv").is_valid())
                if not len(items):
                    continue
                v = np.asarray(items.field(field).flatten().to_numpy(zero_copy_only=False), float).reshape(-1, 3)
                if name == "objects.size":
                    values["size"].append(v.ravel())
                else:
                    values["txy"].append(v[:, :2].ravel())
                    values["tz"].append(v[:, 2])
    out = {}
    for family, parts in values.items():
        if parts:
            x = np.concatenate(parts)
            step = max(1, len(x) // FIT_SAMPLES_PER_FAMILY)
            out[family] = np.sort(x)[::step] if step > 1 else x
    return out


def build(mixture_name: str, catalog_path: Path | None, data: str | Path, out: Path, val_fraction: float, fit: bool,
          address: str | None = None) -> Path:
    """Write ``<out>/<mixture>.json`` (and the fitted codebook with ``fit``); ``address``: a Ray
    cluster that reads the shards (see the module docstring)."""
    catalog = load_catalog(catalog_path)
    if mixture_name not in catalog.mixtures:
        raise CatalogError(
            f"mixture {mixture_name!r} is not in the catalog; known: {', '.join(sorted(catalog.mixtures))}"
        )
    mix = catalog.mixtures[mixture_name]
    members, per_embodiment = [], {}
    per_dataset = {}
    hashes = Sha256Cache(out / ".sha256-cache.json")
    for member in mix.members:
        root = dataset_dir(data, member.dataset)
        try:
            entry, features, counts = member_record(member.dataset, root, val_fraction, hashes, out, address)
        except ManifestError as e:
            raise ManifestError(f"mixture {mixture_name}: member {member.dataset!r}: {e}") from None
        finally:
            hashes.save()
        members.append(entry)
        per_dataset[member.dataset] = {"summary": summaries(features), "counts": counts}
        embodiment = entry["embodiment"] or catalog.dataset(member.dataset).kind
        merge_into(per_embodiment.setdefault(embodiment, {}), features)
    weights = effective_weights(
        [m["dataset"] for m in members],
        [m.weight for m in mix.members],
        [m["rows"].get("train", 0) for m in members],
        mix.temperature_alpha,
    )
    for entry, member, weight in zip(members, mix.members, weights, strict=True):
        entry["weight"], entry["effective_weight"] = member.weight, weight
    codebooks = sorted({m["codebook"] for m in members})
    record = {
        "format": MIXTURE_FORMAT,
        "mixture": mix.name,
        "stage": mix.stage,
        "temperature_alpha": mix.temperature_alpha,
        "split_rule": {"hash": SPLIT_RULE, "val_fraction": val_fraction},
        "codebook": codebooks[0] if len(codebooks) == 1 else codebooks,
        "members": members,
        "statistics": {
            "per_dataset": per_dataset,
            "per_embodiment": {k: summaries(v) for k, v in sorted(per_embodiment.items())},
        },
    }
    out.mkdir(parents=True, exist_ok=True)
    if fit:
        absolute = [{**m, "shards": [{**s, "path": str(out / s["path"])} for s in m["shards"]]} for m in members]
        book = fit_codebook(fit_samples(absolute, val_fraction), default_codebook(), name=f"posetok-{mix.name}")
        book.save(out / f"{mix.name}.codebook.json")
        record["fitted_codebook"] = {"path": f"{mix.name}.codebook.json", "id": book.codebook_id}
    record["content_hash"] = content_hash(record)
    path = out / f"{mix.name}.json"
    tmp = partial_path(path)
    tmp.write_text(json.dumps(record, indent=1))
    os.replace(tmp, path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.build_mixture",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--mixture", required=True, help="mixture name in the catalog, e.g. stage1_pose")
    parser.add_argument("--catalog", type=Path, help="catalog file (default: the repository's)")
    parser.add_argument("--data", default="out",
                        help="where the datasets were converted: a folder or an fsspec URL such as s3://bucket/posetok")
    parser.add_argument("--out", type=Path, default=Path("out/mixtures"), help="where to write the mixture manifest")
    parser.add_argument(
        "--val-fraction",
        type=float,
        default=DEFAULT_VAL_FRACTION,
        help="share of episodes (by stable hash) in the val split (default 0.05)",
    )
    parser.add_argument("--fit-codebook", action="store_true", help="also fit a quantile codebook on the train poses")
    parser.add_argument("--address", help="read the shards with Ray tasks on this cluster (e.g. auto, ray://head:10001)")
    args = parser.parse_args(argv)
    try:
        path = build(args.mixture, args.catalog, args.data, args.out, args.val_fraction, args.fit_codebook,
                     args.address)
    except (CatalogError, ManifestError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"error: environment: {e}", file=sys.stderr)
        return 2
    record = json.loads(path.read_text())
    print(f"mixture {record['mixture']} ({record['stage']}) -> {path}")
    for m in record["members"]:
        print(
            f"  {m['dataset']:<28} rows train {m['rows'].get('train', 0):>8}  val {m['rows'].get('val', 0):>7}  "
            f"weight {m['effective_weight']:.3f}"
        )
    if "fitted_codebook" in record:
        print(f"fitted codebook {record['fitted_codebook']['id']} -> {record['fitted_codebook']['path']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
