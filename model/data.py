"""PyTorch data loading straight from a mixture manifest (``pipelines.build_mixture``).

:class:`MixtureDataset` is an ``IterableDataset``. Sample ``i`` of global worker ``w`` is drawn
with its own generator seeded by ``(seed, w, i)``: pick a member dataset by its effective weight,
a Parquet ROW GROUP of that member uniformly (random access; no shuffle buffer), then a frame of
the requested split inside it. Row groups are partitioned across all DataLoader workers of all
ranks (``index % total == worker``), so no two workers read the same rows; a worker whose
partition lacks a member (or whose member has no frame of the split) samples the others with
their weights renormalised. Because every
draw is a pure function of ``(seed, worker, index)``, :meth:`state_dict` / :meth:`load_state_dict`
resume exactly: a resumed loader yields the very samples an uninterrupted one would.

A sample groups the views of one frame: images decoded with OpenCV (RGB, optionally resized,
``K`` rescaled to match), pose tokens computed from the continuous columns with ANY codebook,
the instruction, the raw ``state``, and an action chunk from the following frames of the same
episode found in the row group (``action_mask`` is 0 past the episode's end or the row group's).
Splits follow the mixture's stable hash rule, so a val episode never appears in train.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch.utils.data import IterableDataset, get_worker_info

from schemas.geometry import resize_intrinsics
from schemas.mixture import load_mixture, split_of
from schemas.tokenizer import Codebook, default_codebook, poses_of_row, row_tokens

ROW_GROUP_CACHE = 32


REDUCED_DECODE = ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4), (2, cv2.IMREAD_REDUCED_COLOR_2))


def decode_image(data: bytes, width: int, height: int, target: tuple[int, int] | None) -> np.ndarray:
    """RGB uint8 image; when the target is at most 1/2, 1/4 or 1/8 of the stored size, the decoder
    scales down while decoding (libjpeg DCT scaling: several times faster), before the exact resize."""
    flag = cv2.IMREAD_COLOR
    if target is not None:
        flag = next((f for s, f in REDUCED_DECODE if width >= target[0] * s and height >= target[1] * s), flag)
    return np.ascontiguousarray(cv2.imdecode(np.frombuffer(data, np.uint8), flag)[:, :, ::-1])


@dataclass
class _RowGroup:
    """A cached row group: the Arrow table, its key columns, and the frames of the loader's split."""

    table: pa.Table
    episodes: list[str]
    frames: list[int]
    views: list[str]
    split_frames: list[tuple[str, int]]


