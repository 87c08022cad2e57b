"""Paths of one converted dataset (docs/conversion.md, output layout), in one place.

```
<out>/<dataset>/
  manifest.json
  README.md                      Hugging Face dataset card
  data/<split>/<unit>.parquet    one file per work unit
  depth/<unit>.zarr              Zarr v3 group, one array per view
  stats/<split>/<unit>.json      mergeable statistics of the unit's rows, naming the shard's sha256
  quarantine.jsonl
  .lock                          held while a conversion runs (pid, host, start time)
```
Files being written carry a leading dot and a ``.partial`` suffix, so globs such as
``data/*/*.parquet`` (used by ``datasets``) never see them.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from pipelines.filesystems import as_path

MANIFEST_NAME = "manifest.json"
CARD_NAME = "README.md"
QUARANTINE_NAME = "quarantine.jsonl"
LOCK_NAME = ".lock"
DATA_DIR = "data"
DEPTH_DIR = "depth"
SPLITS = ("train", "val", "test")

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def check_name(value: str, what: str) -> str:
    """Refuse names that could escape the output folder (path separators, ``..``, empty)."""
    if not isinstance(value, str) or not _SAFE_NAME.fullmatch(value) or ".." in value:
        raise ValueError(
            f"{what} {value!r} is not a safe name: use letters, digits, '_', '-', '.' "
            f"(no path separators, no '..', not starting with '.')"
        )
    return value


def unit_stem(name: str) -> str:
    """The file stem of a work unit's shard and depth store: ``name`` itself when it is a safe
    name, else ``name`` with every run of other characters replaced by ``_`` plus ``-`` and the
    first 8 hex digits of its sha256 (``a b (v2)`` -> ``a_b_v2-<8 hex>``).
    Deterministic, and two names that sanitise alike keep distinct stems."""
    try:
        return check_name(name, "work unit")
    except ValueError:
        pass
    clean = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).replace("..", "_").strip("._-") or "unit"
    return f"{clean}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def dataset_dir(out: str | Path, dataset: str) -> Path:
    """``<out>/<dataset>``: a ``Path``, or a ``upath.UPath`` when ``out`` is an fsspec URL."""
    return as_path(out) / check_name(dataset, "dataset name")


def shard_relpath(split: str, unit: str) -> str:
    """``data/<split>/<unit>.parquet``, relative to the dataset folder."""
    if split not in SPLITS:
        raise ValueError(f"split {split!r} must be one of {SPLITS}")
    return f"{DATA_DIR}/{split}/{check_name(unit, 'work unit')}.parquet"


def depth_relpath(unit: str) -> str:
    """``depth/<unit>.zarr``, relative to the dataset folder."""
    return f"{DEPTH_DIR}/{check_name(unit, 'work unit')}.zarr"


def partial_path(final: Path) -> Path:
    """Hidden temporary sibling of ``final`` used until the write is complete."""
    return final.with_name(f".{final.name}.partial")
