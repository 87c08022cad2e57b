"""Publish a converted dataset on the Hugging Face Hub, with a proper dataset card.

    python -m pipelines.upload --dataset droid --repo-id ORG/droid-posetok [--data out] [--private]
    python -m pipelines.upload --dataset droid --repo-id ORG/droid-posetok --dry-run /tmp/hub_droid

The folder that is uploaded (or, with ``--dry-run``, written and not uploaded) holds:
``README.md`` (YAML header: license, ``configs`` with one data_files entry per split, features,
split sizes; body: source, citation, schema, preview, plots), ``manifest.json``, ``preview.png``,
``plots/*.png`` and the shards under ``data/<split>/`` - regrouped into ``chunk-XXX`` folders of at
most 1,000 files when a split has more (the Hub wants < 10,000 files per folder). Shards are
hard-linked (copied across filesystems), never rewritten. Depth stores (many small Zarr chunk
files) are included only with ``--include-depth``. The upload uses ``HfApi.upload_large_folder``
(resumable); the token comes from the standard Hugging Face login and is never printed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import yaml

from pipelines.layout import CARD_NAME, MANIFEST_NAME, dataset_dir
from pipelines.manifest import Manifest, ManifestError
from pipelines.plots import write_plots
from pipelines.preview import PREVIEW_NAME, write_preview
from schemas.catalog import CatalogError, DatasetEntry, load_catalog
from schemas.record import SCHEMA_VERSION, hf_schema

FILES_PER_FOLDER = 1000
HF_LICENSES = {
    "CC-BY-4.0": "cc-by-4.0",
    "CC-BY-NC-4.0": "cc-by-nc-4.0",
    "Apache-2.0": "apache-2.0",
    "MIT": "mit",
    "C-UDA-1.0": "c-uda",
}


def hub_paths(manifest: Manifest) -> dict[str, str]:
    """``{dataset-relative shard path: path inside the Hub folder}``, chunked when a split is large."""
    by_split: dict[str, list[str]] = {}
    for shard in manifest.shards:
        by_split.setdefault(shard.split, []).append(shard.path)
    out = {}
    for split, paths in by_split.items():
        chunked = len(paths) > FILES_PER_FOLDER
        for i, path in enumerate(sorted(paths)):
            name = Path(path).name
            out[path] = f"data/{split}/chunk-{i // FILES_PER_FOLDER:03d}/{name}" if chunked else f"data/{split}/{name}"
    return out


def card_text(entry: DatasetEntry, manifest: Manifest, plots: list[str], chunked: dict[str, bool]) -> str:
    """The dataset card: YAML header ``datasets`` reads (configs, features) + a human body."""
    import datasets

    splits = manifest.splits()
    features = datasets.Features.from_arrow_schema(hf_schema())
    info = datasets.DatasetInfo(
        features=features,
        splits=datasets.SplitDict({s: datasets.SplitInfo(name=s, num_examples=v["rows"]) for s, v in splits.items()}),
    )
    header = {
        "license": HF_LICENSES.get(entry.license, "other"),
        "pretty_name": f"{entry.name} (posetok schema v{SCHEMA_VERSION})",
        "tags": ["robotics", "pose-estimation", "posetok", entry.kind],
        "task_categories": ["robotics"],
        "configs": [
            {
                "config_name": "default",
                "data_files": [
                    {"split": s, "path": f"data/{s}/*/*.parquet" if chunked.get(s) else f"data/{s}/*.parquet"}
                    for s in sorted(splits)
                ],
            }
        ],
        "dataset_info": {k: v for k, v in info._to_yaml_dict().items() if k in ("features", "splits")},
    }
    rows = "\n".join(f"| {s} | {v['episodes']} | {v['rows']} | {v['shards']} |" for s, v in sorted(splits.items()))
    pictures = "\n".join(f"![{Path(p).stem}]({p})" for p in plots)
    body = f"""
# {entry.name}, in posetok's camera-centric pose-token schema

