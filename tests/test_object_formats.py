"""Object-pose formats: the same synthetic scenes written as Omni3D JSON, BOP and Objectron records
convert to the same camera-frame poses, sizes and tokens; BOP's millimetres, Omni3D's [w, h, l]
order and ignore rules, and Objectron's landscape/OpenGL camera frame each have a test that fails
if the conversion is skipped; corrupt inputs are quarantined."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from converters.base import EpisodeRows, UnitStats, load_converter
from pipelines.samples.bop import write_bop_sample
from pipelines.samples.objectron import write_objectron_sample
from pipelines.samples.omni3d import write_omni3d_sample
from pipelines.storage import read_depth
from pipelines.synthetic_world import make_object_scene
from schemas.catalog import load_catalog
from schemas.geometry import quat_to_matrix
from schemas.record import validate
from schemas.tokenizer import default_codebook


def convert_all(dataset: str, source, **options):
    converter = load_converter(load_catalog().dataset(dataset), source, options)
    tables, rejected, depths, stats = [], [], [], UnitStats()
    for unit in converter.plan():
        for result in converter.convert_unit(unit, default_codebook(), stats):
            if isinstance(result, EpisodeRows):
                tables.append(result.table)
                depths += result.depth or [None] * result.table.num_rows
            else:
                rejected.append(result)
    table = pa.concat_tables(tables) if tables else None
    if table is not None:
        validate(table)
    return table, rejected, stats, depths


@pytest.fixture(scope="module")
def scenes():
    return [make_object_scene(11, i, num_views=3, width=480, height=640) for i in range(2)]


@pytest.fixture(scope="module")
def converted(scenes, tmp_path_factory):
    root = tmp_path_factory.mktemp("objects")
    write_omni3d_sample(root / "omni3d", scenes=scenes)
    write_bop_sample(root / "bop", scenes=scenes)
    write_objectron_sample(root / "objectron", scenes=scenes)
    return {
        name: convert_all(name, root / folder)
        for name, folder in (("omni3d_sunrgbd", "omni3d"), ("bop_ycbv", "bop"), ("objectron", "objectron"))
    }


def test_same_scenes_same_poses_sizes_and_tokens(scenes, converted):
    truth = [(s, v) for s in scenes for v in range(len(s.views))]
    tokens = {}
    for name, (table, rejected, _, _) in converted.items():
        assert not rejected, (name, rejected)
        rows = table.to_pylist()  # scene-major, view-minor: the writers' order
        assert len(rows) == len(truth), name
        for row, (scene, v) in zip(rows, truth, strict=True):
            assert len(row["objects"]) == len(scene.episode.objects), name
            for i, obj in enumerate(row["objects"]):  # writers keep the scene's object order
                T = scene.T_cam_object(v, i)
                assert np.linalg.norm(np.array(obj["t"]) - T[:3, 3]) < 1e-3, (name, i)
                R = quat_to_matrix(np.array(obj["q"])).T @ T[:3, :3]
                assert np.degrees(np.arccos(np.clip((np.trace(R) - 1) / 2, -1, 1))) < 0.1, (name, i)
                np.testing.assert_allclose(obj["size"], scene.episode.objects[i].size, atol=1e-3)
            np.testing.assert_allclose(np.array(row["K"]).reshape(3, 3), scene.views[v].K, atol=1e-3)
        tokens[name] = table.column("tokens").to_pylist()
    assert tokens["bop_ycbv"] == tokens["omni3d_sunrgbd"]
    assert tokens["objectron"] == tokens["omni3d_sunrgbd"]


def test_bop_millimetres_and_depth(scenes, converted):
    table, _, _, depths = converted["bop_ycbv"]
    row = table.to_pylist()[0]
    assert 0.2 < row["objects"][0]["t"][2] < 2.0  # metres, not 1000x
    assert row["objects"][0]["category"] == "master chef can"  # obj_id 1 through the catalog table
    np.testing.assert_allclose(depths[0], scenes[0].depth(0), atol=0.0002)  # 0.1 mm PNG steps
    sym = [o for r in table.to_pylist() for o in r["objects"] if o["symmetry"]]
    for o in sym:
        discrete = np.array(json.loads(o["symmetry"])["discrete"][0]).reshape(4, 4)
        assert abs(discrete[2, 2] - 1) < 1e-9 and np.all(np.abs(discrete[:3, 3]) < 1.0)
    assert row["ref_frame"] == "world" and row["T_ref_cam"] is not None


def test_bop_depth_goes_to_zarr_through_the_engine(scenes, tmp_path):
    from pipelines.engine import Engine
    from pipelines.manifest import Manifest, read_dataset

    write_bop_sample(tmp_path / "src", scenes=scenes[:1])
    entry = load_catalog().dataset("bop_ycbv")
    summary = Engine(entry, tmp_path / "src", tmp_path / "out", default_codebook(), workers=1).run(progress=False)
    assert summary.episodes == 1 and summary.quarantined_episodes == 0
    manifest = Manifest.read(summary.root)
    assert [d["path"] for d in manifest.depth_stores] == ["depth/test-000000.zarr"]
    row = read_dataset(summary.root).to_pylist()[1]
    np.testing.assert_allclose(read_depth(summary.root, row["depth"]), scenes[0].depth(1), atol=0.0011)


def test_omni3d_dimension_order_and_ignore_rules(scenes, converted):
    table, _, stats, _ = converted["omni3d_sunrgbd"]
    obj = table.to_pylist()[0]["objects"][0]
    assert obj["size"] == pytest.approx(list(scenes[0].episode.objects[0].size), abs=1e-6)  # [l, h, w] -> x, y, z
    n_images = sum(len(s.views) for s in scenes)
    assert stats.notes["omni3d filter: behind_camera"] == n_images
    assert stats.notes["omni3d filter: not valid3D"] == n_images
    assert stats.notes["omni3d filter: depth_error > 0.5"] == n_images


def test_objectron_landscape_opengl_frame_is_resolved(scenes, converted):
    _, _, stats, _ = converted["objectron"]
    assert stats.notes["camera frame: OpenGL flip + 90 degree turn"] == sum(len(s.views) for s in scenes)


def test_corrupt_object_inputs_are_quarantined(scenes, tmp_path):
    write_omni3d_sample(tmp_path / "o", scenes=scenes[:1])
    (tmp_path / "o/SUNRGBD/scene000/view1.jpg").unlink()
    table, rejected, _, _ = convert_all("omni3d_sunrgbd", tmp_path / "o")
    assert len(rejected) == 1 and rejected[0].stage == "image" and "view1.jpg" in rejected[0].location
    assert table.num_rows == 2

    write_bop_sample(tmp_path / "b", scenes=scenes[:1])
    gt = tmp_path / "b/ycbv/test/000000/scene_gt.json"
    data = json.loads(gt.read_text())
    data["2"][0]["obj_id"] = 999
    gt.write_text(json.dumps(data))
    table, rejected, _, _ = convert_all("bop_ycbv", tmp_path / "b")
    assert len(rejected) == 1 and "obj_id 999 not in models_info.json" in rejected[0].reason
    assert table.num_rows == 2

    write_objectron_sample(tmp_path / "x", scenes=scenes[:1])
    record = next((tmp_path / "x").rglob("*-of-*"))
    record.write_bytes(record.read_bytes()[: int(record.stat().st_size * 0.6)])
    table, rejected, _, _ = convert_all("objectron", tmp_path / "x")
    assert rejected[-1].stage == "read" and "unreadable after record" in rejected[-1].reason
    assert table is not None and 1 <= table.num_rows < 3


@pytest.mark.parametrize(
    "dataset", ["omni3d_sunrgbd", "bop_ycbv", "objectron", "ho3d", "dexycb", "egodex", "hot3d_clips"]
)
def test_bundled_sample_converts(dataset, tmp_path, capsys):
    """`make convert DATASET=<dataset>` with no source: sample generated, converted, previewed."""
    from pipelines.convert import main

    assert main(["--dataset", dataset, "--out", str(tmp_path), "--quiet", "--workers", "2"]) == 0
    out = capsys.readouterr().out
    assert "BUNDLED SYNTHETIC SAMPLE" in out and "quarantined    0 episode(s)" in out
    assert (tmp_path / dataset / "preview.png").stat().st_size > 5_000


def test_filter_counts_land_in_the_manifest_and_survive_resume(scenes, tmp_path):
    from pipelines.engine import Engine
    from pipelines.manifest import Manifest

    write_omni3d_sample(tmp_path / "src", scenes=scenes[:1])
    entry = load_catalog().dataset("omni3d_sunrgbd")
    for run in range(2):  # the second run resumes every unit
        summary = Engine(entry, tmp_path / "src", tmp_path / "out", default_codebook(), workers=1).run(progress=False)
        notes = Manifest.read(summary.root).statistics["notes"]
        assert notes["omni3d filter: behind_camera"] == 3 and notes["omni3d filter: not valid3D"] == 3, run
        assert summary.units_resumed == run
