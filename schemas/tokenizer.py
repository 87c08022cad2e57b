"""Pose tokens: the discrete vocabulary posetok emits for object, end-effector and hand poses.

A :class:`Codebook` is an ordered tuple of :class:`TokenFamily` bins laid out contiguously after the
special tokens (docs/tokens.md). The default codebook ``posetok-v1``:

======  =====  =======================================================  ======================
family  bins   edges                                                    encodes
======  =====  =======================================================  ======================
loc     1024   uniform on [0, 1] (u / W, v / H)                         2D anchor (centre_uv)
txy     2048   ``0.1 m * sinh(y)``, y uniform, covering +-10 m          x, y in camera frame [m]
tz      2048   log-spaced 0.01 .. 100 m                                 depth z [m]
size    2048   log-spaced 0.005 .. 20 m                                 object w, h, l [m]
rot     360    uniform on [-pi, pi), periodic                           Euler xyz angles [rad]
grip    32     uniform on [0, 1]                                        gripper, 0 open 1 closed
======  =====  =======================================================  ======================

One pose is ``loc u, loc v, txy x, txy y, tz z, [size w, h, l], rot a, b, c, [grip]``: the order of
Pose-VLA's released code (anchor, translation, size, rotation), size for objects only, gripper for
arms only (Pose-VLA has no gripper token; posetok adds one). Values decode to bin midpoints, so
``|decode(encode(x)) - x| <= half the bin width`` for in-range x; out-of-range values clip to the
outer bins and are counted in a :class:`ClipCounter`. Angles wrap instead of clipping.

A view's sequence is ``bos view_start (pose sep)* view_end eos``; a view with nothing to encode is
``bos view_start no_object view_end eos``. Codebooks serialise to JSON with a SHA-256 content hash,
and :func:`fit_codebook` refits equal-frequency (quantile) edges on samples, as Pose-VLA does.
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from schemas.geometry import euler_xyz_to_quat, quat_to_euler_xyz

SPECIAL_TOKENS: tuple[str, ...] = ("pad", "bos", "eos", "sep", "no_object", "view_start", "view_end")
CODEBOOK_FORMAT = 1
DEFAULT_CODEBOOK_NAME = "posetok-v1"
# txy edges are TXY_SCALE_M * sinh(y): bins ~0.5 mm wide at 0, ~5 mm at 1 m, ~52 mm at 10 m.
TXY_SCALE_M = 0.1

ClipCounter = Counter  # family name -> number of values that fell outside the family's edges


@dataclass(frozen=True)
class TokenFamily:
    """One block of bins. ``edges`` has ``n_bins + 1`` strictly increasing boundaries.

    ``periodic`` families (angles) wrap values into ``[edges[0], edges[-1])`` instead of clipping.
    """

    name: str
    edges: np.ndarray = field(compare=False, repr=False)
    periodic: bool = False

    def __post_init__(self) -> None:
        edges = np.asarray(self.edges, dtype=np.float64)
        if edges.ndim != 1 or edges.size < 2 or not np.all(np.isfinite(edges)):
            raise ValueError(f"token family {self.name!r}: edges must be a finite 1-D array of >= 2 values")
        if not np.all(np.diff(edges) > 0):
            raise ValueError(f"token family {self.name!r}: edges must be strictly increasing")
        object.__setattr__(self, "edges", edges)

    @property
    def n_bins(self) -> int:
        return self.edges.size - 1

    @property
    def midpoints(self) -> np.ndarray:
        return 0.5 * (self.edges[:-1] + self.edges[1:])

    def encode(self, values: np.ndarray, counter: ClipCounter | None = None) -> np.ndarray:
        """Bin index (int64, same shape as ``values``) of each value; counts clipped values."""
        x = np.asarray(values, dtype=np.float64)
        if not np.all(np.isfinite(x)):
            raise ValueError(f"token family {self.name!r}: cannot encode non-finite values {x[~np.isfinite(x)]}")
        lo, hi = self.edges[0], self.edges[-1]
        if self.periodic:
            x = (x - lo) % (hi - lo) + lo
        else:
            outside = (x < lo) | (x > hi)
            if counter is not None and np.any(outside):
                counter[self.name] += int(np.count_nonzero(outside))
        bins = np.searchsorted(self.edges, x, side="right") - 1
        return np.clip(bins, 0, self.n_bins - 1).astype(np.int64)

    def decode(self, bins: np.ndarray) -> np.ndarray:
        """Bin midpoints of bin indices (float64)."""
        b = np.asarray(bins, dtype=np.int64)
        if np.any((b < 0) | (b >= self.n_bins)):
            raise ValueError(f"token family {self.name!r}: bin index outside [0, {self.n_bins})")
        return self.midpoints[b]

    def half_width(self, bins: np.ndarray) -> np.ndarray:
        """Half the width of each bin: the worst-case round-trip error inside it."""
        b = np.asarray(bins, dtype=np.int64)
        return 0.5 * (self.edges[b + 1] - self.edges[b])

    def to_dict(self) -> dict:
        return {"name": self.name, "periodic": self.periodic, "edges": [float(e) for e in self.edges]}


def default_families() -> tuple[TokenFamily, ...]:
    """The ``posetok-v1`` families (docs/tokens.md), in vocabulary order."""
    y_max = np.arcsinh(10.0 / TXY_SCALE_M)
    return (
        TokenFamily("loc", np.linspace(0.0, 1.0, 1025)),
        TokenFamily("txy", TXY_SCALE_M * np.sinh(np.linspace(-y_max, y_max, 2049))),
        TokenFamily("tz", np.geomspace(0.01, 100.0, 2049)),
        TokenFamily("size", np.geomspace(0.005, 20.0, 2049)),
        TokenFamily("rot", np.linspace(-np.pi, np.pi, 361), periodic=True),
        TokenFamily("grip", np.linspace(0.0, 1.0, 33)),
    )


@dataclass(frozen=True)
class Codebook:
    """Families laid out contiguously after the special tokens; ids never overlap."""

    name: str
    families: tuple[TokenFamily, ...]
    special: tuple[str, ...] = SPECIAL_TOKENS

    def __post_init__(self) -> None:
        names = [f.name for f in self.families]
        if len(set(names)) != len(names):
            raise ValueError(f"codebook {self.name!r}: duplicate family names {names}")
        missing = {"loc", "txy", "tz", "size", "rot", "grip"} - set(names)
        if missing:
            raise ValueError(f"codebook {self.name!r}: missing families {sorted(missing)}")

    # ---------------------------------------------------------------------------- vocabulary
    @property
    def offsets(self) -> dict[str, int]:
        """First token id of each family."""
        out, start = {}, len(self.special)
        for fam in self.families:
            out[fam.name] = start
            start += fam.n_bins
        return out

    @property
    def vocab_size(self) -> int:
        return len(self.special) + sum(f.n_bins for f in self.families)

    def family(self, name: str) -> TokenFamily:
        for fam in self.families:
            if fam.name == name:
                return fam
        raise KeyError(f"codebook {self.name!r} has no token family {name!r}")

    def special_id(self, name: str) -> int:
        return self.special.index(name)

    def encode(self, family: str, values: np.ndarray, counter: ClipCounter | None = None) -> np.ndarray:
        """Token ids of ``values`` in ``family``."""
        return self.family(family).encode(values, counter) + self.offsets[family]

    def decode(self, family: str, ids: np.ndarray) -> np.ndarray:
        """Values (bin midpoints) of token ids that belong to ``family``."""
        fam = self.family(family)
        bins = np.asarray(ids, dtype=np.int64) - self.offsets[family]
        if np.any((bins < 0) | (bins >= fam.n_bins)):
            raise ValueError(f"token ids {ids} are not all in family {family!r}")
        return fam.decode(bins)

    def family_of(self, token_id: int) -> tuple[str, int]:
        """``(family or special name, bin index)`` of one token id (bin is -1 for special tokens)."""
        if 0 <= token_id < len(self.special):
            return self.special[token_id], -1
        for fam in self.families:
            start = self.offsets[fam.name]
            if start <= token_id < start + fam.n_bins:
                return fam.name, token_id - start
        raise ValueError(f"token id {token_id} is outside the vocabulary of size {self.vocab_size}")

    # --------------------------------------------------------------------------- serialisation
    def _payload(self) -> dict:
        return {
            "format": CODEBOOK_FORMAT,
            "name": self.name,
            "special": list(self.special),
            "families": [f.to_dict() for f in self.families],
        }

    @property
    def content_hash(self) -> str:
        """SHA-256 of the canonical JSON of everything that defines the token ids and bins."""
        canonical = json.dumps(self._payload(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    @property
    def codebook_id(self) -> str:
        """``name@hash12``: what manifests and mixtures record."""
        return f"{self.name}@{self.content_hash[:12]}"

    def to_json(self) -> str:
        return json.dumps({**self._payload(), "sha256": self.content_hash}, indent=1)

    @classmethod
    def from_json(cls, text: str, source: str = "<string>") -> Codebook:
        data = json.loads(text)
        if data.get("format") != CODEBOOK_FORMAT:
            raise ValueError(f"{source}: codebook format {data.get('format')!r}, expected {CODEBOOK_FORMAT}")
        book = cls(
            name=data["name"],
            families=tuple(TokenFamily(f["name"], np.array(f["edges"]), f["periodic"]) for f in data["families"]),
            special=tuple(data["special"]),
        )
        if "sha256" in data and data["sha256"] != book.content_hash:
            raise ValueError(
                f"{source}: codebook content hash {book.content_hash} does not match the recorded "
                f"{data['sha256']}; the file was edited or corrupted"
            )
        return book

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> Codebook:
        return cls.from_json(Path(path).read_text(), source=str(path))


def default_codebook() -> Codebook:
    return Codebook(DEFAULT_CODEBOOK_NAME, default_families())


# ------------------------------------------------------------------------------- pose encoding
@dataclass(frozen=True)
class Pose:
    """One thing to tokenize, in the camera frame of its view.

    ``label`` is the text name (object category, ``"left arm"``, ``"left arm 2"``); ``uv`` the
    projected centre [px]; ``t`` [m]; ``q`` ``[w, x, y, z]``; ``size`` [m] for objects, else None;
    ``gripper`` in [0, 1] for arms, else None.
    """

    label: str
    uv: tuple[float, float]
    t: tuple[float, float, float]
    q: tuple[float, float, float, float]
    size: tuple[float, float, float] | None = None
    gripper: float | None = None


def encode_poses(book: Codebook, uv: np.ndarray, t: np.ndarray, q: np.ndarray, width, height,
                 size: np.ndarray | None = None, gripper: np.ndarray | None = None,
                 counter: ClipCounter | None = None) -> np.ndarray:
    """Token ids ``(N, L)`` of N poses of one kind, vectorised.

    ``uv (N, 2)`` px, ``t (N, 3)`` m, ``q (N, 4)`` wxyz, ``width``/``height`` scalars or ``(N,)``;
    ``size (N, 3)`` for objects; ``gripper (N,)`` for arms. ``L`` = 8, +3 with size, +1 with gripper.
    ``uv``, ``size`` and ``gripper`` are first rounded to float32, the precision record schema v1
    stores them in, so the tokens are exactly those of the stored row (a value near a bin edge
    would otherwise fall in a different bin once written).
    """
    uv = _stored(uv).reshape(-1, 2)
    t = np.asarray(t, dtype=np.float64).reshape(-1, 3)
    wh = np.stack(np.broadcast_arrays(np.asarray(width, dtype=np.float64), np.asarray(height, dtype=np.float64)), -1)
    blocks = [
        book.encode("loc", uv / wh.reshape(-1, 2), counter),
        book.encode("txy", t[:, :2], counter),
        book.encode("tz", t[:, 2:3], counter),
    ]
    if size is not None:
        blocks.append(book.encode("size", _stored(size).reshape(-1, 3), counter))
    blocks.append(book.encode("rot", quat_to_euler_xyz(np.asarray(q, dtype=np.float64).reshape(-1, 4)), counter))
    if gripper is not None:
        blocks.append(book.encode("grip", _stored(gripper).reshape(-1, 1), counter))
    return np.concatenate(blocks, axis=1)


def _stored(values) -> np.ndarray:
    """float64 copy of ``values`` rounded to float32 (the schema's type for uv, size, gripper)."""
    return np.asarray(values, dtype=np.float32).astype(np.float64)


def encode_pose(book: Codebook, pose: Pose, width: int, height: int,
                counter: ClipCounter | None = None) -> list[int]:
    """Token ids of one pose for an image of ``width x height`` pixels."""
    ids = encode_poses(book, np.array(pose.uv), np.array(pose.t), np.array(pose.q), width, height,
                       size=None if pose.size is None else np.array(pose.size),
                       gripper=None if pose.gripper is None else np.array([pose.gripper]), counter=counter)
    return ids[0].tolist()


def decode_pose(book: Codebook, ids: Sequence[int], width: int, height: int, label: str = "") -> Pose:
    """Inverse of :func:`encode_pose` (values at bin midpoints)."""
    by_family: dict[str, list[int]] = {}
    for token_id in ids:
        fam, _ = book.family_of(int(token_id))
        by_family.setdefault(fam, []).append(int(token_id))
    expected = {"loc": 2, "txy": 2, "tz": 1, "rot": 3}
    for fam, n in expected.items():
        if len(by_family.get(fam, [])) != n:
            raise ValueError(f"pose tokens {list(ids)}: expected {n} {fam!r} tokens")
    loc = book.decode("loc", by_family["loc"])
    txy = book.decode("txy", by_family["txy"])
    tz = book.decode("tz", by_family["tz"])
    euler = book.decode("rot", by_family["rot"])
    size = tuple(book.decode("size", by_family["size"])) if "size" in by_family else None
    grip = float(book.decode("grip", by_family["grip"])[0]) if "grip" in by_family else None
    return Pose(
        label=label,
        uv=(float(loc[0] * width), float(loc[1] * height)),
        t=(float(txy[0]), float(txy[1]), float(tz[0])),
        q=tuple(float(v) for v in euler_xyz_to_quat(euler)),
        size=size,
        gripper=grip,
    )


def layout_sequences(book: Codebook, n_rows: int,
                     batches: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """The token sequences of ``n_rows`` views as one flat int32 array and the per-view lengths.

    View ``r`` is ``bos view_start (pose sep)* view_end eos``, or ``bos view_start no_object view_end
    eos`` when no pose belongs to it. Each batch ``(view (n,), rank (n,), ids (n, L))`` holds n
    already-encoded poses of L tokens; a view's poses follow ``rank`` (ascending, unique per view).
    Built with array operations only, so whole robot episodes cost no Python loop per pose.
    """
    sep = book.special_id("sep")
    rows = np.concatenate([np.asarray(b[0], np.int64) for b in batches] or [np.zeros(0, np.int64)])
    ranks = np.concatenate([np.asarray(b[1], np.int64) for b in batches] or [np.zeros(0, np.int64)])
    size = np.concatenate([np.full(len(b[0]), np.shape(b[2])[1] + 1) for b in batches] or [np.zeros(0, np.int64)])
    order = np.lexsort((ranks, rows))  # sequence order: by view, then rank
    body = np.bincount(rows, weights=size, minlength=n_rows).astype(np.int64)
    empty = body == 0
    lengths = body + empty + 4  # bos view_start ... view_end eos
    starts = np.cumsum(lengths) - lengths
    flat = np.empty(int(lengths.sum()), dtype=np.int32)
    flat[starts] = book.special_id("bos")
    flat[starts + 1] = book.special_id("view_start")
    flat[starts[empty] + 2] = book.special_id("no_object")
    flat[starts + lengths - 2] = book.special_id("view_end")
    flat[starts + lengths - 1] = book.special_id("eos")
    # Start of each pose: its view's body start plus the sizes of the view's earlier poses.
    before = np.cumsum(size[order]) - size[order] - (np.cumsum(body) - body)[rows[order]]
    first = np.empty(len(rows), np.int64)
    first[order] = starts[rows[order]] + 2 + before
    done = 0
    for _, _, ids in batches:
        ids = np.asarray(ids, np.int64).reshape(len(ids), -1)
        at = first[done:done + len(ids), None] + np.arange(ids.shape[1] + 1)
        flat[at] = np.concatenate([ids, np.full((len(ids), 1), sep)], axis=1)
        done += len(ids)
    return flat, lengths


def view_sequence(book: Codebook, pose_tokens: Iterable[Sequence[int]]) -> list[int]:
    """``bos view_start (pose sep)* view_end eos`` around already-encoded poses (one view)."""
    batches = [(np.zeros(1), np.array([i]), np.array([ids])) for i, ids in enumerate(pose_tokens)]
    return layout_sequences(book, 1, batches)[0].tolist()


def encode_view(book: Codebook, poses: Iterable[Pose], width: int, height: int,
                counter: ClipCounter | None = None) -> list[int]:
    """The token sequence of one camera view: ``bos view_start (pose sep)* view_end eos``."""
    return view_sequence(book, (encode_pose(book, p, width, height, counter) for p in poses))


def decode_view(book: Codebook, ids: Sequence[int], width: int, height: int) -> list[Pose]:
    """The poses of a sequence made by :func:`encode_view` (labels are not in the ids: empty)."""
    poses, current = [], []
    structural = {book.special_id(n) for n in ("bos", "eos", "view_start", "view_end", "no_object", "pad")}
    for token_id in ids:
        if token_id == book.special_id("sep"):
            poses.append(decode_pose(book, current, width, height))
            current = []
        elif token_id not in structural:
            current.append(int(token_id))
    if current:
        raise ValueError(f"token sequence ends inside a pose: {current}")
    return poses


# ----------------------------------------------------------------------------------- text form
def _token_text(book: Codebook, token_id: int) -> str:
    fam, b = book.family_of(token_id)
    if b < 0:
        return f"<{fam}>"
    width = len(str(book.family(fam).n_bins - 1))
    return f"<{fam}_{b:0{width}d}>"


def poses_to_text(book: Codebook, poses: Iterable[Pose], width: int, height: int,
                  counter: ClipCounter | None = None) -> str:
    """VLM-style text: ``{label}<loc_0512><loc_0300><txy_1024>...;`` per pose."""
    parts = []
    for pose in poses:
        ids = encode_pose(book, pose, width, height, counter)
        parts.append(pose.label + "".join(_token_text(book, i) for i in ids) + ";")
    return "".join(parts)


_TEXT_POSE = re.compile(r"([^<;]*)((?:<[a-z]+_\d+>)+);")
_TEXT_TOKEN = re.compile(r"<([a-z]+)_(\d+)>")


def text_to_poses(book: Codebook, text: str, width: int, height: int) -> list[Pose]:
    """Parse the text form back into poses (bin midpoints)."""
    poses, pos = [], 0
    for m in _TEXT_POSE.finditer(text):
        if text[pos:m.start()].strip():
            raise ValueError(f"unparseable pose text at {pos}: {text[pos:m.start()]!r}")
        ids = [book.offsets[f] + int(b) for f, b in _TEXT_TOKEN.findall(m.group(2))]
        poses.append(decode_pose(book, ids, width, height, label=m.group(1)))
        pos = m.end()
    if text[pos:].strip():
        raise ValueError(f"unparseable pose text at {pos}: {text[pos:]!r}")
    return poses


# ------------------------------------------------------------------------------------- fitting
MIN_FIT_SAMPLES_PER_BIN = 10  # fewer samples than 10 x the bins of a family: keep the base edges


def fit_codebook(samples: Mapping[str, np.ndarray], base: Codebook | None = None,
                 name: str = "posetok-fit") -> Codebook:
    """Refit the non-periodic families named in ``samples`` with equal-frequency (quantile) edges.

    ``samples["txy"]`` holds camera-frame x and y values [m], ``"tz"`` depths [m], ``"size"`` object
    sizes [m], etc. Families not in ``samples`` keep the ``base`` edges, and so do families with
    fewer than ``MIN_FIT_SAMPLES_PER_BIN`` samples per bin (with a warning: a handful of samples
    per bin gives edges that follow the sample, not the distribution); every family keeps its
    bin count so the vocabulary layout is unchanged. Tied quantiles (repeated sample values) are
    spread by the smallest step that keeps the edges strictly increasing.
    """
    base = base or default_codebook()
    families = []
    for fam in base.families:
        values = samples.get(fam.name)
        if values is None:
            families.append(fam)
            continue
        if fam.periodic:
            raise ValueError(f"family {fam.name!r} is periodic (uniform by design) and cannot be quantile-fitted")
        x = np.asarray(values, dtype=np.float64).ravel()
        x = x[np.isfinite(x)]
        if x.size < MIN_FIT_SAMPLES_PER_BIN * fam.n_bins:
            warnings.warn(
                f"family {fam.name!r}: {x.size} samples for {fam.n_bins} bins (fewer than "
                f"{MIN_FIT_SAMPLES_PER_BIN} per bin): keeping the {base.name} edges",
                stacklevel=2,
            )
            families.append(fam)
            continue
        edges = np.quantile(x, np.linspace(0.0, 1.0, fam.n_bins + 1))
        span = max(edges[-1] - edges[0], 1e-6)
        step = span * 1e-9
        for i in range(1, edges.size):
            edges[i] = max(edges[i], edges[i - 1] + step)
        families.append(TokenFamily(fam.name, edges, fam.periodic))
    return Codebook(name, tuple(families), base.special)


# ------------------------------------------------------------------------------ record rows
POSE_LISTS = ("objects", "ego", "waypoints")  # the record's pose-list columns, in token order


@dataclass(frozen=True)
class PoseArrays:
    """N items of one pose-list column (``objects``, ``ego`` or ``waypoints``) of many rows, flat.

    ``row (N,)`` the row each item belongs to; ``name (N,)`` object category or ego name;
    ``uv (N, 2)`` centre [px], NaN when behind the camera; ``t (N, 3)`` [m] and ``q (N, 4)``
    ``[w, x, y, z]`` in that row's camera frame; ``size (N, 3)`` [m] for objects; ``gripper (N,)``
    0 open .. 1 closed for arms, present where ``has_gripper`` (default: every item); ``offset (N,)``
    steps ahead for waypoints.
    """

    row: np.ndarray
    name: np.ndarray
    uv: np.ndarray
    t: np.ndarray
    q: np.ndarray
    size: np.ndarray | None = None
    gripper: np.ndarray | None = None
    has_gripper: np.ndarray | None = None
    offset: np.ndarray | None = None


def sequence_order(column: str, items: PoseArrays) -> np.ndarray:
    """Indices of the items that enter the token sequences, grouped by row (ascending) and, within a
    row: objects near to far (camera-frame z, Pose-VLA's ``near2far``), ego items as stored,
    waypoints by (name, offset). Items behind the camera (no ``center_uv``) have no 2D anchor and
    are left out."""
    front = np.flatnonzero(np.all(np.isfinite(items.uv), axis=1))
    keys: tuple[np.ndarray, ...] = ()
    if column == "objects":
        keys = (items.t[front, 2],)
    elif column == "waypoints" and front.size:
        rank = {name: i for i, name in enumerate(sorted(set(items.name[front])))}  # few names, many items
        keys = (items.offset[front], np.array([rank[name] for name in items.name[front]], dtype=np.int64))
    return front[np.lexsort((*keys, items.row[front]))]  # stable; the last key is the primary one


def record_sequences(book: Codebook, width: np.ndarray, height: np.ndarray, lists: Mapping[str, PoseArrays],
                     counter: ClipCounter | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``tokens`` column of ``len(width)`` record rows (image sizes [px]) from their pose lists
    (``objects`` / ``ego`` / ``waypoints`` -> :class:`PoseArrays`): flat int32 ids and per-row
    lengths. A row's poses are its objects, then ego items, then waypoints, each in
    :func:`sequence_order`; objects carry size tokens, items with a gripper a grip token."""
    width, height = np.asarray(width), np.asarray(height)
    span = 1 + sum(len(items.row) for items in lists.values())  # ranks of column c: c * span + position
    batches = []
    for c, column in enumerate(POSE_LISTS):
        items = lists.get(column)
        if items is None:
            continue
        order = sequence_order(column, items)
        rank = c * span + np.arange(len(order))
        has = np.full(len(order), items.gripper is not None)
        if items.gripper is not None and items.has_gripper is not None:
            has = np.asarray(items.has_gripper, bool)[order]
        for with_gripper in (False, True):
            pick = np.flatnonzero(has == with_gripper)
            if pick.size == 0:
                continue
            i, rows = order[pick], items.row[order[pick]]
            ids = encode_poses(book, items.uv[i], items.t[i], items.q[i], width[rows], height[rows],
                               size=None if items.size is None else items.size[i],
                               gripper=items.gripper[i] if with_gripper else None, counter=counter)
            batches.append((rows, rank[pick], ids))
    return layout_sequences(book, len(width), batches)


def _row_lists(row: Mapping) -> dict[str, PoseArrays]:
    """The pose lists of one record row (schema v1 dict), as :class:`PoseArrays` of row 0."""
    lists = {}
    for column in POSE_LISTS:
        items = row.get(column) or []
        n = len(items)
        uv = np.array([[np.nan, np.nan] if x["center_uv"] is None else x["center_uv"] for x in items], np.float64)
        grip = [x.get("gripper") for x in items]
        lists[column] = PoseArrays(
            row=np.zeros(n, np.int64),
            name=np.array([x["category" if column == "objects" else "name"] for x in items], dtype=object),
            uv=uv.reshape(n, 2),
            t=np.array([x["t"] for x in items], np.float64).reshape(n, 3),
            q=np.array([x["q"] for x in items], np.float64).reshape(n, 4),
            size=np.array([x["size"] for x in items], np.float64).reshape(n, 3) if column == "objects" else None,
            gripper=None if column == "objects" else np.array([np.nan if g is None else g for g in grip], np.float64),
            has_gripper=np.array([g is not None for g in grip], bool),
            offset=np.array([x["offset_steps"] for x in items], np.int64) if column == "waypoints" else None,
        )
    return lists


def poses_of_row(row: Mapping) -> list[Pose]:
    """The poses a record row (schema v1 dict) contributes to its token sequence, in order
    (:func:`record_sequences`), labelled: object category, ego name, or ego name and offset
    (``"left arm 15"``). Built straight from the row's dicts (the loader calls it per sample); only
    the order goes through :func:`sequence_order`."""
    poses = []
    for column in POSE_LISTS:
        items = row.get(column) or []
        if not items:
            continue
        objects = column == "objects"
        nan = (np.nan, np.nan)
        keys = PoseArrays(
            row=np.zeros(len(items), np.int64),
            name=np.array([x["category" if objects else "name"] for x in items], dtype=object),
            uv=np.array([nan if x["center_uv"] is None else x["center_uv"] for x in items], np.float64),
            t=np.array([x["t"] for x in items], np.float64),
            q=np.zeros((len(items), 4)),
            offset=np.array([x["offset_steps"] for x in items], np.int64) if column == "waypoints" else None,
        )
        for i in sequence_order(column, keys):
            x = items[i]
            if objects:
                poses.append(Pose(x["category"], tuple(x["center_uv"]), tuple(x["t"]), tuple(x["q"]),
                                  size=tuple(x["size"])))
                continue
            label = x["name"].replace("_", " ")
            if column == "waypoints":
                label = f"{label} {x['offset_steps']}"
            poses.append(Pose(label, tuple(x["center_uv"]), tuple(x["t"]), tuple(x["q"]), gripper=x.get("gripper")))
    return poses


def row_tokens(book: Codebook, row: Mapping, counter: ClipCounter | None = None) -> list[int]:
    """The ``tokens`` column of one record row under ``book``, recomputed from its stored poses with
    the builder every converter uses (:func:`record_sequences`)."""
    ids, _ = record_sequences(book, np.array([row["width"]]), np.array([row["height"]]), _row_lists(row), counter)
    return ids.tolist()
