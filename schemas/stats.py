"""Mergeable per-dimension statistics: computed per shard, merged across shards and datasets.

:class:`FeatureStats` keeps, for every dimension of a vector feature: count, mean and the sum of
squared deviations (merged exactly with Chan et al.'s parallel update, so the merged mean / std
equal those of the concatenated data up to float rounding), min, max, and a quantile sketch.

The sketch is DDSketch-style (Masson et al., VLDB 2019): values are counted in logarithmic buckets
``gamma^(i-1) < |x| <= gamma^i`` with ``gamma = (1 + alpha) / (1 - alpha)``, separately for positive
and negative values, and values with ``|x| < ZERO_THRESHOLD`` counted as zero. Merging adds bucket
counts, so it is exact and order-independent. A quantile is the bucket midpoint
``2 gamma^i / (gamma + 1)``: within a RELATIVE error ``alpha`` (1 %) of a sample value of the right
rank, or within ``ZERO_THRESHOLD`` absolute near zero.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

ALPHA = 0.01
GAMMA = (1 + ALPHA) / (1 - ALPHA)
LOG_GAMMA = math.log(GAMMA)
ZERO_THRESHOLD = 1e-9
QUANTILES = (0.01, 0.99)
_KEY_OFFSET = 1 << 20  # every bucket key of a finite float64 (|key| < 36000 at 1 %) + this is in [0, _KEY_SPAN)
_KEY_SPAN = 1 << 21


@dataclass
class Sketch:
    """Relative-error quantile sketch of one dimension (see module docstring)."""

    positive: Counter = field(default_factory=Counter)
    negative: Counter = field(default_factory=Counter)
    zeros: int = 0

    def add(self, values: np.ndarray) -> None:
        x = np.asarray(values, dtype=np.float64).ravel()
        self.merge(column_sketches(x[np.isfinite(x)].reshape(-1, 1))[0])

    def merge(self, other: Sketch) -> None:
        self.positive.update(other.positive)
        self.negative.update(other.negative)
        self.zeros += other.zeros

    @property
    def count(self) -> int:
        return sum(self.positive.values()) + sum(self.negative.values()) + self.zeros

    def quantile(self, q: float) -> float:
        """Value at quantile ``q`` in [0, 1] (rank ``q * (n - 1)``, lower neighbour)."""
        n = self.count
        if n == 0:
            return float("nan")
        rank = q * (n - 1)
        # ascending order: most negative first (largest |x| of the negative store), zeros, positives
        ordered = [(-2 * GAMMA**k / (GAMMA + 1), c) for k, c in sorted(self.negative.items(), reverse=True)]
        ordered += [(0.0, self.zeros)] if self.zeros else []
        ordered += [(2 * GAMMA**k / (GAMMA + 1), c) for k, c in sorted(self.positive.items())]
        seen = 0
        for value, c in ordered:
            seen += c
            if seen > rank:
                return float(value)
        return float(ordered[-1][0])

    def to_dict(self) -> dict:
        return {
            "positive": {str(k): v for k, v in sorted(self.positive.items())},
            "negative": {str(k): v for k, v in sorted(self.negative.items())},
            "zeros": self.zeros,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Sketch:
        return cls(
            Counter({int(k): v for k, v in d["positive"].items()}),
            Counter({int(k): v for k, v in d["negative"].items()}),
            int(d["zeros"]),
        )


def column_sketches(x: np.ndarray) -> list[Sketch]:
    """One :class:`Sketch` per column of the finite ``(N, D)`` array ``x``, bucketed in one
    vectorised pass: each value is coded as ``(column, sign, key)`` in one int64 and counted once."""
    small = np.abs(x) < ZERO_THRESHOLD
    out = [Sketch(zeros=int(z)) for z in np.count_nonzero(small, axis=0)]
    values, columns = x[~small], np.broadcast_to(np.arange(x.shape[1]), x.shape)[~small]
    keys = np.ceil(np.log(np.abs(values)) / LOG_GAMMA).astype(np.int64) + _KEY_OFFSET
    codes, counts = np.unique((columns * 2 + (values < 0)) * _KEY_SPAN + keys, return_counts=True)
    groups, keys = codes // _KEY_SPAN, codes % _KEY_SPAN - _KEY_OFFSET
    bounds = np.flatnonzero(np.diff(groups)) + 1
    for start, end in zip(np.r_[0, bounds].tolist(), np.r_[bounds, len(codes)].tolist(), strict=True):
        if start == end:  # no value at all
            continue
        column, negative = divmod(int(groups[start]), 2)
        store = Counter(dict(zip(keys[start:end].tolist(), counts[start:end].tolist(), strict=True)))
        setattr(out[column], "negative" if negative else "positive", store)
    return out


@dataclass
class FeatureStats:
    """Statistics of a ``dim``-dimensional feature; :meth:`add` rows ``(N, dim)``, :meth:`merge` others."""

    dim: int
    count: int = 0
    mean: np.ndarray | None = None
    m2: np.ndarray | None = None
    min: np.ndarray | None = None
    max: np.ndarray | None = None
    sketches: list[Sketch] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.mean is None:
            self.mean, self.m2 = np.zeros(self.dim), np.zeros(self.dim)
            self.min, self.max = np.full(self.dim, np.inf), np.full(self.dim, -np.inf)
            self.sketches = [Sketch() for _ in range(self.dim)]

    def add(self, rows: np.ndarray) -> None:
        x = np.asarray(rows, dtype=np.float64).reshape(-1, self.dim)
        x = x[np.all(np.isfinite(x), axis=1)]
        if len(x) == 0:
            return
        other = FeatureStats(
            self.dim,
            len(x),
            x.mean(axis=0),
            ((x - x.mean(axis=0)) ** 2).sum(axis=0),
            x.min(axis=0),
            x.max(axis=0),
            column_sketches(x),
        )
        self.merge(other)

    def merge(self, other: FeatureStats) -> None:
        if other.dim != self.dim:
            raise ValueError(f"cannot merge statistics of dimension {other.dim} into {self.dim}")
        if other.count == 0:
            return
        n = self.count + other.count
        delta = other.mean - self.mean
        self.mean = self.mean + delta * other.count / n
        self.m2 = self.m2 + other.m2 + delta**2 * self.count * other.count / n
        self.count = n
        self.min, self.max = np.minimum(self.min, other.min), np.maximum(self.max, other.max)
        for mine, theirs in zip(self.sketches, other.sketches, strict=True):
            mine.merge(theirs)

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(self.m2 / self.count) if self.count else np.full(self.dim, np.nan)

    def summary(self) -> dict:
        """``count, mean, std, min, max, q01, q99`` (lists per dimension), JSON-ready."""
        out = {
            "count": self.count,
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "min": self.min.tolist(),
            "max": self.max.tolist(),
        }
        for q in QUANTILES:
            out[f"q{round(q * 100):02d}"] = [s.quantile(q) for s in self.sketches]
        return out

    def to_dict(self) -> dict:
        return {
            "dim": self.dim,
            "count": self.count,
            "mean": self.mean.tolist(),
            "m2": self.m2.tolist(),
            "min": self.min.tolist(),
            "max": self.max.tolist(),
            "sketches": [s.to_dict() for s in self.sketches],
        }

    @classmethod
    def from_dict(cls, d: dict) -> FeatureStats:
        return cls(
            d["dim"],
            d["count"],
            np.array(d["mean"]),
            np.array(d["m2"]),
            np.array(d["min"]),
            np.array(d["max"]),
            [Sketch.from_dict(s) for s in d["sketches"]],
        )
