"""`python -m pipelines.validate` passes sound datasets and names every kind of damage."""

from __future__ import annotations

import shutil

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.manifest import Manifest
from pipelines.storage import file_sha256
from pipelines.validate import main, validate_dataset
from schemas.tokenizer import default_codebook
from tests.test_mixture import data  # noqa: F401  (module fixture: converted samples)


def test_validate_passes_then_names_damage(data, tmp_path, capsys):  # noqa: F811
    src, _ = data
    shutil.copytree(src / "out", tmp_path / "out")
    book = default_codebook()
    assert main(["--dataset", "bop_ycbv", "--out", str(tmp_path / "out")]) == 0
    assert "OK: checksums" in capsys.readouterr().out

    root = tmp_path / "out" / "droid"
    manifest = Manifest.read(root)
    first = root / manifest.shards[0].path
    # tokens that disagree with the poses, in a shard whose checksum is re-recorded (so only the token check fires)
    table = pq.read_table(first)
    tokens = table.column("tokens").to_pylist()
    tokens[0] = tokens[0][:2] + [book.special_id("no_object")] + tokens[0][-2:]
    table = table.set_column(table.schema.get_field_index("tokens"), "tokens", pa.array(tokens, pa.list_(pa.int32())))
    pq.write_table(table, first)
    manifest.shards[0] = type(manifest.shards[0])(
        **{**manifest.shards[0].to_dict(), "sha256": file_sha256(first), "bytes": first.stat().st_size}
    )
    manifest.write(root)
    shutil.copy(first, first.with_name("stray.parquet"))
    second = root / manifest.shards[1].path
    second.write_bytes(second.read_bytes()[:-10] + b"0123456789")
    problems = validate_dataset(root, book)
    assert any("tokens disagree with the poses" in p for p in problems)
    assert any("stray.parquet: shard not listed" in p for p in problems)
    assert any(f"{second}: sha256 differs" in p for p in problems)
    assert main(["--dataset", "droid", "--out", str(tmp_path / "out")]) == 1

    store = next((tmp_path / "out" / "bop_ycbv" / "depth").iterdir())
    chunk = next(p for p in store.rglob("*") if p.is_file() and p.name != "zarr.json")  # a data chunk
    chunk.write_bytes(chunk.read_bytes() + b"x")
    assert any("depth store differs" in p for p in validate_dataset(tmp_path / "out" / "bop_ycbv", book))
