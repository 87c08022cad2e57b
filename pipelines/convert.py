"""Convert one catalog dataset into posetok's schema (sharded Parquet + manifest), with Ray.

    python -m pipelines.convert --dataset droid                       # bundled sample, local Ray
    python -m pipelines.convert --dataset droid --source /data/droid  # a real source
    python -m pipelines.convert --dataset droid --source ... --address ray://head:10001   # a cluster
    python -m pipelines.convert --dataset droid --source s3://bucket/droid --out s3://bucket/out  # object storage

One Ray task per work unit (a TFDS shard, an episode range, a scene). Re-running skips units that
are already committed (resume). Rejected episodes go to <out>/<dataset>/quarantine.jsonl.
Exit codes: 0 done; 1 the share of quarantined episodes (or of images dropped from kept
episodes) passes --max-error-rate; 2 a usage or environment error (bad option, unreadable
source, unwritable or full --out, another run holding the folder's lock, a missing bucket or
refused credentials), printed as one line. ``--source`` and ``--out`` take local paths or fsspec
URLs (``s3://``, ``gs://``, ``hf://``; :mod:`pipelines.filesystems`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from pipelines.engine import Engine, RunSummary, quiet_native_logs
from pipelines.filesystems import as_path, check_readable, check_writable, is_url
from pipelines.layout import check_name
from pipelines.preview import write_preview
from pipelines.runlock import RunLockedError
from pipelines.samples import SAMPLES, SYNTHETIC_MANO_DIR, ensure_sample
from schemas.catalog import CatalogError, load_catalog
from schemas.registry import CONVERTERS, resolve_options
from schemas.tokenizer import Codebook, default_codebook


def parse_options(pairs: list[str]) -> dict:
    """``KEY=VALUE`` pairs -> dict; values parsed as YAML scalars (true, 3, 0.5, [1280, 720])."""
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--set expects KEY=VALUE, got {pair!r}")
        try:
            options[key] = yaml.safe_load(value)
        except yaml.YAMLError as e:
            raise UsageError(f"--set {pair!r}: the value is not valid YAML ({' '.join(str(e).split())})") from None
    return options


class UsageError(ValueError):
    """A command-line or environment problem, reported as one line with exit code 2."""


def resolve_source(dataset: str, given: str | None, catalog_path: str | None, out: Path) -> tuple[Path, bool]:
    """(source folder or URL, whether it is the generated sample)."""
    if given is not None:
        if is_url(given):
            check_readable(given)
            return as_path(given), False
        if not Path(given).exists():
            raise UsageError(f"--source {given}: no such file or folder")
        return Path(given), False
    if catalog_path and Path(catalog_path).expanduser().exists():
        return Path(catalog_path).expanduser(), False
    if dataset not in SAMPLES:
        where = f"catalog source_path {catalog_path!r} not found" if catalog_path else "no source_path in the catalog"
        raise UsageError(f"{dataset}: no --source given and {where}; pass --source PATH")
    folder = (Path("out") if is_url(out) else out) / "_samples" / dataset
    banner = "=" * 78
    print(f"{banner}\n  No --source given and no catalog source_path for {dataset!r} is reachable:\n"
          f"  using the BUNDLED SYNTHETIC SAMPLE ({dataset} on-disk format), generated in\n  {folder}\n{banner}",
          flush=True)
    return ensure_sample(dataset, folder), True


def malformed_json_files(source: Path, limit: int = 5) -> list[Path]:
    """The first ``limit`` ``*.json`` files under ``source`` that do not parse (truncated, edited):
    a converter's JSON error does not say which file it was reading."""
    bad = []
    for path in sorted(source.rglob("*.json")) if source.is_dir() else [source]:
        try:
            json.loads(path.read_bytes())
        except (OSError, ValueError):
            bad.append(path)
            if len(bad) >= limit:
                break
    return bad


def print_summary(summary: RunSummary, preview: Path | None) -> None:
    mib = summary.bytes / 2**20
    failed = f", {summary.units_failed} failed (quarantined)" if summary.units_failed else ""
    lines = [
        f"dataset        {summary.dataset}",
        f"output         {summary.root}",
        f"units          {summary.units_total} ({summary.units_converted} converted, {summary.units_resumed} resumed"
        f"{failed})",
        f"episodes       {summary.episodes}",
        f"rows           {summary.rows}",
        f"bytes          {summary.bytes} ({mib:.1f} MiB)",
        f"seconds        {summary.seconds:.1f}",
        f"rows/s         {summary.rows_per_s:.0f} (this run, including start-up)",
        f"quarantined    {summary.quarantined_episodes} episode(s) ({summary.quarantine_rate:.1%})"
        + (f": {summary.quarantine_by_stage}; see {summary.root / 'quarantine.jsonl'}" if summary.quarantined_episodes
           else ""),
    ]
    if summary.quarantined_images:
        lines.append(f"dropped images {summary.quarantined_images} row(s) of kept episodes "
                     f"({summary.image_quarantine_rate:.1%}); see {summary.root / 'quarantine.jsonl'}")
    clipped = ", ".join(f"{family} {n}" for family, n in sorted(summary.clipped_tokens.items()))
    lines.append(f"clipped tokens {clipped or 'none'} (values outside the codebook's range, per family)")
    dropped = {k: v for k, v in summary.notes.items() if drops_data(k)}
    if dropped:
        lines.append("data dropped by the converter:")
        lines += [f"  {note}: {count}" for note, count in sorted(dropped.items())]
    if len(dropped) < len(summary.notes):
        lines.append("notes:")
        lines += [f"  {note}: {count}" for note, count in sorted(summary.notes.items()) if note not in dropped]
    if summary.stale_lock:
        lines.append(f"lock           took over the stale lock of a dead run {summary.stale_lock}")
    if preview is not None:
        lines.append(f"preview        {preview}")
    print("\n".join(["", "== conversion summary ==", *lines]), flush=True)


