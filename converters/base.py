"""What every converter is: a pure "source -> records" object the conversion engine drives.

A converter splits its source into :class:`WorkUnit` s (a TFDS shard, an episode range, a scene),
and turns one unit into per-episode results: :class:`EpisodeRows` (a schema-v1 table) or
:class:`Rejected` (what could not be converted, where, and why). It never writes files; the
engine owns I/O, parallelism, resume and the quarantine log.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import pickle
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import pyarrow as pa

from schemas.catalog import DatasetEntry
from schemas.registry import CONVERTERS, resolve_options
from schemas.tokenizer import Codebook


@dataclass(frozen=True)
class WorkUnit:
    """One independently convertible piece of a source; ``name`` is also its shard's file stem."""

    name: str
    split: str
    payload: dict = field(default_factory=dict)  # converter-specific (e.g. episode range, file)


@dataclass
class EpisodeRows:
    """Converted rows of one episode / scene; ``depth[i]`` is row i's depth map [m] (or None)."""

    episode_id: str
    table: pa.Table
    depth: list[np.ndarray | None] | None = None


@dataclass
class Rejected:
    """A quarantined episode (or part of a unit): ``location`` in the source, pipeline ``stage``,
    human-readable ``reason``, and what it cost: ``episodes`` whole episodes (scenes, camera
    streams) lost, and ``images`` rows dropped from episodes that were otherwise kept (a bad
    frame costs ``Rejected(..., episodes=0, images=1)``). The two are counted apart."""

    location: str
    stage: str
    reason: str
    episodes: int = 1
    images: int = 0


@dataclass
class UnitStats:
    """Counters a converter fills while converting a unit (merged into the run summary)."""

    clipped_tokens: Counter = field(default_factory=Counter)
    notes: Counter = field(default_factory=Counter)  # e.g. "calibration from cam2base_extrinsics.json"


class Converter(Protocol):
    """Built as ``Class(entry, source, options)``; ``options`` is the instance of the converter's
    model in schemas/converter_options.py."""

    name: str
    version: str

    def plan(self, limit_episodes: int | None = None) -> list[WorkUnit]: ...

    def convert_unit(
        self, unit: WorkUnit, codebook: Codebook, stats: UnitStats
    ) -> Iterator[EpisodeRows | Rejected]: ...

    def source_info(self) -> dict: ...

    def dataset_metadata(self) -> dict: ...


def load_converter(entry: DatasetEntry, source: Path, options: dict | None = None) -> Converter:
    """Instantiate the converter a catalog entry names (schemas/registry.py), with its typed options:
    the catalog's, overridden by ``options`` (``--set``); ValueError for a key or value its model refuses."""
    if entry.converter not in CONVERTERS:
        raise ValueError(
            f"dataset {entry.name!r}: converter {entry.converter!r} is not implemented yet "
            f"(catalog.yaml converter_status: {entry.converter_status}); available: {', '.join(sorted(CONVERTERS))}"
        )
    typed = resolve_options(entry, options)
    module, cls = CONVERTERS[entry.converter].target.split(":")
    return getattr(importlib.import_module(module), cls)(entry, _path(source), typed)


def _path(location) -> Path:
    """``location`` as a path object: a ``Path`` or a ``upath.UPath`` (fsspec URL) stays as it is."""
    return location if hasattr(location, "stat") else Path(location)


# ------------------------------------------------------------------------------ provenance
def listing_sha256(root: Path, files) -> str:
    """sha256 of the sorted (relative path, size) listing of ``files``: what resume compares to
    tell whether a source changed (cheap: no file is read)."""
    listing = sorted((_path(p).relative_to(root).as_posix(), _path(p).stat().st_size) for p in files)
    return hashlib.sha256(json.dumps(listing).encode()).hexdigest()


def source_record(source: Path, version: str, files, root: Path | None = None, **extra) -> dict:
    """The manifest's ``source`` entry: path, version, listing checksum of ``files`` (+ extra keys)."""
    return {"path": str(source), "version": version, "listing_sha256": listing_sha256(root or source, files), **extra}


# ---------------------------------------------------------------------------- safe unpickling
class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and plain builtins (dict, list, str, numbers, None) only; any other
    global - the way a malicious pickle runs code - is refused with ``UnpicklingError``."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # Python 3 protocol-2 pickles encode array bytes with it (str -> bytes only)
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refused to load {module}.{name}: only numpy arrays and builtins are allowed")
        return super().find_class(module, name)


def load_pickle(path) -> object:
    """Load a pickle written by Python 2 or 3 (latin1 strings) with :class:`RestrictedUnpickler`."""
    with open(path, "rb") as f:
        return RestrictedUnpickler(f, encoding="latin1").load()


def _tensor_storage(data: bytes):
    """A tensor's storage pickled by ``pickle.dump`` (``torch.storage._load_from_bytes``), read with
    ``torch.load(weights_only=True)`` instead of torch's own ``weights_only=False``."""
    import io

    import torch

    return torch.load(io.BytesIO(data), weights_only=True)