Converted by posetok `{manifest.converter.get("name")}` {manifest.converter.get("version")} from
`{manifest.source.get("version", "")}`. Kind: **{entry.kind}**; stages: {", ".join(entry.stages)}.
License of the source: {entry.license}. {entry.notes or ""}

One row per (frame, camera view); every pose (`objects`, `ego`, `waypoints`) is in the OpenCV
camera frame of its row (metres, quaternions `[w, x, y, z]`), `K` matches the stored image, and
`tokens` holds the pose tokens under codebook `{manifest.codebook}`.

| split | episodes | rows | shards |
|---|---|---|---|
{rows}

```python
import datasets
ds = datasets.load_dataset("<this repo>", split="train")   # image -> PIL.Image
```

![preview]({PREVIEW_NAME})

{pictures}

## Citation

{entry.citation}
"""
    return "---\n" + yaml.safe_dump(header, sort_keys=False) + "---\n" + body


def stage(root: Path, entry: DatasetEntry, folder: Path, include_depth: bool) -> Path:
    """Write the exact folder to upload into ``folder`` (which must not exist yet or be empty)."""
    manifest = Manifest.read(root)
    folder.mkdir(parents=True, exist_ok=True)
    if any(folder.iterdir()):
        raise ValueError(f"{folder}: not empty; choose a new --dry-run folder")
    mapping = hub_paths(manifest)
    for src, dst in mapping.items():
        target = folder / dst
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(root / src, target)
        except OSError:
            shutil.copy2(root / src, target)
    if include_depth:
        for store in manifest.depth_stores:
            shutil.copytree(root / store["path"], folder / store["path"])
    preview = root / PREVIEW_NAME if (root / PREVIEW_NAME).is_file() else write_preview(root)
    shutil.copy2(preview, folder / PREVIEW_NAME)
    plots = [str(p.relative_to(root)) for p in write_plots(root)]
    for p in plots:
        (folder / p).parent.mkdir(exist_ok=True)
        shutil.copy2(root / p, folder / p)
    record = manifest.to_dict()
    record["hub_paths"] = mapping
    (folder / MANIFEST_NAME).write_text(json.dumps(record, indent=1))
    chunked = {s.split: mapping[s.path].count("/") > 2 for s in manifest.shards}
    (folder / CARD_NAME).write_text(card_text(entry, manifest, plots, chunked))
    return folder


def upload(folder: Path, repo_id: str, private: bool) -> None:
    from huggingface_hub import HfApi, get_token

    if get_token() is None:
        raise PermissionError(
            "not logged in to the Hugging Face Hub: run `hf auth login` (or `huggingface-cli "
            "login`), or set HF_TOKEN; the token is read from there and never printed"
        )
    api = HfApi()
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    api.upload_large_folder(repo_id=repo_id, folder_path=str(folder), repo_type="dataset")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.upload", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", required=True, help="converted dataset name")
    parser.add_argument("--repo-id", required=True, help="Hub dataset repository, ORG/NAME")
    parser.add_argument("--data", type=Path, default=Path("out"), help="where the dataset was converted (out/)")
    parser.add_argument("--dry-run", type=Path, metavar="DIR", help="write the upload folder here and stop")
    parser.add_argument("--include-depth", action="store_true", help="also upload the Zarr depth stores")
    parser.add_argument("--private", action="store_true", help="create the repository as private")
    args = parser.parse_args(argv)
    try:
        entry = load_catalog().dataset(args.dataset)
        root = dataset_dir(args.data, args.dataset)
        if args.dry_run:
            folder = stage(root, entry, args.dry_run, args.include_depth)
            print(f"dry run: wrote the folder that would be uploaded to {args.repo_id}: {folder}")
            return 0
        with tempfile.TemporaryDirectory(prefix="posetok-upload-") as tmp:
            folder = stage(root, entry, Path(tmp) / args.dataset, args.include_depth)
            upload(folder, args.repo_id, args.private)
        print(f"uploaded {args.dataset} to https://huggingface.co/datasets/{args.repo_id}")
        return 0
    except (CatalogError, ManifestError, ValueError, PermissionError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
