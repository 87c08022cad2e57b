"""PyTorch data loading straight from a mixture manifest (``pipelines.build_mixture``).

:class:`MixtureDataset` is an ``IterableDataset``. Sample ``i`` of global worker ``w`` is drawn
with its own generator seeded by ``(seed, w, i)``: pick a member dataset by its effective weight
(train; for ``val`` / ``test`` by its rows in that split, so every held-out row is equally likely),
a Parquet ROW GROUP of that member, then a frame of the requested split inside it. By default
the row group comes from a POOL: samples ``b*block_samples ... (b+1)*block_samples - 1`` draw
from a pool of row groups per member, so one row-group read serves many samples: a shuffle buffer
with no fill time. The pool turns over gradually: each block draws :data:`POOL_TURNOVER`-th of the
pool's row groups anew (seeded by ``(seed, w, block, member)``) and keeps those of the previous
``POOL_TURNOVER - 1`` blocks, so every batch still mixes the whole pool while each row group read
serves ``POOL_TURNOVER`` blocks (with the whole pool redrawn per block, reading row groups cost a
quarter of the loader's time; docs/benchmarks.md). The pool holds at least ``pool_row_groups`` row
groups and at least :data:`POOL_ROWS` rows (estimated from the member's mean row-group size), so
members whose row groups are small (a still-image scene of a few views per row group) still mix
many scenes in every batch; with ``pool_row_groups`` alone, an object dataset of one 3-row scene
per row group trained on 8 scenes at a time, and the stage-1 loss jumped by ~1 nat at every new
block.
``pool_row_groups=None`` draws any row group for every sample (evaluation). Row groups are
partitioned across all DataLoader workers of all ranks (``index % total == worker``), so no two
workers read the same rows; a worker whose partition lacks a member (or whose member has no frame
of the split) samples the others with their weights renormalised. Because every draw is a pure
function of ``(seed, worker, index)``, :meth:`state_dict` / :meth:`load_state_dict` resume exactly:
a resumed loader yields the very samples an uninterrupted one would.

A sample groups the views of one frame: images decoded by libjpeg-turbo straight into one
``(V, H, W, 3)`` array (:func:`decode_image`: RGB, optionally resized, ``K`` rescaled to match),
pose tokens computed from the continuous columns with ANY codebook,
the instruction, the raw ``state``, and an action chunk from the following frames of the same
episode found in the row group (``action_mask`` is 0 past the episode's end or the row group's).
Splits follow the mixture's split rule (``schemas.mixture.split_of``): a source's own val / test
rows stay there, and an episode (a whole recording) is in one split only. Each
shard's sha256 is checked against the mixture manifest before its first row group is read
(once per file and process): a modified or truncated shard is refused, naming the file.

Speed (docs/benchmarks.md): a row group's columns become NumPy once when it is read (one Arrow
thread: the parallelism is the DataLoader's workers), its pose columns only when poses are asked
for, shards stay open per process, and :func:`collate` stacks with NumPy, or in a worker straight
into shared memory. :class:`model.batching.MixtureBatches` makes whole batches in the workers, the
fastest path (what training uses).
"""

from __future__ import annotations

import os
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import simplejpeg
import torch
from torch.utils.data import IterableDataset, default_collate, get_worker_info

from pipelines.storage import open_parquet, open_shard, verify_sha256
from schemas.geometry import resize_intrinsics
from schemas.mixture import SPLITS, load_mixture, split_of
from schemas.record import fixed_matrix
from schemas.tokenizer import Codebook, default_codebook, poses_of_row, row_tokens

ROW_GROUP_CACHE = 32  # at least; raised to the pools' row groups over all members
POOL_ROW_GROUPS = 8
POOL_ROWS = 2400  # at least this many rows per member pool (DROID: 8 row groups of 300 rows)
BLOCK_SAMPLES = 256
POOL_TURNOVER = 4  # a pool row group serves this many blocks: a quarter of the pool is new per block
LIGHT_COLUMNS = ["sample_id", "view", "image", "width", "height", "K", "instruction", "state", "action", "tokens"]
POSE_COLUMNS = ["objects", "ego", "waypoints"]  # read only where poses are needed
READ_COLUMNS = ["episode_id", "split", "frame_index", *LIGHT_COLUMNS]  # read with every row group
LOADER_COLUMNS = [*READ_COLUMNS, *POSE_COLUMNS]  # the rest stays on disk