class TorchUnpickler(RestrictedUnpickler):
    """:class:`RestrictedUnpickler` that also rebuilds torch tensors a plain ``pickle.dump`` wrote
    (TACO's hand poses, OakInk2's annotations): ``_rebuild_tensor_v2`` / ``_rebuild_parameter`` over
    storages read by :func:`_tensor_storage`; nothing else of torch."""

    TORCH = {
        ("torch._utils", "_rebuild_tensor_v2"),
        ("torch._utils", "_rebuild_parameter"),
        ("collections", "OrderedDict"),  # a tensor's (empty) backward hooks
    }

    def find_class(self, module: str, name: str):
        if (module, name) == ("torch.storage", "_load_from_bytes"):
            return _tensor_storage
        if (module, name) in self.TORCH:
            return pickle.Unpickler.find_class(self, module, name)
        return super().find_class(module, name)


def load_torch_pickle(path) -> object:
    """A pickle that may hold torch tensors, with :class:`TorchUnpickler`."""
    with open(path, "rb") as f:
        return TorchUnpickler(f, encoding="latin1").load()


# ------------------------------------------------------------------------------ shared images
def encode_jpeg(rgb: np.ndarray, quality: int) -> bytes:
    """JPEG bytes of an RGB uint8 image (for sources that store raw arrays or must be re-encoded)."""
    import cv2

    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


# ------------------------------------------------------------------------------ shared checks
ROTATION_TOLERANCE = 1e-3  # max |R^T R - I|: float32 sources and 6-decimal JSON pass by far


class InvalidInput(ValueError):
    """A source value no conversion can be right with: non-finite or non-rigid pose, bad intrinsics."""


def check_transforms(T: np.ndarray, what: str) -> None:
    """``T (..., 4, 4)`` must be finite with orthonormal, right-handed rotations; InvalidInput
    names the first bad index and the defect."""
    T = np.asarray(T, dtype=np.float64).reshape(-1, 4, 4)
    finite = np.isfinite(T).all(axis=(1, 2))
    if not finite.all():
        raise InvalidInput(f"{what}: non-finite pose (NaN or inf) at index {int(np.argmin(finite))}")
    R = T[:, :3, :3]
    defect = np.abs(np.swapaxes(R, 1, 2) @ R - np.eye(3)).max(axis=(1, 2))
    bad = (defect > ROTATION_TOLERANCE) | (np.linalg.det(R) <= 0)
    if bad.any():
        i = int(np.argmax(bad))
        raise InvalidInput(
            f"{what}: rotation at index {i} is not orthonormal (max |R^T R - I| = {defect[i]:.3g}, "
            f"det = {np.linalg.det(R[i]):.3g})"
        )


def check_intrinsics(K: np.ndarray, what: str) -> None:
    """K must be finite, upper-triangular-shaped pinhole intrinsics with positive focal lengths."""
    K = np.asarray(K, dtype=np.float64).reshape(3, 3)
    if not np.isfinite(K).all():
        raise InvalidInput(f"{what}: intrinsics are not finite")
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        raise InvalidInput(f"{what}: focal lengths must be positive (fx = {K[0, 0]:g}, fy = {K[1, 1]:g} px)")


class MissingKeyError(KeyError):
    """A required key is absent from a source file; ``str()`` is the plain message."""

    def __str__(self) -> str:
        return str(self.args[0])


def require(group, key: str):
    """``group[key]`` for HDF5-like groups, with a KeyError that names the full missing path."""
    try:
        return group[key]
    except KeyError:
        parent = getattr(group, "name", "").rstrip("/")
        raise MissingKeyError(f"missing {parent}/{key}") from None


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(data: bytes) -> tuple[int, int]:
    """``(width, height)`` from a PNG's IHDR chunk; ValueError for a truncated or foreign file."""
    if data[:8] != PNG_SIGNATURE or data[12:16] != b"IHDR":
        raise ValueError("not a PNG (bad signature or no IHDR chunk)")
    if b"IEND" not in data[-12:]:
        raise ValueError(f"PNG truncated (no IEND chunk; {len(data)} bytes)")
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def image_size(data: bytes) -> tuple[int, int]:
    """``(width, height)`` of encoded JPEG or PNG bytes, from their headers (no decoding)."""
    return png_size(data) if data[:8] == PNG_SIGNATURE else jpeg_size(data)


def jpeg_size(data: bytes) -> tuple[int, int]:
    """``(width, height)`` from a JPEG's SOF header, without decoding; raises ``ValueError`` naming
    what is wrong for bytes that are not a complete JPEG (no SOI/EOI marker, no frame header)."""
    if len(data) < 4 or data[:2] != b"\xff\xd8":
        raise ValueError("not a JPEG (no SOI marker)")
    if data.rstrip(b"\x00")[-2:] != b"\xff\xd9":
        raise ValueError(f"JPEG truncated or corrupt (no EOI marker; {len(data)} bytes)")
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            raise ValueError(f"JPEG corrupt (bad marker at byte {i})")
        marker = data[i + 1]
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
            if i + 9 > len(data):
                break
            height = int.from_bytes(data[i + 5 : i + 7], "big")
            width = int.from_bytes(data[i + 7 : i + 9], "big")
            return width, height
        if marker == 0xDA:  # start of scan before any frame header
            break
        i += 2 + length
    raise ValueError("JPEG corrupt (no frame header)")
