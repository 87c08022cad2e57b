"""The token budget: a view's pose-token sequence longer than the model's ``max_tokens`` loses WHOLE
poses, by a fixed priority, and every cut is counted (docs/training.md, docs/tokens.md).

A view's sequence is ``bos view_start (pose sep)* view_end eos`` (:func:`schemas.tokenizer.view_sequence`)
with its poses in the order of :func:`schemas.tokenizer.poses_of_row`: objects near to far, then ego
items, then waypoints by (name, offset). The pose boundaries come from the sequence itself (its
``sep`` tokens); what each pose is comes from the sample's ground-truth poses (same order). Poses
are dropped, first to last, in this order until the sequence fits:

1. objects, the farthest first: largest camera-frame depth z [m], the key the tokenizer orders
   objects by, so the objects kept are the nearest ones and still lead the sequence;
2. waypoints, the latest first: largest ``offset_steps``; at one offset, the one later in the
   sequence first (so both arms lose their last waypoint before either loses an earlier one);
3. ego poses (the current arm / hand), the one later in the sequence first.

A pose is never split, the kept poses keep their order, and a view that loses every pose becomes
``bos view_start no_object view_end eos``, so a fitted sequence always decodes
(:func:`schemas.tokenizer.decode_view`). A sequence within the budget is returned unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from model.data import collate
from schemas.tokenizer import Codebook, Pose, default_codebook

OBJECT, EGO, WAYPOINT = 0, 1, 2
KINDS = ("objects", "ego", "waypoints")  # index = kind code
DROP_RANK = np.array([0, 2, 1])  # per kind code: objects are dropped first, then waypoints, then ego
COUNTERS = ("tokens/rows", "tokens/rows_over_budget", *(f"tokens/dropped_{k}" for k in KINDS))
HEAD, TAIL = 2, 2  # bos view_start ... view_end eos
EMPTY_VIEW = HEAD + 1 + TAIL  # bos view_start no_object view_end eos


def pose_kinds(poses: Sequence[Pose]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per pose: kind code (:data:`OBJECT`, :data:`EGO`, :data:`WAYPOINT`), camera-frame depth z [m]
    and waypoint offset [steps] (0 for others). Objects are the poses with a size; waypoints carry
    their offset as the last word of the label (``"left arm 15"``, :func:`schemas.tokenizer.poses_of_row`;
    ego names never end in a number: ``schemas.record.EGO_NAMES``)."""
    kind = np.empty(len(poses), np.int8)
    offset = np.zeros(len(poses), np.int64)
    for i, pose in enumerate(poses):
        words = pose.label.rsplit(" ", 1)
        if pose.size is not None:
            kind[i] = OBJECT
        elif len(words) == 2 and words[1].isdigit():
            kind[i], offset[i] = WAYPOINT, int(words[1])
        else:
            kind[i] = EGO
    depth = np.array([pose.t[2] for pose in poses], np.float64)
    return kind, depth, offset


