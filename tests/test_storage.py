"""Shard writer, depth store, manifest and verified reads."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal

import numpy as np
import pyarrow.parquet as pq
import pytest

from pipelines.layout import check_name, partial_path
from pipelines.manifest import Manifest, ManifestError, read_dataset
from pipelines.storage import ChecksumError, DepthWriter, ShardWriter, read_depth, read_shard
from schemas.record import to_table
from schemas.tokenizer import default_codebook
from tests.conftest import make_row


def write_unit(root, table, split="train", unit="ep0"):
    with ShardWriter(root, split, unit) as writer:
        writer.write(table)
    return writer.info


def test_shard_is_readable_by_pyarrow_and_datasets(tmp_path, valid_table):
    import datasets

    info = write_unit(tmp_path, valid_table)
    assert info.path == "data/train/ep0.parquet" and info.rows == 6 and info.episodes == 2
    table = pq.read_table(tmp_path / info.path)
    assert table.num_rows == 6 and table.column("K").type.list_size == 9
    ds = datasets.load_dataset("parquet", data_dir=str(tmp_path / "data"), split="train")
    assert isinstance(ds.features["image"], datasets.Image)
    image = ds[0]["image"]
    assert image.size == (64, 48)
    assert ds[0]["objects"][0]["category"] == "cube"
    assert list(tmp_path.rglob("*.partial")) == []


def test_parquet_layout_zstd_row_groups_page_index(tmp_path, rng):
    table = to_table([make_row(rng, frame=i) for i in range(450)])
    info = write_unit(tmp_path, table)
    meta = pq.ParquetFile(tmp_path / info.path).metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [450]
    names = [meta.row_group(0).column(i).path_in_schema for i in range(meta.num_columns)]
    codecs = {n: meta.row_group(0).column(i).compression for i, n in enumerate(names)}
    assert codecs["image.bytes"] == "UNCOMPRESSED" and codecs["sample_id"] == "ZSTD"
    assert meta.row_group(0).column(0).has_offset_index  # page index written
    big = to_table([make_row(rng, frame=i) for i in range(2300)])
    meta = pq.ParquetFile(tmp_path / write_unit(tmp_path, big, unit="big").path).metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [1000, 1000, 300]


def test_same_rows_give_byte_identical_shards(tmp_path, valid_table):
    a = write_unit(tmp_path / "a", valid_table)
    b = write_unit(tmp_path / "b", valid_table)
    assert a.sha256 == b.sha256 and a.bytes == b.bytes


def test_exception_leaves_no_visible_or_partial_file(tmp_path, valid_table):
    with pytest.raises(RuntimeError), ShardWriter(tmp_path, "train", "ep0") as writer:
        writer.write(valid_table)
        raise RuntimeError("converter failed mid-unit")
    assert not (tmp_path / "data/train/ep0.parquet").exists()
    assert list(tmp_path.rglob("*")) == [tmp_path / "data", tmp_path / "data/train"]


def _write_then_die(root: str) -> None:
    rng = np.random.default_rng(0)
    writer = ShardWriter(root, "train", "ep0")
    writer.write(to_table([make_row(rng, frame=i) for i in range(50)]))
    os.kill(os.getpid(), signal.SIGKILL)


def test_sigkill_mid_write_leaves_only_a_hidden_partial(tmp_path):
    proc = mp.get_context("spawn").Process(target=_write_then_die, args=(str(tmp_path),))
    proc.start()
    proc.join(60)
    assert proc.exitcode == -signal.SIGKILL
    final = tmp_path / "data/train/ep0.parquet"
    assert not final.exists()
    assert partial_path(final).exists()  # hidden (dot-prefixed) and never matched by *.parquet
    assert list((tmp_path / "data").rglob("*.parquet")) == []


def test_manifest_round_trip_and_tampered_shard_is_refused(tmp_path, valid_table):
    root = tmp_path / "unit"
    manifest = Manifest(dataset="unit", codebook=default_codebook().codebook_id,
                        source={"path": "/src", "version": "1.0.1", "listing_sha256": "0" * 64},
                        converter={"name": "droid", "version": "0.1.0"})
    manifest.add_shard(write_unit(root, valid_table, unit="a"))
    manifest.add_shard(write_unit(root, valid_table.slice(0, 2), split="val", unit="b"))
    manifest.add_shard(write_unit(root, valid_table, unit="a"))  # re-commit replaces, not duplicates
    manifest.write(root)
    loaded = Manifest.read(root)
    assert loaded.splits() == {"train": {"rows": 6, "episodes": 2, "shards": 1},
                               "val": {"rows": 2, "episodes": 1, "shards": 1}}
    assert [s.sha256 for s in loaded.shards] == [s.sha256 for s in manifest.shards]
    assert read_dataset(root).num_rows == 8
    assert read_dataset(root, split="val").num_rows == 2

    shard = root / "data/train/a.parquet"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match="a.parquet: sha256 .* differs from the manifest"):
        read_dataset(root)
    with pytest.raises(ChecksumError):
        read_shard(shard, loaded.shard("data/train/a.parquet").sha256)
    assert read_dataset(root, split="val").num_rows == 2  # untouched shards still read


def test_manifest_errors_name_the_file(tmp_path):
    with pytest.raises(ManifestError, match="no manifest"):
        Manifest.read(tmp_path)
    (tmp_path / "manifest.json").write_text('{"schema_version": "9.0", "dataset": "x", "codebook": "c"}')
    with pytest.raises(ManifestError, match="manifest.json: schema_version '9.0'"):
        Manifest.read(tmp_path)


def test_depth_store_round_trip(tmp_path, rng):
    writer = DepthWriter(tmp_path, "ep0", scale=0.001)
    maps = [rng.uniform(0.2, 4.0, (48, 64)) for _ in range(3)]
    maps[1][0, 0] = np.nan
    refs = [writer.add("cam", m) for m in maps] + [writer.add("wrist", maps[0][:24, :32])]
    assert not (tmp_path / "depth/ep0.zarr").exists()
    digest = writer.close()
    assert len(digest) == 64 and not partial_path(tmp_path / "depth/ep0.zarr").exists()
    assert refs[2] == {"store": "depth/ep0.zarr/cam", "index": 2, "scale": 0.001}
    for ref, m in zip(refs[:3], maps, strict=True):
        back = read_depth(tmp_path, ref)
        valid = np.isfinite(m)
        np.testing.assert_allclose(back[valid], m[valid], atol=0.0005 + 1e-6)
    assert read_depth(tmp_path, refs[1])[0, 0] == 0.0
    assert read_depth(tmp_path, refs[3]).shape == (24, 32)
    with pytest.raises(ValueError, match="exceeds"):
        DepthWriter(tmp_path, "ep1", scale=0.001).add("cam", np.full((2, 2), 80.0))


@pytest.mark.parametrize("name", ["../evil", "a/b", "", ".hidden", "a\\b", "x/../../y"])
def test_unsafe_names_are_refused(name):
    with pytest.raises(ValueError, match="not a safe name"):
        check_name(name, "dataset name")