# Converter notes whose wording says rows, items or fields were left out (converters/*.py notes).
DROP_WORDS = ("dropped", "skipped", "filter", "without", "no ", "null")


def drops_data(note: str) -> bool:
    """Whether a converter note reports data left out (``idle steps dropped``, ``omni3d filter: ...``)."""
    return any(word in note.lower() for word in DROP_WORDS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.convert", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, help="catalog dataset name, e.g. droid")
    parser.add_argument("--source", help="raw source folder or URL (s3://, gs://, hf://; default: catalog "
                                         "source_path, else the bundled sample)")
    parser.add_argument("--out", default="out", help="output root, a folder or a URL (default: out/)")
    parser.add_argument("--workers", type=int, default=None, help="local Ray CPUs (default: all cores)")
    parser.add_argument("--address", help="join an existing Ray cluster (e.g. ray://head:10001 or auto)")
    parser.add_argument("--limit-episodes", type=int, help="convert only the first N episodes")
    parser.add_argument("--max-error-rate", type=float, default=0.05,
                        help="fail (exit 1) when more than this share of episodes is quarantined (default 0.05)")
    parser.add_argument("--catalog", type=Path, default=None, help="catalog file (default: the repository's)")
    parser.add_argument("--codebook", type=Path, help="codebook JSON for the tokens column (default: posetok-v1)")
    parser.add_argument("--set", dest="options", action="append", default=[], metavar="KEY=VALUE",
                        help="override a converter option from the catalog, e.g. --set use_keep_ranges=true")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing conversion of another source")
    parser.add_argument("--no-preview", action="store_true", help="skip the preview contact sheet")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--verbose", action="store_true",
                        help="show TensorFlow's, Ray's and the workers' logs (default: only the progress bar, "
                             "the summary and errors)")
    args = parser.parse_args(argv)
    if not args.verbose:
        quiet_native_logs()  # before anything imports TensorFlow (the sample writers and converters do)

    source = args.source
    try:
        check_name(args.dataset, "dataset name")
        entry = load_catalog(args.catalog).dataset(args.dataset)
        options = parse_options(args.options)
        if entry.converter in CONVERTERS:
            resolve_options(entry, options)  # a bad --set key or value stops the run before any work
        out = as_path(args.out)
        if is_url(out):
            check_writable(out)
        elif out.exists() and not out.is_dir():
            raise UsageError(f"--out {args.out}: is a file, not a folder")
        source, is_sample = resolve_source(entry.name, args.source, entry.source_path, out)
        synthetic_mano = source / SYNTHETIC_MANO_DIR
        if is_sample and synthetic_mano.is_dir() and not (options.get("mano_dir") or entry.options.get("mano_dir")):
            options["mano_dir"] = str(synthetic_mano)
            print(f"  the bundled sample's MANO parameters use a generated stand-in model ({synthetic_mano}),\n"
                  f"  not MANO: convert real data with --set mano_dir=<folder with your MANO_*.pkl>", flush=True)
        book = Codebook.load(args.codebook) if args.codebook else default_codebook()
        engine = Engine(entry, source, out, book, options, args.workers, args.address, verbose=args.verbose)
        summary = engine.run(args.limit_episodes, overwrite=args.overwrite, progress=not args.quiet)
    except json.JSONDecodeError as e:
        files = malformed_json_files(Path(source)) if source is not None and not is_url(source) else []
        bad = ", ".join(str(p) for p in files) or f"a JSON file of {source or 'the input'}"
        print(f"error: malformed JSON in {bad} ({e}); restore the file from the original source", file=sys.stderr)
        return 2
    except (CatalogError, ValueError, RunLockedError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"error: environment: {e}", file=sys.stderr)
        return 2
    preview = None
    if not args.no_preview and summary.rows and not is_url(summary.root):
        preview = write_preview(summary.root, book)
    print_summary(summary, preview)
    if is_sample:
        print(f"\nThis was the bundled synthetic {entry.name} sample. Convert real data with "
              f"`make convert DATASET={entry.name} SOURCE=/path/to/source`.")
    if summary.quarantine_rate > args.max_error_rate:
        print(f"error: {summary.quarantine_rate:.1%} of episodes quarantined, more than --max-error-rate "
              f"{args.max_error_rate:.1%}", file=sys.stderr)
        return 1
    if summary.image_quarantine_rate > args.max_error_rate:
        print(f"error: {summary.image_quarantine_rate:.1%} of images dropped from kept episodes, more than "
              f"--max-error-rate {args.max_error_rate:.1%}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