class MixtureDataset(IterableDataset):
    def __init__(
        self,
        mixture: str | Path,
        split: str = "train",
        codebook: Codebook | None = None,
        seed: int = 0,
        chunk: int = 16,
        image_size: tuple[int, int] | None = None,
        rank: int = 0,
        world_size: int = 1,
        num_samples: int | None = None,
    ):
        self.record = load_mixture(mixture)
        if split not in ("train", "val"):
            raise ValueError(f"split {split!r} must be train or val")
        self.split, self.seed, self.chunk = split, seed, chunk
        self.codebook = codebook or default_codebook()
        self.image_size = image_size
        self.rank, self.world_size = rank, world_size
        self.num_samples = num_samples
        self.val_fraction = self.record["split_rule"]["val_fraction"]
        self.members = self.record["members"]
        self.row_groups = [self._split_row_groups(m) for m in self.members]
        self.weights = np.array([m["effective_weight"] for m in self.members], dtype=np.float64)
        self.start = 0  # first sample index (per worker) after load_state_dict
        self._cache: OrderedDict = OrderedDict()

    def _split_row_groups(self, member: dict) -> list[tuple[str, int]]:
        """Row groups of a member holding at least one frame of this split (reads ``episode_id`` only)."""
        groups = []
        for shard in member["shards"]:
            parquet = pq.ParquetFile(shard["path"])
            for g in range(parquet.num_row_groups):
                episodes = set(parquet.read_row_group(g, columns=["episode_id"]).column(0).to_pylist())
                if any(split_of(member["dataset"], e, self.val_fraction) == self.split for e in episodes):
                    groups.append((shard["path"], g))
        return groups

    # ------------------------------------------------------------------------------ resume
    def state_dict(self, consumed: int) -> dict:
        """State after ``consumed`` samples per worker have been taken."""
        return {"seed": self.seed, "split": self.split, "next_index": self.start + consumed}

    def load_state_dict(self, state: dict) -> None:
        if state["seed"] != self.seed or state["split"] != self.split:
            raise ValueError(f"state is for seed {state['seed']} / {state['split']}, not {self.seed} / {self.split}")
        self.start = int(state["next_index"])

    # ---------------------------------------------------------------------------- sampling
    def _worker(self) -> tuple[int, int]:
        info = get_worker_info()
        n_workers, worker = (info.num_workers, info.id) if info else (1, 0)
        return self.rank * n_workers + worker, self.world_size * n_workers

    def _row_group(self, path: str, index: int, member: str) -> _RowGroup:
        """A row group as Arrow plus its key columns and this split's frames (computed once, cached)."""
        key = (path, index)
        if key not in self._cache:
            table = pq.ParquetFile(path).read_row_group(index)
            episodes = table.column("episode_id").to_pylist()
            frames = table.column("frame_index").to_pylist()
            in_split = {e: split_of(member, e, self.val_fraction) == self.split for e in set(episodes)}
            self._cache[key] = _RowGroup(
                table,
                episodes,
                frames,
                table.column("view").to_pylist(),
                sorted({(e, f) for e, f in zip(episodes, frames, strict=True) if in_split[e]}),
            )
            if len(self._cache) > ROW_GROUP_CACHE:
                self._cache.popitem(last=False)
        self._cache.move_to_end(key)
        return self._cache[key]

    def draw(self, worker: int, total: int, index: int) -> dict:
        """Sample ``index`` of global worker ``worker`` (of ``total``): a pure function of them."""
        rng = np.random.default_rng([self.seed, worker, index])
        mine = [[rg for j, rg in enumerate(groups) if j % total == worker] for groups in self.row_groups]
        weights = np.where([len(g) > 0 for g in mine], self.weights, 0.0)
        if weights.sum() == 0:
            raise RuntimeError(
                f"worker {worker} of {total} has no {self.split} row groups: fewer row groups than "
                f"workers, or an empty split"
            )
        m = int(rng.choice(len(mine), p=weights / weights.sum()))
        path, group = mine[m][int(rng.integers(len(mine[m])))]
        rows = self._row_group(path, group, self.members[m]["dataset"])
        return self._sample(m, rows, rows.split_frames[int(rng.integers(len(rows.split_frames)))])

    def _sample(self, member: int, group: _RowGroup, key: tuple[str, int]) -> dict:
        """Only the frame's view rows (and the following action values) leave Arrow."""
        keys = list(zip(group.episodes, group.frames, strict=True))
        views = group.table.take(pa.array([i for i, k in enumerate(keys) if k == key], pa.int64())).to_pylist()
        images, Ks, tokens = [], [], []
        for r in views:
            image = decode_image(r["image"]["bytes"], r["width"], r["height"], self.image_size)
            K = None if r["K"] is None else np.array(r["K"]).reshape(3, 3)
            if self.image_size is not None and (r["width"], r["height"]) != self.image_size:
                if K is not None:
                    K = resize_intrinsics(K, (r["width"], r["height"]), self.image_size)
                image = cv2.resize(image, self.image_size, interpolation=cv2.INTER_AREA)
            images.append(image)
            Ks.append(np.eye(3) if K is None else K)
            tokens.append(np.array(row_tokens(self.codebook, r), dtype=np.int64))
        first = views[0]
        later = sorted(
            (f, i)
            for i, ((e, f), v) in enumerate(zip(keys, group.views, strict=True))
            if e == key[0] and f > key[1] and v == first["view"]
        )[: self.chunk - 1]
        later_actions = group.table.column("action").take(pa.array([i for _, i in later], pa.int64())).to_pylist()
        actions, mask = self._chunk(first["action"], later_actions)
        return {
            "dataset": self.members[member]["dataset"],
            "sample_id": first["sample_id"],
            "episode_id": key[0],
            "frame_index": key[1],
            "views": [r["view"] for r in views],
            "images": np.stack(images) if len({im.shape for im in images}) == 1 else images,
            "K": np.stack(Ks),
            "tokens": tokens,
            "instruction": first["instruction"],
            "poses": poses_of_row(first),  # continuous ground truth of view 0, in token order
            "state": None if first["state"] is None else np.asarray(first["state"], np.float32),
            "actions": actions,
            "action_mask": mask,
        }

    def _chunk(self, first: list | None, later: list[list]) -> tuple[np.ndarray | None, np.ndarray | None]:
        """``(chunk, A)`` actions from this frame's and the following frames' actions, last one
        repeated past the end, and the mask of the real steps."""
        if first is None:
            return None, None
        seq = [first, *later[: self.chunk - 1]]
        actions = np.zeros((self.chunk, len(first)), np.float32)
        actions[: len(seq)] = np.asarray(seq, np.float32)
        actions[len(seq) :] = actions[len(seq) - 1]
        mask = np.zeros(self.chunk, np.float32)
        mask[: len(seq)] = 1
        return actions, mask

    def __iter__(self):
        worker, total = self._worker()
        index = self.start
        while self.num_samples is None or index < self.start + self.num_samples:
            yield self.draw(worker, total, index)
            index += 1


def collate(samples: list[dict], view: int = 0) -> dict:
    """Batch samples: images ``(B, V, H, W, 3)`` uint8 and ``K`` ``(B, V, 3, 3)`` (equal sizes needed:
    set ``image_size``; when samples have different view counts, only view ``view``, V = 1), the
    tokens of view ``view`` padded with 0 (``pad``) plus a mask, and actions / action_mask and state
    stacked when every sample has them with one shape."""
    tokens = [s["tokens"][view] for s in samples]
    width = max(len(t) for t in tokens)
    padded = torch.zeros(len(samples), width, dtype=torch.long)
    mask = torch.zeros(len(samples), width, dtype=torch.bool)
    for i, t in enumerate(tokens):
        padded[i, : len(t)] = torch.from_numpy(t)
        mask[i, : len(t)] = True
    # all views when every sample has the same ones; else only ``view`` (mixtures of 1- and 3-camera sources)
    views = slice(None) if len({len(s["views"]) for s in samples}) == 1 else slice(view, view + 1)
    batch = {
        "images": torch.from_numpy(np.stack([np.asarray(s["images"])[views] for s in samples])),
        "tokens": padded,
        "token_mask": mask,
        "K": torch.from_numpy(np.stack([s["K"][views] for s in samples])).float(),
        "dataset": [s["dataset"] for s in samples],
        "sample_id": [s["sample_id"] for s in samples],
        "instruction": [s["instruction"] for s in samples],
    }
    # embodiment vectors only when every sample has them with one shape (post-training is per embodiment)
    for key, mask in (("actions", "action_mask"), ("state", None)):
        values = [s[key] for s in samples]
        if all(v is not None for v in values) and len({v.shape for v in values}) == 1:
            batch[key] = torch.from_numpy(np.stack(values))
            if mask:
                batch[mask] = torch.from_numpy(np.stack([s[mask] for s in samples]))
    return batch
