"""Whole batches drawn where they are made: ``DataLoader(MixtureBatches(dataset, 32), batch_size=None,
num_workers=N)``.

Batch ``k`` of global worker ``w`` holds samples ``k*B ... k*B + B - 1`` of that worker's stream
(:meth:`model.data.MixtureDataset.locate`): the very batches ``DataLoader(dataset, batch_size=B,
collate_fn=collate)`` makes from the per-sample stream, with the same pixels, tokens and actions,
and resumed the same way (:meth:`~model.data.MixtureDataset.load_state_dict`, in samples per
worker). What changes is the cost (docs/benchmarks.md):

* the images of every sample are decoded straight into the batch's ``(B, V, H, W, 3)`` array
  (no per-sample arrays, no stacking), a buffer reused once the batch is released (by the main
  process, for a batch made in a worker), so it costs no fresh page faults and no copy on its way
  out of a worker, while the batch's small arrays travel by value (:mod:`model.worker_transfer`);
* with a token ``budget`` (:mod:`model.token_budget`), ground-truth poses are computed (and the
  pose columns read) only for the rows whose first view exceeds it, the only ones they are needed
  for; the batch carries the budget's counters in ``batch["token_budget"]``.

Samples whose views differ in number or size (a mixture of 1- and 3-camera sources without
``image_size``) go through :func:`model.data.collate`, which keeps the shared view or says why not.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from model.data import Draw, MixtureDataset, collate, collate_fields
from model.token_budget import fit_samples
from model.worker_transfer import ByValue, Lease, SharedBuffers


class MixtureBatches(IterableDataset):
    """Batches of ``batch_size`` samples of ``dataset`` (the last one shorter when the dataset's
    ``num_samples`` per worker is not a multiple), fitted to ``budget`` tokens when given."""

    def __init__(self, dataset: MixtureDataset, batch_size: int, budget: int | None = None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.dataset, self.batch_size, self.budget = dataset, batch_size, budget

    def __iter__(self) -> Iterator[dict]:
        ds = self.dataset
        worker, total = ds.global_worker()
        buffers, in_worker = SharedBuffers(), get_worker_info() is not None
        if in_worker:
            gc.freeze()  # what a forked worker inherits is never scanned again (a third of its Arrow-to-Python time)
        index, end = ds.start, None if ds.num_samples is None else ds.start + ds.num_samples
        while end is None or index < end:
            count = self.batch_size if end is None else min(self.batch_size, end - index)
            yield self.batch([ds.locate(worker, total, i) for i in range(index, index + count)], buffers, in_worker)
            index += count

    def batch(self, draws: list[Draw], buffers: SharedBuffers, in_worker: bool) -> dict:
        """The collated batch of ``draws``, its images in a buffer of ``buffers`` (reused once
        released, in this process or, ``in_worker``, in the main one it is sent to)."""
        ds = self.dataset
        samples = [ds.sample(d, images=False, poses=False) for d in draws]
        if self.budget is not None:
            for sample, where in zip(samples, draws, strict=True):
                if len(sample["tokens"][0]) > self.budget:  # the only rows whose poses are needed
                    sample["poses"] = ds.poses(where)
            samples, counts = fit_samples(samples, self.budget, ds.codebook)
        layouts = {tuple(ds.image_shapes(d)) for d in draws}
        if len(layouts) == 1 and len(set(next(iter(layouts)))) == 1:  # one view count and size: decode in place
            layout = next(iter(layouts))
            shape = (len(draws), len(layout), *layout[0])
            images, handle = buffers.take(shape)
            handle = handle if in_worker or not isinstance(handle, Lease) else handle.here()
            for where, out in zip(draws, images, strict=True):
                ds.decode_images(where, out)
            batch = {"images": handle, **collate_fields(samples, slice(None))}
        else:
            for sample, where in zip(samples, draws, strict=True):
                sample["images"] = ds.decode_images(where)
            batch = collate(samples)
        if self.budget is not None:
            batch["token_budget"] = counts
        if in_worker:  # leaving a worker: small tensors by value, not one shared file each
            batch = {k: ByValue(v.numpy()) if isinstance(v, torch.Tensor) and k != "images" else v
                     for k, v in batch.items()}
        return batch

    def loader(self, num_workers: int = 0, **kwargs) -> DataLoader:
        """A DataLoader over these batches (``batch_size=None``; batches pass through as made)."""
        return DataLoader(self, batch_size=None, num_workers=num_workers, collate_fn=_as_made, **kwargs)


def _as_made(batch: dict) -> dict:
    """The DataLoader's ``collate_fn`` for ready batches (its default walks every list of the batch)."""
    return batch