def drop_order(kind: np.ndarray, depth: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """Pose indices in the order they are dropped (the module's priority)."""
    within = np.where(kind == OBJECT, -depth, np.where(kind == WAYPOINT, -offset.astype(np.float64), 0.0))
    return np.lexsort((-np.arange(kind.size), within, DROP_RANK[kind]))  # the last key is the primary one


def fit_tokens(tokens: np.ndarray, kind: np.ndarray, depth: np.ndarray, offset: np.ndarray, budget: int,
               book: Codebook) -> tuple[np.ndarray, np.ndarray]:
    """``(tokens, kept)``: the view's sequence fitted to ``budget`` tokens, and which of its poses it
    still holds; ``kind``, ``depth``, ``offset`` describe its poses in order (:func:`pose_kinds`).
    Raises ValueError for a sequence that is not ``bos view_start (pose sep)* view_end eos`` with
    one pose per entry of ``kind``."""
    if budget < EMPTY_VIEW:
        raise ValueError(f"a token budget of {budget} cannot hold even an empty view ({EMPTY_VIEW} tokens)")
    tokens = np.asarray(tokens, np.int64)
    kept = np.ones(kind.size, bool)
    if tokens.size <= budget:
        return tokens, kept
    sep = book.special_id("sep")
    seps = np.flatnonzero(tokens == sep)
    frame = [book.special_id(n) for n in ("bos", "view_start", "view_end", "eos")]
    if (seps.size != kind.size or tokens[[0, 1, -2, -1]].tolist() != frame
            or (seps.size and seps[-1] != tokens.size - TAIL - 1)):
        raise ValueError(
            f"token sequence of {tokens.size} tokens with {seps.size} poses is not bos view_start (pose sep)* "
            f"view_end eos with the sample's {kind.size} poses"
        )
    lengths = np.diff(seps, prepend=HEAD - 1)  # per pose: its tokens + its sep
    order = drop_order(kind, depth, offset)
    freed = np.cumsum(lengths[order])
    dropped = order[: int(np.searchsorted(freed, tokens.size - budget)) + 1]  # budget >= EMPTY_VIEW: always found
    kept[dropped] = False
    keep_token = np.ones(tokens.size, bool)
    keep_token[HEAD : tokens.size - TAIL] = np.repeat(kept, lengths)
    out = tokens[keep_token]
    if not kept.any():
        out = np.insert(out, HEAD, book.special_id("no_object"))
    return out, kept


def fit_sample(sample: dict, budget: int, book: Codebook) -> tuple[dict, dict[str, int]]:
    """A loader sample (:meth:`model.data.MixtureDataset.draw`) whose first view's tokens and ground-truth
    ``poses`` (that view's, in token order) are fitted to ``budget``, and its :data:`COUNTERS`."""
    counts = dict.fromkeys(COUNTERS, 0)
    counts["tokens/rows"] = 1
    if len(sample["tokens"][0]) <= budget:
        return sample, counts
    kind, depth, offset = pose_kinds(sample["poses"])
    first, kept = fit_tokens(sample["tokens"][0], kind, depth, offset, budget, book)
    counts["tokens/rows_over_budget"] = 1
    for code, name in enumerate(KINDS):
        counts[f"tokens/dropped_{name}"] = int(np.count_nonzero(kind[~kept] == code))
    poses = [p for p, k in zip(sample["poses"], kept, strict=True) if k]
    return {**sample, "tokens": [first, *sample["tokens"][1:]], "poses": poses}, counts


def fit_samples(samples: Sequence[dict], budget: int, book: Codebook) -> tuple[list[dict], dict[str, int]]:
    """:func:`fit_sample` of every sample, and the summed counters."""
    fitted, total = [], dict.fromkeys(COUNTERS, 0)
    for sample in samples:
        s, counts = fit_sample(sample, budget, book)
        fitted.append(s)
        for key, value in counts.items():
            total[key] += value
    return fitted, total


class BudgetCollate:
    """``collate_fn`` for a DataLoader: :func:`fit_samples` then :func:`model.data.collate` (view 0);
    the batch's counters are in ``batch["token_budget"]``."""

    def __init__(self, budget: int, book: Codebook | None = None):
        self.budget, self.book = budget, book or default_codebook()

    def __call__(self, samples: list[dict]) -> dict:
        fitted, counts = fit_samples(samples, self.budget, self.book)
        batch = collate(fitted)
        batch["token_budget"] = counts
        return batch


def describe(counts: dict[str, int], budget: int) -> str:
    """One line for people: how many rows the budget cut and the poses it dropped, per kind."""
    dropped = ", ".join(f"{counts[f'tokens/dropped_{k}']} {k}" for k in KINDS)
    return (f"token budget {budget}: {counts['tokens/rows_over_budget']} of {counts['tokens/rows']} rows over it; "
            f"dropped {dropped}")
