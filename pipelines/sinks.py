"""Where a conversion's output goes: everything the engine writes passes through a :class:`Sink`.

A sink owns one dataset folder (``<out>/<dataset>``, see :mod:`pipelines.layout`):

* ``begin_unit(split, unit)`` -> a :class:`UnitSink`: ``write(table, depth)`` appends one
  episode's rows (and its depth maps), ``commit(statistics)`` makes the unit's shard (and depth
  store) visible only once complete, then stores the unit's statistics
  (:class:`pipelines.statistics.UnitStatistics`) naming the shard's sha256, and returns the
  manifest entries; ``abort()`` leaves nothing;
* ``finalize(manifest, records)`` writes ``quarantine.jsonl``, then ``manifest.json`` LAST, each
  atomically, so a reader never sees a manifest listing a shard that is not complete;
* the resume side: ``read_manifest``, ``read_text``, ``committed`` (size and sha256 against the
  manifest), ``remove``, ``clear``, ``remove_partials`` and ``lock``.

A unit's statistics file is written after its shard and before the manifest lists the shard, so
a crash leaves at worst a shard without statistics, never statistics without their shard, and a
listed shard's statistics are those of its bytes (they name its sha256).

:class:`LocalSink` writes through :class:`pipelines.storage.ShardWriter` / ``DepthWriter``
(hidden temporary name, fsync, rename). :class:`ObjectStoreSink` writes any fsspec URL: a unit is
built by a :class:`LocalSink` in a scratch folder (so its shard is byte-identical to a local
run's), uploaded under its hidden ``.<name>.partial`` name, then moved into place (a server-side
copy on S3 / GCS: the object appears whole or not at all); the scratch folder is deleted.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.filesystems import as_path, explain, is_url
from pipelines.layout import LOCK_NAME, QUARANTINE_NAME, partial_path
from pipelines.manifest import Manifest
from pipelines.runlock import ObjectRunLock, RunLock
from pipelines.statistics import UnitStatistics, unit_stats_relpath
from pipelines.storage import DepthWriter, ShardInfo, ShardWriter, file_sha256, stream_sha256
from schemas.record import DEPTH_TYPE


class UnitSink:
    """The rows of one work unit, written to ``root`` (a local dataset folder)."""

    def __init__(self, root: Path, split: str, unit: str):
        self.root, self.unit = root, unit
        self.writer = ShardWriter(root, split, unit)
        self.depth: DepthWriter | None = None
        self.episodes = 0

    def write(self, table: pa.Table, depth: list | None = None) -> pa.Table:
        """Append one episode's rows; ``depth[i]`` is row i's depth map [m] or None. Returns the
        rows as stored (``depth`` column pointing into the unit's depth store)."""
        if depth is not None and any(d is not None for d in depth):
            self.depth = self.depth or DepthWriter(self.root, self.unit)
            views = table.column("view").to_pylist()
            refs = [None if d is None else self.depth.add(v, d) for v, d in zip(views, depth, strict=True)]
            table = table.set_column(table.schema.get_field_index("depth"), "depth", pa.array(refs, DEPTH_TYPE))
        self.writer.write(table)
        self.episodes += 1
        return table

    def commit(self, statistics: UnitStatistics) -> tuple[ShardInfo | None, dict | None]:
        """Make the shard and depth store visible, then write ``statistics`` (of the rows written)
        to ``stats/<split>/<unit>.json`` (temporary name, fsync, rename); (None, None) and nothing
        written for a unit that kept no episode. Should the statistics fail, the shard goes too."""
        if not self.episodes:
            self.abort()
            return None, None
        depth_store = None
        if self.depth is not None:
            depth_store = {"path": self.depth.relpath, "sha256": self.depth.close()}
        shard = self.writer.close()
        try:
            meta = pq.ParquetFile(self.root / shard.path).metadata
            row_groups = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
            _write_durably(self.root / unit_stats_relpath(shard.path), statistics.dumps(shard, row_groups))
        except BaseException:
            (self.root / shard.path).unlink(missing_ok=True)
            raise
        return shard, depth_store

    def abort(self) -> None:
        self.writer.abort()
        if self.depth is not None:
            self.depth.abort()


class LocalSink:
    """A dataset folder on a local (or mounted) filesystem."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.location = self.root

    def begin_unit(self, split: str, unit: str) -> UnitSink:
        return UnitSink(self.root, split, unit)

    def finalize(self, manifest: Manifest, records: list[dict]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / QUARANTINE_NAME
        tmp = partial_path(path)
        tmp.write_text(quarantine_text(records))
        os.replace(tmp, path)
        manifest.write(self.root)

    def read_manifest(self) -> Manifest:
        return Manifest.read(self.root)

    def read_text(self, relpath: str) -> str | None:
        path = self.root / relpath
        return path.read_text() if path.is_file() else None

    def committed(self, info: ShardInfo) -> bool:
        path = self.root / info.path
        return path.is_file() and path.stat().st_size == info.bytes and file_sha256(path) == info.sha256

    def remove(self, relpath: str) -> None:
        (self.root / relpath).unlink(missing_ok=True)

    def clear(self) -> None:
        """Delete the dataset folder's content (the lock held by this run stays)."""
        for child in self.root.iterdir() if self.root.exists() else []:
            if child.name != LOCK_NAME:
                shutil.rmtree(child) if child.is_dir() else child.unlink()

    def remove_partials(self) -> None:
        for leftover in self.root.rglob(".*.partial") if self.root.exists() else []:
            shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()

    def lock(self) -> RunLock:
        return RunLock(self.root)


class ObjectUnitSink(UnitSink):
    """A unit built in a local scratch folder, uploaded on :meth:`commit`."""

    def __init__(self, target: ObjectStoreSink, split: str, unit: str):
        self.target = target
        self.scratch = Path(tempfile.mkdtemp(prefix="posetok-unit-"))
        super().__init__(self.scratch, split, unit)

    def commit(self, statistics: UnitStatistics) -> tuple[ShardInfo | None, dict | None]:
        try:
            shard, depth_store = super().commit(statistics)
            if depth_store is not None:
                self.target.upload(self.scratch / depth_store["path"], depth_store["path"])
            if shard is not None:
                self.target.upload(self.scratch / shard.path, shard.path)
                stats = unit_stats_relpath(shard.path)
                self.target.upload(self.scratch / stats, stats)
            return shard, depth_store
        finally:
            shutil.rmtree(self.scratch, ignore_errors=True)

    def abort(self) -> None:
        super().abort()
        shutil.rmtree(self.scratch, ignore_errors=True)


class ObjectStoreSink:
    """A dataset folder at an fsspec URL (``s3://bucket/out/droid``). Filesystem errors are
    reported as :class:`pipelines.filesystems.StorageError` naming the URL."""

    def __init__(self, url: str):
        self.location = as_path(url)
        self.fs, self.base = self.location.fs, self.location.path.rstrip("/")

    def _path(self, relpath: str) -> str:
        return f"{self.base}/{relpath}"

    def begin_unit(self, split: str, unit: str) -> ObjectUnitSink:
        return ObjectUnitSink(self, split, unit)

    def upload(self, local: Path, relpath: str) -> None:
        """Copy a finished local file or folder to ``relpath``: under its hidden partial name first,
        then moved into place, replacing what was there."""
        final = self._path(relpath)
        hidden = self._path(partial_path(Path(relpath)).as_posix())
        try:
            if local.is_dir():  # object stores have no folders: every object goes hidden, then into place
                if self.fs.exists(final):
                    self.fs.rm(final, recursive=True)
                files = sorted(f.relative_to(local).as_posix() for f in local.rglob("*") if f.is_file())
                for rel in files:
                    self.fs.put_file(str(local / rel), f"{hidden}/{rel}")
                for rel in files:
                    self.fs.mv(f"{hidden}/{rel}", f"{final}/{rel}")
            else:
                self.fs.put_file(str(local), hidden)
                self.fs.mv(hidden, final)
        except Exception as e:  # noqa: BLE001 - reported with the URL; the run stops (exit 2)
            raise explain(f"{self.location}/{relpath}", e) from None

    def _put_bytes(self, relpath: str, data: bytes) -> None:
        hidden = self._path(partial_path(Path(relpath)).as_posix())
        try:
            self.fs.pipe_file(hidden, data)
            self.fs.mv(hidden, self._path(relpath))
        except Exception as e:  # noqa: BLE001
            raise explain(f"{self.location}/{relpath}", e) from None

    def finalize(self, manifest: Manifest, records: list[dict]) -> None:
        self._put_bytes(QUARANTINE_NAME, quarantine_text(records).encode())
        self._put_bytes("manifest.json", manifest.dumps().encode())

    def read_manifest(self) -> Manifest:
        return Manifest.parse(self.read_text("manifest.json"), f"{self.location}/manifest.json")

    def read_text(self, relpath: str) -> str | None:
        try:
            return self.fs.cat_file(self._path(relpath)).decode()
        except FileNotFoundError:
            return None
        except Exception as e:  # noqa: BLE001
            raise explain(f"{self.location}/{relpath}", e) from None

    def committed(self, info: ShardInfo) -> bool:
        path = self._path(info.path)
        try:
            if self.fs.size(path) != info.bytes:
                return False
        except FileNotFoundError:
            return False
        with self.fs.open(path, "rb") as f:
            return stream_sha256(f) == info.sha256

    def remove(self, relpath: str) -> None:
        if self.fs.exists(self._path(relpath)):
            self.fs.rm(self._path(relpath))

    def clear(self) -> None:
        for child in self.fs.ls(self.base, detail=False) if self.fs.exists(self.base) else []:
            if child.rstrip("/").rsplit("/", 1)[-1] != LOCK_NAME:
                self.fs.rm(child, recursive=True)

    def remove_partials(self) -> None:
        if not self.fs.exists(self.base):
            return
        for path in self.fs.find(self.base, withdirs=False):
            parts = path[len(self.base):].strip("/").split("/")
            if any(p.startswith(".") and p.endswith(".partial") for p in parts):
                self.fs.rm(path)

    def lock(self) -> ObjectRunLock:
        return ObjectRunLock(self.fs, self._path(LOCK_NAME), f"{self.location}/{LOCK_NAME}")


def _write_durably(path: Path, text: str) -> None:
    """``text`` to ``path``: hidden temporary name, fsync, rename (the file appears whole or not at all)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(path)
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def quarantine_text(records: list[dict]) -> str:
    """``quarantine.jsonl``: one JSON object per line, keys sorted (deterministic content)."""
    return "".join(json.dumps(r, sort_keys=True) + "\n" for r in records)


def open_sink(location: str | Path) -> LocalSink | ObjectStoreSink:
    """The sink of a dataset folder: :class:`ObjectStoreSink` for a URL, else :class:`LocalSink`."""
    return ObjectStoreSink(str(location)) if is_url(location) else LocalSink(location)
