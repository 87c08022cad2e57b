"""The mixture contract shared by ``pipelines.build_mixture`` (writer) and ``model.data`` (reader):
the stable train/val split rule and the mixture manifest format."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

MIXTURE_FORMAT = 1
SPLIT_RULE = "sha256(dataset/episode_id)[:8] % 1e6 < val_fraction * 1e6 -> val"


def split_of(dataset: str, episode_id: str, val_fraction: float) -> str:
    """``train`` or ``val`` from a stable hash of ``dataset/episode_id``: the same answer in every
    mixture, process and machine, so an episode is in exactly one split."""
    h = int.from_bytes(hashlib.sha256(f"{dataset}/{episode_id}".encode()).digest()[:8], "big")
    return "val" if h % 1_000_000 < val_fraction * 1_000_000 else "train"


def load_mixture(path: str | Path) -> dict:
    """A mixture manifest, checked for format and content hash."""
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(
            f"{path}: not a readable mixture manifest ({e}); build it with "
            f"`python -m pipelines.build_mixture --mixture NAME`"
        ) from None
    if record.get("format") != MIXTURE_FORMAT:
        raise ValueError(f"{path}: mixture format {record.get('format')!r}, expected {MIXTURE_FORMAT}")
    body = {k: v for k, v in record.items() if k != "content_hash"}
    if hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest() != record.get("content_hash"):
        raise ValueError(f"{path}: content hash mismatch; the mixture manifest was edited or corrupted")
    return record
