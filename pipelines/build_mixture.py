"""Build a training mixture from converted datasets, as described in ``catalog.yaml``.

    python -m pipelines.build_mixture --mixture stage1_pose [--catalog catalog.yaml] [--data out]
                                      [--out out/mixtures] [--val-fraction 0.05] [--fit-codebook]

For every member: its manifest and schema version are checked and its shards listed (path,
sha256, rows); statistics are computed (merged per shard, written back into the member's
manifest) and episodes are split into train / val by a STABLE HASH of ``dataset/episode_id``, so
an episode is in exactly one split whatever the mixture. Weights are the catalog's explicit
ones, or temperature sampling ``p_i ~ n_i ** alpha`` over the members' train rows (Pose-VLA:
alpha = 0.43). Output: ``<out>/<mixture>.json`` (members, shards with checksums, effective
weights, row and episode counts per split, statistics per dataset and per embodiment, codebook
id, split rule, content hash); with ``--fit-codebook`` also ``<out>/<mixture>.codebook.json``,
quantile-fitted on the mixture's train poses.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines.layout import dataset_dir, partial_path
from pipelines.manifest import Manifest, ManifestError
from pipelines.statistics import POSE_FEATURES, dataset_statistics, merge_into, summaries
from schemas.catalog import CatalogError, load_catalog
from schemas.mixture import MIXTURE_FORMAT, SPLIT_RULE, split_of
from schemas.tokenizer import default_codebook, fit_codebook

DEFAULT_VAL_FRACTION = 0.05
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


def member_record(name: str, root: Path, val_fraction: float) -> tuple[dict, dict, dict]:
    """(mixture entry, feature statistics, counts) of one converted dataset."""
    manifest = Manifest.read(root)
    shards, rows, episodes = [], Counter(), {"train": set(), "val": set()}
    for shard in manifest.shards:
        path = root / shard.path
        if not path.is_file() or path.stat().st_size != shard.bytes:
            raise ManifestError(
                f"{path}: missing or changed since conversion (manifest says {shard.bytes} bytes); "
                f"re-run `make convert DATASET={name}`"
            )
        meta = pq.ParquetFile(path).metadata
        ids = pq.read_table(path, columns=["episode_id"]).column("episode_id")
        for episode, count in zip(*np.unique(ids.to_numpy(zero_copy_only=False), return_counts=True), strict=True):
            split = split_of(name, str(episode), val_fraction)
            rows[split] += int(count)
            episodes[split].add(str(episode))
        shards.append(
            {
                "path": str(path),
                "sha256": shard.sha256,
                "rows": shard.rows,
                "row_groups": [meta.row_group(i).num_rows for i in range(meta.num_row_groups)],
            }
        )
    features, counts = dataset_statistics(root)
    manifest.statistics = {
        **manifest.statistics,
        "features": {k: v.to_dict() for k, v in sorted(features.items())},
        "summary": summaries(features),
        "counts": counts,
    }
    manifest.write(root)
    entry = {
        "dataset": name,
        "root": str(root),
        "schema_version": manifest.schema_version,
        "codebook": manifest.codebook,
        "embodiment": manifest.metadata.get("embodiment"),
        "shards": shards,
        "rows": dict(rows),
        "episodes": {k: len(v) for k, v in episodes.items()},
    }
    return entry, features, counts


def fit_samples(members: list[dict], val_fraction: float) -> dict[str, np.ndarray]:
    """Train-split pose values per token family (systematically subsampled to a fixed cap)."""
    values: dict[str, list[np.ndarray]] = {"txy": [], "tz": [], "size": []}
    for member in members:
        for shard in member["shards"]:
            table = pq.read_table(shard["path"], columns=["episode_id", "ego", "waypoints", "objects"])
            keep = [
                split_of(member["dataset"], e, val_fraction) == "train" for e in table.column("episode_id").to_pylist()
            ]
            table = table.filter(keep)
            for name, (column, field, _) in POSE_FEATURES.items():
                items = pc.list_flatten(table.column(column).combine_chunks())
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


def build(mixture_name: str, catalog_path: Path | None, data: Path, out: Path, val_fraction: float, fit: bool) -> Path:
    catalog = load_catalog(catalog_path)
    if mixture_name not in catalog.mixtures:
        raise CatalogError(
            f"mixture {mixture_name!r} is not in the catalog; known: {', '.join(sorted(catalog.mixtures))}"
        )
    mix = catalog.mixtures[mixture_name]
    members, per_embodiment = [], {}
    per_dataset = {}
    for member in mix.members:
        root = dataset_dir(data, member.dataset)
        try:
            entry, features, counts = member_record(member.dataset, root, val_fraction)
        except ManifestError as e:
            raise ManifestError(f"mixture {mixture_name}: member {member.dataset!r}: {e}") from None
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
        book = fit_codebook(fit_samples(members, val_fraction), default_codebook(), name=f"posetok-{mix.name}")
        book.save(out / f"{mix.name}.codebook.json")
        record["fitted_codebook"] = {"path": str(out / f"{mix.name}.codebook.json"), "id": book.codebook_id}
    record["content_hash"] = hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()
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
    parser.add_argument("--data", type=Path, default=Path("out"), help="where the datasets were converted (out/)")
    parser.add_argument("--out", type=Path, default=Path("out/mixtures"), help="where to write the mixture manifest")
    parser.add_argument(
        "--val-fraction",
        type=float,
        default=DEFAULT_VAL_FRACTION,
        help="share of episodes (by stable hash) in the val split (default 0.05)",
    )
    parser.add_argument("--fit-codebook", action="store_true", help="also fit a quantile codebook on the train poses")
    args = parser.parse_args(argv)
    try:
        path = build(args.mixture, args.catalog, args.data, args.out, args.val_fraction, args.fit_codebook)
    except (CatalogError, ManifestError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
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
