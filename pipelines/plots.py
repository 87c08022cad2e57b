"""Plots of a converted dataset that a person would rather look at than read, saved as PNG in
``<dataset>/plots/``: depth (camera-frame z) of every pose, camera-frame x / y, object sizes,
category counts, episode lengths (frames). Drawn with matplotlib's Agg backend.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines.manifest import Manifest
from pipelines.statistics import dataset_statistics

PLOTS_DIR = "plots"
MAX_ROWS_PER_SHARD = 20_000


def _pose_values(root: Path) -> dict[str, np.ndarray]:
    """Camera-frame translations of every pose and object sizes (capped rows per shard) [m]."""
    t, sizes = [], []
    for shard in Manifest.read(root).shards:
        table = pq.read_table(root / shard.path, columns=["ego", "waypoints", "objects"]).slice(0, MAX_ROWS_PER_SHARD)
        for column in ("ego", "waypoints", "objects"):
            items = pc.list_flatten(table.column(column).combine_chunks())
            if len(items):
                t.append(np.asarray(items.field("t").flatten().to_numpy(zero_copy_only=False), float).reshape(-1, 3))
                if column == "objects":
                    sizes.append(
                        np.asarray(items.field("size").flatten().to_numpy(zero_copy_only=False), float).reshape(-1, 3)
                    )
    return {
        "t": np.concatenate(t) if t else np.zeros((0, 3)),
        "size": np.concatenate(sizes) if sizes else np.zeros((0, 3)),
    }


def write_plots(root: str | Path) -> list[Path]:
    """Write the plots of the dataset at ``root``; returns their paths (skips empty ones)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    root = Path(root)
    manifest = Manifest.read(root)
    counts = manifest.statistics.get("counts") or dataset_statistics(root)[1]
    values = _pose_values(root)
    out = root / PLOTS_DIR
    out.mkdir(exist_ok=True)
    written = []

    def save(fig, name: str) -> None:
        fig.tight_layout()
        fig.savefig(out / f"{name}.png", dpi=80)
        plt.close(fig)
        written.append(out / f"{name}.png")

    if len(values["t"]):
        fig, ax = plt.subplots(figsize=(5, 3))
        ax.hist(values["t"][:, 2], bins=60, color="#3a7")
        ax.set(xlabel="depth z [m] (camera frame)", ylabel="poses", title=f"{manifest.dataset}: depth")
        save(fig, "depth")
        fig, ax = plt.subplots(figsize=(4, 4))
        ax.hist2d(values["t"][:, 0], values["t"][:, 1], bins=60, cmap="viridis")
        ax.set(xlabel="x [m]", ylabel="y [m] (down)", title=f"{manifest.dataset}: camera-frame x / y")
        ax.invert_yaxis()
        save(fig, "xy")
    if len(values["size"]):
        fig, ax = plt.subplots(figsize=(5, 3))
        for d, name in enumerate("xyz"):
            ax.hist(values["size"][:, d], bins=40, alpha=0.5, label=f"size {name}")
        ax.set(xlabel="object size [m]", ylabel="objects", title=f"{manifest.dataset}: object sizes")
        ax.legend()
        save(fig, "object_size")
    if counts.get("categories"):
        top = sorted(counts["categories"].items(), key=lambda kv: -kv[1])[:25]
        fig, ax = plt.subplots(figsize=(5, 0.25 * len(top) + 1))
        ax.barh([k for k, _ in top][::-1], [v for _, v in top][::-1], color="#37a")
        ax.set(xlabel="objects", title=f"{manifest.dataset}: categories")
        save(fig, "categories")
    if counts.get("episode_frames"):
        fig, ax = plt.subplots(figsize=(5, 3))
        ax.hist(list(counts["episode_frames"].values()), bins=30, color="#a73")
        ax.set(xlabel="frames per episode", ylabel="episodes", title=f"{manifest.dataset}: episode lengths")
        save(fig, "episode_lengths")
    return written