REDUCED_DECODE = {8: cv2.IMREAD_REDUCED_COLOR_8, 4: cv2.IMREAD_REDUCED_COLOR_4, 2: cv2.IMREAD_REDUCED_COLOR_2}
JPEG_START = b"\xff\xd8"  # SOI marker


def decode_image(
    data: bytes | np.ndarray, width: int, height: int, target: tuple[int, int] | None, out: np.ndarray | None = None
) -> np.ndarray:
    """RGB uint8 image of the stored ``width`` x ``height`` [px], or resized to ``target`` ``(W, H)``
    (``INTER_AREA``), written into ``out`` when given (an ``(H, W, 3)`` array of the result's size).
    JPEG goes through libjpeg-turbo by simplejpeg: the same pixels as ``cv2.imdecode`` at about 1.5x
    its speed, straight into ``out``. When the target is at most 1/2, 1/4 or 1/8 of the stored size,
    the decoder scales down while decoding (libjpeg DCT scaling, the pixels of OpenCV's
    ``IMREAD_REDUCED_COLOR_*``; several times faster) before the exact resize. PNG, and any JPEG
    libjpeg-turbo reports a problem with (a CMYK one), go through OpenCV."""
    size = target or (width, height)
    scale = next((s for s in REDUCED_DECODE if width >= size[0] * s and height >= size[1] * s), 1)
    decoded = (-(-width // scale), -(-height // scale))
    image = _decode(np.frombuffer(data, np.uint8), decoded, scale, out if decoded == size else None)
    if decoded != size:
        return cv2.resize(image, size, dst=out, interpolation=cv2.INTER_AREA)
    if out is not None and image is not out:
        out[...] = image  # raises if the stored width / height are not the image's
    return image if out is None else out


def _decode(buffer: np.ndarray, size: tuple[int, int], scale: int, out: np.ndarray | None) -> np.ndarray:
    """RGB image of ``size`` ``(W, H)`` (the stored size divided by ``scale``, rounded up)."""
    if buffer[:2].tobytes() == JPEG_START:
        try:
            image = simplejpeg.decode_jpeg(
                buffer, colorspace="RGB", min_width=size[0], min_height=size[1], min_factor=scale, buffer=out
            )
            if image.shape[1::-1] == size:
                return image
        except ValueError:
            pass
    if scale > 1:
        return cv2.cvtColor(cv2.imdecode(buffer, REDUCED_DECODE[scale]), cv2.COLOR_BGR2RGB)
    return cv2.imdecode(buffer, cv2.IMREAD_COLOR_RGB)


class LoaderError(ValueError):
    """A batch or split the loader cannot serve, with the reason and the fix."""


class _Columns:
    """The per-view columns of a row group in NumPy / Python, converted once per row group (turning
    Arrow rows into Python per sample cost as much as decoding their images). Index: the row."""

    def __init__(self, table: pa.Table):
        self.image = _Lists(_array(table.column("image")).field("bytes"))  # encoded bytes, zero-copy
        self.width, self.height = table.column("width").to_pylist(), table.column("height").to_pylist()
        self.K = fixed_matrix(table.column("K"), 9).reshape(-1, 3, 3)  # [px]; NaN: no intrinsics
        self.sample_id, self.view = table.column("sample_id").to_pylist(), table.column("view").to_pylist()
        self.instruction = table.column("instruction").to_pylist()
        self.state, self.action, self.tokens = (_Lists(_array(table.column(c))) for c in ("state", "action", "tokens"))


class _Lists:
    """A list or binary Arrow array as one NumPy buffer of values and offsets: ``lists[row]`` is a
    read-only view of the row's values (``uint8`` bytes for binary), None for a null row."""

    def __init__(self, array: pa.Array):
        if pa.types.is_binary(array.type) or pa.types.is_large_binary(array.type):
            _, offsets, data = array.buffers()
            wide = pa.types.is_large_binary(array.type)
            self.offsets = np.frombuffer(offsets, np.int64 if wide else np.int32)[array.offset :]
            self.values = np.frombuffer(data, np.uint8)
        else:  # offsets of the slice, into the whole (unsliced) values
            self.offsets, self.values = array.offsets.to_numpy(), array.values.to_numpy(zero_copy_only=False)
        self.valid = None if array.null_count == 0 else array.is_valid().to_numpy(zero_copy_only=False)
        lengths = np.diff(self.offsets)
        self.matrix = None  # (rows, width) when every row is a list of one width (actions of one arm)
        if self.valid is None and lengths.size and lengths.min() == lengths.max() > 0:
            self.matrix = self.values[self.offsets[0] : self.offsets[-1]].reshape(lengths.size, int(lengths[0]))

    def __getitem__(self, row: int) -> np.ndarray | None:
        if self.valid is not None and not self.valid[row]:
            return None
        return self.values[self.offsets[row] : self.offsets[row + 1]]


def _array(column: pa.ChunkedArray) -> pa.Array:
    """The column as one array (a row group's usually is one chunk: no copy then)."""
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()


@dataclass
class _RowGroup:
    """A cached row group: its per-view columns, the frames of the loader's split, the rows of each
    frame (views in stored order) and, per (episode, view), the frames and rows in time order (for
    action chunks). The pose columns (nested: the costliest to read) are read on first use."""

    read_poses: Callable[[], pa.Table]  # reads POSE_COLUMNS of this row group
    columns: _Columns
    split_frames: list[tuple[str, int]]
    rows_of: dict[tuple[str, int], list[int]]
    timeline: dict[tuple[str, str], tuple[list[int], list[int]]]
    same_codebook: bool  # the stored ``tokens`` column is valid for the loader's codebook
    _poses: pa.Table | None = None

    @property
    def poses(self) -> pa.Table:
        if self._poses is None:
            self._poses = self.read_poses()
        return self._poses


class Draw(NamedTuple):
    """Where sample ``index`` of a worker comes from: a member, one of its row groups, a frame."""

    member: int
    group: _RowGroup
    frame: tuple[str, int]  # (episode_id, frame_index)


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
        pool_row_groups: int | None = POOL_ROW_GROUPS,
        block_samples: int = BLOCK_SAMPLES,
    ):
        self.record = load_mixture(mixture)
        if split not in SPLITS:
            raise ValueError(f"split {split!r} must be one of {', '.join(SPLITS)}")
        self.split, self.seed, self.chunk = split, seed, chunk
        self.codebook = codebook or default_codebook()
        self.image_size = image_size
        self.rank, self.world_size = rank, world_size
        self.num_samples = num_samples
        self.val_fraction = self.record["split_rule"]["val_fraction"]
        self.members = self.record["members"]
        self._sha256 = {s["path"]: s["sha256"] for m in self.members for s in m["shards"]}
        self.row_groups = [self._split_row_groups(m) for m in self.members]
        self.pool_sizes = [
            self._pool_size(m, len(g), pool_row_groups) for m, g in zip(self.members, self.row_groups, strict=True)
        ]
        if not any(self.row_groups):
            counts = {m["dataset"]: m["rows"] for m in self.members}
            raise LoaderError(
                f"{mixture}: the {split} split is empty (rows per member and split: {counts}); build the mixture "
                f"with a larger --val-fraction, or evaluate on another split"
            )
        # train: the mixture's effective weights; held-out splits: every row of the split equally likely
        # (a member without train rows, e.g. a source's test split, still serves its test rows)
        self.weights = np.array(
            [m["effective_weight"] if split == "train" else m["rows"].get(split, 0) for m in self.members],
            dtype=np.float64,
        )
        self.start = 0  # first sample index (per worker) after load_state_dict
        self.pool_row_groups, self.block_samples = pool_row_groups, block_samples
        self._codebook_id = self.codebook.codebook_id
        self.cache_size = max(ROW_GROUP_CACHE, sum(self.pool_sizes))
        self._cache: OrderedDict = OrderedDict()
        self._files: OrderedDict = OrderedDict()  # open shards (footer parsed once), per process
        self._files_pid = os.getpid()
        self._partitions: dict[tuple[int, int], list[list[tuple[str, int]]]] = {}
        self._pools: dict[tuple, list[tuple[str, int]]] = {}
        self._cdfs: dict[tuple[int, int], np.ndarray] = {}
        pa.array([0.0]).to_numpy()  # pyarrow imports pandas on its first to_numpy (~0.3 s): here, not per worker

    def _split_row_groups(self, member: dict) -> list[tuple[str, int]]:
        """Row groups of a member holding at least one frame of this split (reads ``episode_id`` and
        ``split`` only)."""
        groups = []
        for shard in member["shards"]:
            try:
                parquet = open_parquet(shard["path"])
            except (OSError, pa.ArrowException):
                verify_sha256(shard["path"], shard["sha256"])  # names the file and the fix
                raise
            for g in range(parquet.num_row_groups):
                keys = parquet.read_row_group(g, columns=["episode_id", "split"]).to_pydict()
                pairs = set(zip(keys["episode_id"], keys["split"], strict=True))
                if any(split_of(member["dataset"], e, self.val_fraction, s) == self.split for e, s in pairs):
                    groups.append((shard["path"], g))
        return groups

    @staticmethod
    def _pool_size(member: dict, n_groups: int, pool_row_groups: int | None) -> int:
        """Row groups per pool of ``member``: ``pool_row_groups``, or more where its row groups are
        small, so that a pool holds about :data:`POOL_ROWS` rows (0 without pooling)."""
        if pool_row_groups is None:
            return 0
        sizes = [n for shard in member["shards"] for n in shard["row_groups"]]
        mean_rows = sum(sizes) / max(len(sizes), 1)
        return min(n_groups, max(pool_row_groups, round(POOL_ROWS / max(mean_rows, 1.0))))

    # ------------------------------------------------------------------------------ resume
    def state_dict(self, consumed: int) -> dict:
        """State after ``consumed`` samples per worker have been taken."""
        return {"seed": self.seed, "split": self.split, "next_index": self.start + consumed}

    def load_state_dict(self, state: dict) -> None:
        if state["seed"] != self.seed or state["split"] != self.split:
            raise ValueError(f"state is for seed {state['seed']} / {state['split']}, not {self.seed} / {self.split}")
        self.start = int(state["next_index"])

    # ---------------------------------------------------------------------------- sampling
    def global_worker(self) -> tuple[int, int]:
        """``(worker, total)``: this DataLoader worker's index over all workers of all ranks, and their number."""
        info = get_worker_info()
        n_workers, worker = (info.num_workers, info.id) if info else (1, 0)
        return self.rank * n_workers + worker, self.world_size * n_workers

    def _shard(self, path: str) -> pq.ParquetFile:
        """The shard, checksum verified and opened once per process (the last :attr:`cache_size` stay open)."""
        if self._files_pid != os.getpid():  # a forked DataLoader worker: its own file handles
            self._files, self._files_pid = OrderedDict(), os.getpid()
        if path not in self._files:
            self._files[path] = open_shard(path, self._sha256[path])
            if len(self._files) > self.cache_size:
                self._files.popitem(last=False)
        self._files.move_to_end(path)
        return self._files[path]

    def __getstate__(self) -> dict:
        """Picklable for spawned DataLoader workers: without the open files and cached row groups."""
        return {**self.__dict__, "_files": OrderedDict(), "_cache": OrderedDict()}

    def _row_group(self, path: str, index: int, member: dict) -> _RowGroup:
        """A row group's columns plus its frame index (computed once, cached)."""
        key = (path, index)
        if key not in self._cache:
            # one thread: the loader's parallelism is its DataLoader workers (Arrow's pool would
            # oversubscribe the cores they use)
            table = self._shard(path).read_row_group(index, columns=READ_COLUMNS, use_threads=False)
            columns = _Columns(table)
            episodes = table.column("episode_id").to_pylist()
            frames, views = table.column("frame_index").to_pylist(), columns.view
            in_split = {
                e: split_of(member["dataset"], e, self.val_fraction, s) == self.split
                for e, s in set(zip(episodes, table.column("split").to_pylist(), strict=True))
            }
            rows_of: dict[tuple[str, int], list[int]] = {}
            timeline: dict[tuple[str, str], tuple[list[int], list[int]]] = {}
            for i, (e, f, v) in enumerate(zip(episodes, frames, views, strict=True)):
                rows_of.setdefault((e, f), []).append(i)
                line = timeline.setdefault((e, v), ([], []))
                line[0].append(f)
                line[1].append(i)
            for fs, rs in timeline.values():
                order = sorted(range(len(fs)), key=fs.__getitem__)
                fs[:], rs[:] = [fs[j] for j in order], [rs[j] for j in order]
            self._cache[key] = _RowGroup(
                lambda: self._shard(path).read_row_group(index, columns=POSE_COLUMNS, use_threads=False),
                columns,
                sorted(k for k in rows_of if in_split[k[0]]),
                rows_of,
                timeline,
                member["codebook"] == self._codebook_id,
            )
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        self._cache.move_to_end(key)
        return self._cache[key]

    def _partition(self, worker: int, total: int) -> list[list[tuple[str, int]]]:
        """Each member's row groups that belong to global worker ``worker`` of ``total``."""
        if (worker, total) not in self._partitions:
            self._partitions[(worker, total)] = [
                [rg for j, rg in enumerate(groups) if j % total == worker] for groups in self.row_groups
            ]
        return self._partitions[(worker, total)]

    def _pool(self, worker: int, total: int, block: int, member: int) -> list[tuple[str, int]]:
        """The row groups member ``member`` serves block ``block`` from (all of them without pooling)."""
        mine = self._partition(worker, total)[member]
        size = self.pool_sizes[member]
        if self.pool_row_groups is None or len(mine) <= size:
            return mine
        key = (worker, total, block, member)
        if key not in self._pools:
            picks = []  # POOL_TURNOVER generations of size / POOL_TURNOVER row groups, the oldest first
            for generation in range(block - POOL_TURNOVER + 1, block + 1):
                rng = np.random.default_rng([self.seed, worker, generation + POOL_TURNOVER, member, 1])
                picks.extend(int(j) for j in rng.choice(len(mine), -(-size // POOL_TURNOVER), replace=False))
            self._pools = {k: v for k, v in self._pools.items() if k[:3] == key[:3]}  # this block only
            self._pools[key] = [mine[j] for j in dict.fromkeys(picks)]  # a row group drawn twice counts once
        return self._pools[key]

    def _member_cdf(self, worker: int, total: int) -> np.ndarray:
        """Cumulative member probabilities of a worker (members without row groups in its partition
        get none), computed once per worker."""
        if (worker, total) not in self._cdfs:
            weights = np.where([len(g) > 0 for g in self._partition(worker, total)], self.weights, 0.0)
            if weights.sum() == 0:
                raise RuntimeError(
                    f"worker {worker} of {total} has no {self.split} row groups: fewer row groups than "
                    f"workers, or an empty split"
                )
            self._cdfs[(worker, total)] = np.cumsum(weights)  # unnormalised: draw u in [0, cdf[-1])
        return self._cdfs[(worker, total)]

    def locate(self, worker: int, total: int, index: int) -> Draw:
        """Where sample ``index`` of global worker ``worker`` (of ``total``) comes from: a pure
        function of them (reads the row group when it is not cached)."""
        rng = np.random.default_rng([self.seed, worker, index])
        # the member by inverse CDF (Generator.choice with p re-validates p on every call: ~0.3 ms)
        cdf = self._member_cdf(worker, total)
        m = int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"))
        pool = self._pool(worker, total, index // self.block_samples, m)
        path, group = pool[int(rng.integers(len(pool)))]
        rows = self._row_group(path, group, self.members[m])
        return Draw(m, rows, rows.split_frames[int(rng.integers(len(rows.split_frames)))])

    def draw(self, worker: int, total: int, index: int) -> dict:
        """Sample ``index`` of global worker ``worker`` (of ``total``): a pure function of them."""
        return self.sample(self.locate(worker, total, index))

    def sample(self, where: Draw, images: bool = True, poses: bool = True) -> dict:
        """The frame's views from the row group's converted columns: with ``images`` decoded (else
        left for :meth:`decode_images`) and the first view's ground-truth ``poses`` (else left for
        :meth:`poses`). Only the pose columns (nested, the costly ones to turn into Python) leave
        Arrow per sample, and only where they are used: the first view's ground truth, and every
        view when tokens must be recomputed for another codebook."""
        group, key = where.group, where.frame
        columns, views = group.columns, group.rows_of[key]
        posed = [] if group.same_codebook else _rows(group.poses, views)
        Ks, tokens = [], []
        for i, r in enumerate(views):
            size = (columns.width[r], columns.height[r])
            K = None if np.isnan(columns.K[r, 0, 0]) else columns.K[r]
            if K is not None and self.image_size is not None and size != self.image_size:
                K = resize_intrinsics(K, size, self.image_size)
            Ks.append(np.eye(3) if K is None else K)
            if group.same_codebook:
                stored = columns.tokens[r]
            else:
                stored = row_tokens(self.codebook, {**posed[i], "width": size[0], "height": size[1]})
            tokens.append(np.array(stored, dtype=np.int64))
        first = views[0]
        frames, rows = group.timeline[(key[0], columns.view[first])]
        after = bisect_right(frames, key[1])
        before = rows[after - 2 : after - 1] if after >= 2 else []  # the episode's previous frame, if in this group
        later = rows[after : after + self.chunk - 1]
        actions, mask = self._chunk(columns.action, [first, *later])
        previous = columns.action[before[0]] if before else None
        state = columns.state[first]
        sample = {
            "dataset": self.members[where.member]["dataset"],
            "sample_id": columns.sample_id[first],
            "episode_id": key[0],
            "frame_index": key[1],
            "views": [columns.view[r] for r in views],
            "K": np.stack(Ks),
            "tokens": tokens,
            "instruction": columns.instruction[first],
            "state": None if state is None else state.copy(),
            "actions": actions,
            "action_mask": mask,
            "previous_action": None if previous is None else previous.copy(),
        }
        if images:
            sample["images"] = self.decode_images(where)
        if poses:  # continuous ground truth of view 0, in token order
            sample["poses"] = poses_of_row(posed[0]) if posed else self.poses(where)
        return sample

    def poses(self, where: Draw) -> list:
        """The first view's continuous ground-truth poses, in token order (``schemas.tokenizer.poses_of_row``)."""
        return poses_of_row(_rows(where.group.poses, where.group.rows_of[where.frame][:1])[0])

    def image_shapes(self, where: Draw) -> list[tuple[int, int, int]]:
        """``(H, W, 3)`` of each view's image as :meth:`decode_images` returns it."""
        columns = where.group.columns
        if self.image_size is not None:
            return [(self.image_size[1], self.image_size[0], 3)] * len(where.group.rows_of[where.frame])
        return [(columns.height[r], columns.width[r], 3) for r in where.group.rows_of[where.frame]]

    def decode_images(self, where: Draw, out: np.ndarray | None = None) -> np.ndarray | list[np.ndarray]:
        """The views' RGB images, decoded straight into one ``(V, H, W, 3)`` array (``out`` when
        given) when they have one size (always with ``image_size``), else a list."""
        columns, rows = where.group.columns, where.group.rows_of[where.frame]
        sizes = [(columns.width[r], columns.height[r]) for r in rows]
        if out is None and self.image_size is None and len(set(sizes)) > 1:
            return [decode_image(columns.image[r], *size, None) for r, size in zip(rows, sizes, strict=True)]
        if out is None:
            width, height = self.image_size or sizes[0]
            out = np.empty((len(rows), height, width, 3), np.uint8)
        for r, size, image in zip(rows, sizes, out, strict=True):
            decode_image(columns.image[r], *size, self.image_size, image)
        return out

    def _chunk(self, actions: _Lists, rows: list[int]) -> tuple[np.ndarray | None, np.ndarray | None]:
        """``(chunk, A)`` actions of ``rows`` (this frame's and the following frames' in time order),
        the last one repeated past the end, and the mask of the real steps."""
        first = actions[rows[0]]
        if first is None:
            return None, None
        rows = rows[: self.chunk]
        chunk = np.empty((self.chunk, len(first)), np.float32)
        if actions.matrix is not None:  # one fancy index instead of a list per step
            chunk[: len(rows)] = actions.matrix[rows]
        else:
            chunk[: len(rows)] = np.asarray([actions[r] for r in rows], np.float32)
        chunk[len(rows) :] = chunk[len(rows) - 1]
        mask = np.zeros(self.chunk, np.float32)
        mask[: len(rows)] = 1
        return chunk, mask

    def __iter__(self):
        worker, total = self.global_worker()
        index = self.start
        while self.num_samples is None or index < self.start + self.num_samples:
            yield self.draw(worker, total, index)
            index += 1


def _rows(table: pa.Table, rows: list[int]) -> list[dict]:
    """``table`` rows as dicts: one zero-copy slice over their span (rows of a frame, or one view's
    later frames, lie close together), then only the wanted ones (``take`` costs ~0.2 ms a call)."""
    if not rows:
        return []
    span = table.slice(rows[0], rows[-1] - rows[0] + 1).to_pydict()
    return [{name: values[i - rows[0]] for name, values in span.items()} for i in rows]


def _stackable(samples: list[dict], key: str, batch: dict) -> bool:
    """True when every sample has ``key`` with one shape. When present values differ in shape (a
    mixture of embodiments), the shapes per dataset go to ``batch["unstacked"]`` so that a stage
    that needs ``key`` can say why it is missing (:func:`require`)."""
    values = [s.get(key) for s in samples]
    if any(v is None for v in values):
        return False
    shapes = {s["dataset"]: tuple(np.shape(s[key])) for s in samples}
    if len(set(shapes.values())) > 1:
        batch.setdefault("unstacked", {})[key] = shapes
        return False
    return True


def require(batch: dict, key: str) -> torch.Tensor:
    """``batch[key]``, or a :class:`LoaderError` saying why the batch has none."""
    if key in batch:
        return batch[key]
    shapes = batch.get("unstacked", {}).get(key)
    if shapes:
        raise LoaderError(
            f"{key} shapes differ within one batch ({shapes}); post-train on a mixture of one embodiment "
            f"(one {key} layout)"
        )
    datasets = sorted(set(batch["dataset"]))
    raise LoaderError(f"the batch has no {key}: some of its samples' datasets ({datasets}) have none")


def collate(samples: list[dict], view: int = 0) -> dict:
    """Batch samples: images ``(B, V, H, W, 3)`` uint8 and ``K`` ``(B, V, 3, 3)`` (equal sizes needed:
    set ``image_size``; when samples have different view counts, only view ``view``, V = 1), the
    tokens of view ``view`` padded with 0 (``pad``) plus a mask, and actions / action_mask, state
    and previous_action stacked when every sample has them with one shape (else left out; see
    :func:`require`). Raises :class:`LoaderError` for images of different sizes."""
    # all views when every sample has the same ones; else only ``view`` (mixtures of 1- and 3-camera sources)
    views = slice(None) if len({len(s["views"]) for s in samples}) == 1 else slice(view, view + 1)
    images = [[im.shape for im in s["images"][views]] for s in samples]
    if len({shape for shapes in images for shape in shapes}) > 1:
        sizes = sorted({f"{s['dataset']} {w}x{h}" for s, shapes in zip(samples, images, strict=True)
                        for h, w, _ in shapes})
        raise LoaderError(f"images of different sizes in one batch ({', '.join(sizes)}): set "
                          f"MixtureDataset(image_size=(W, H)) to resize them to one size")
    images = [np.asarray(s["images"][views]) for s in samples]
    # in a DataLoader worker (one torch thread) torch's default_collate stacks straight into
    # shared memory, so the batch reaches the main process without another copy
    stacked = default_collate(images) if get_worker_info() else torch.from_numpy(np.stack(images))
    return {"images": stacked, **collate_fields(samples, views, view)}


def collate_fields(samples: list[dict], views: slice, view: int = 0) -> dict:
    """Everything :func:`collate` batches but the images: ``K`` of ``views``, view ``view``'s tokens
    padded, and the embodiment vectors where they stack."""
    # NumPy throughout: torch ops on a loaded machine wait for their intra-op thread pool (a
    # torch.stack of a batch's images took 100x longer than np.stack on 2 busy cores)
    tokens = [s["tokens"][view] for s in samples]
    padded = np.zeros((len(samples), max(len(t) for t in tokens)), np.int64)
    mask = np.zeros(padded.shape, bool)
    for i, t in enumerate(tokens):
        padded[i, : len(t)] = t
        mask[i, : len(t)] = True
    batch = {
        "tokens": torch.from_numpy(padded),
        "token_mask": torch.from_numpy(mask),
        "K": torch.from_numpy(np.stack([s["K"][views] for s in samples]).astype(np.float32)),
        "dataset": [s["dataset"] for s in samples],
        "sample_id": [s["sample_id"] for s in samples],
        "instruction": [s["instruction"] for s in samples],
    }
    # embodiment vectors only when every sample has them with one shape (post-training is per embodiment)
    for key in ("actions", "state", "previous_action"):
        if _stackable(samples, key, batch):
            batch[key] = torch.from_numpy(np.stack([s[key] for s in samples]))
    if "actions" in batch:
        batch["action_mask"] = torch.from_numpy(np.stack([s["action_mask"] for s in samples]))
    return batch
