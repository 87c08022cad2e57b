"""Mixtures, statistics, codebook fitting, the PyTorch loader and the Hub folder."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from torch.utils.data import DataLoader

from model.batching import MixtureBatches
from model.data import POOL_ROWS, MixtureDataset, collate
from model.token_budget import BudgetCollate
from model.worker_transfer import MAX_BUFFERS
from pipelines.build_mixture import build, effective_weights
from pipelines.engine import Engine
from pipelines.manifest import ManifestError
from pipelines.samples.bop import write_bop_sample
from pipelines.samples.droid import write_droid_sample
from pipelines.samples.objectron import write_objectron_sample
from pipelines.samples.omni3d import write_omni3d_sample
from pipelines.statistics import table_statistics
from pipelines.synthetic_world import make_object_scene
from schemas.catalog import load_catalog
from schemas.mixture import load_mixture, split_of
from schemas.stats import ALPHA, ZERO_THRESHOLD, FeatureStats
from schemas.tokenizer import Codebook, default_codebook

VAL = 0.3


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Converted demo_pose members (9 scenes each) and a small DROID, plus their mixtures."""
    root = tmp_path_factory.mktemp("mix")
    scenes = [make_object_scene(21, i, num_views=2, width=320, height=240) for i in range(9)]
    write_omni3d_sample(root / "src/omni3d", scenes=scenes)
    write_bop_sample(root / "src/bop", scenes=scenes)
    write_objectron_sample(root / "src/objectron", scenes=[make_object_scene(21, i, 2, 240, 320) for i in range(9)])
    write_droid_sample(root / "src/droid", seed=4, num_episodes=6, num_steps=30, episodes_per_shard=2)
    catalog = load_catalog()
    for name, folder in (
        ("omni3d_sunrgbd", "omni3d"),
        ("bop_ycbv", "bop"),
        ("objectron", "objectron"),
        ("droid", "droid"),
    ):
        Engine(catalog.dataset(name), root / "src" / folder, root / "out", default_codebook(), workers=2).run(
            progress=False
        )
    mixtures = {
        name: build(name, None, root / "out", root / "mixtures", VAL, fit=name == "demo_pose")
        for name in ("demo_pose", "demo_action")
    }
    return root, mixtures


# ------------------------------------------------------------------------------- statistics
def test_merged_stats_equal_stats_of_concatenated_data():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(3, 2, (4000, 3)), rng.lognormal(0, 1, (4000, 3)) * -1, np.zeros((50, 3))])
    parts = np.array_split(rng.permutation(x), 7)
    merged = FeatureStats(3)
    for part in parts:
        s = FeatureStats(3)
        s.add(part)
        merged.merge(s)
    whole = FeatureStats(3)
    whole.add(x)
    np.testing.assert_allclose(merged.mean, x.mean(axis=0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(merged.std, x.std(axis=0), rtol=1e-10)
    np.testing.assert_array_equal(merged.min, x.min(axis=0))
    for key in ("count", "min", "max", "q01", "q99"):  # the sketch merge is exact: same buckets
        assert merged.summary()[key] == whole.summary()[key], key
    for q, key in ((0.01, "q01"), (0.99, "q99")):
        lo, hi = np.quantile(x, q, axis=0, method="lower"), np.quantile(x, q, axis=0, method="higher")
        got = np.array(merged.summary()[key])
        bound = ALPHA * np.maximum(np.abs(lo), np.abs(hi)) + ZERO_THRESHOLD
        assert np.all((got >= np.minimum(lo, hi) - bound) & (got <= np.maximum(lo, hi) + bound)), (q, got, lo, hi)
    assert FeatureStats.from_dict(json.loads(json.dumps(merged.to_dict()))).summary() == merged.summary()


def test_dataset_stats_merged_over_shards_match_the_whole_table(data):
    """Statistics merged over the shards (the mixture's per-dataset summary) equal those of the
    whole table; the member dataset itself is never written to (a read-only bucket works)."""
    root, mixtures = data
    dataset = root / "out" / "droid"
    manifest = json.loads((dataset / "manifest.json").read_text())
    assert len(manifest["shards"]) == 3 and "summary" not in manifest["statistics"]
    whole = pa.concat_tables([pq.read_table(dataset / s["path"]) for s in manifest["shards"]])
    features, _ = table_statistics(whole)
    mixture = next(json.loads(p.read_text()) for p in mixtures.values() if "droid" in p.read_text())
    stored = mixture["statistics"]["per_dataset"]["droid"]["summary"]
    for name in ("state", "action", "ego.t", "waypoints.t"):
        expected = features[name].summary()
        np.testing.assert_allclose(stored[name]["mean"], expected["mean"], rtol=1e-9)
        np.testing.assert_allclose(stored[name]["std"], expected["std"], rtol=1e-9)
        assert stored[name]["q01"] == expected["q01"] and stored[name]["count"] == expected["count"]


# --------------------------------------------------------------------------------- mixtures
def test_mixture_manifest(data):
    _, mixtures = data
    record = load_mixture(mixtures["demo_pose"])
    names = [m["dataset"] for m in record["members"]]
    assert names == ["omni3d_sunrgbd", "bop_ycbv", "objectron"] and record["stage"] == "pose"
    rows = [m["rows"].get("train", 0) for m in record["members"]]
    np.testing.assert_allclose(
        [m["effective_weight"] for m in record["members"]], effective_weights(names, [None] * 3, rows, 0.43)
    )
    assert all(len(s["sha256"]) == 64 and s["row_groups"] for m in record["members"] for s in m["shards"])
    assert set(record["statistics"]["per_embodiment"]) == {"objects"}
    book = Codebook.load(record["fitted_codebook"]["path"])
    assert book.codebook_id == record["fitted_codebook"]["id"] and book.vocab_size == default_codebook().vocab_size
    assert effective_weights(["a", "b"], [None, None], [100, 10_000], 0.43)[1] == pytest.approx(
        10_000**0.43 / (100**0.43 + 10_000**0.43)
    )


def test_missing_member_is_named(tmp_path):
    with pytest.raises(ManifestError, match=r"member 'omni3d_sunrgbd'.*no manifest; convert the dataset first"):
        build("demo_pose", None, tmp_path, tmp_path / "m", VAL, fit=False)


def test_tampered_mixture_manifest_is_refused(data, tmp_path):
    _, mixtures = data
    record = json.loads(mixtures["demo_pose"].read_text())
    record["members"][0]["effective_weight"] = 0.9
    (tmp_path / "m.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match="content hash mismatch"):
        load_mixture(tmp_path / "m.json")


# ----------------------------------------------------------------------------------- loader
def test_sampling_shares_match_effective_weights(data):
    _, mixtures = data
    ds = MixtureDataset(mixtures["demo_pose"])
    n = 2000
    counts = Counter(ds.draw(0, 1, i)["dataset"] for i in range(n))
    for member in ds.members:
        share = counts[member["dataset"]] / n
        # 4 standard deviations of a binomial share at n = 2000 is at most 0.045
        assert abs(share - member["effective_weight"]) < 0.045, (member["dataset"], share)


def test_val_episodes_never_in_train(data):
    _, mixtures = data
    seen = {}
    for split in ("train", "val"):
        ds = MixtureDataset(mixtures["demo_pose"], split=split)
        seen[split] = {(s["dataset"], s["episode_id"]) for s in (ds.draw(0, 1, i) for i in range(300))}
        assert all(split_of(d, e, VAL) == split for d, e in seen[split])
    assert seen["val"] and not seen["train"] & seen["val"]


@pytest.mark.parametrize("workers", [0, 2])
def test_resumed_loader_yields_the_same_samples(data, workers):
    _, mixtures = data

    def loader(start_state=None, n=24):
        ds = MixtureDataset(mixtures["demo_action"], image_size=(160, 90), chunk=8, num_samples=n // max(workers, 1))
        if start_state:
            ds.load_state_dict(start_state)
        return ds, DataLoader(ds, batch_size=None, num_workers=workers)

    _, full = loader()
    reference = [s["sample_id"] for s in full]
    ds, first = loader(n=12)
    head = [s["sample_id"] for s in first]
    state = ds.state_dict(consumed=12 // max(workers, 1))
    _, rest = loader(state, n=12)
    assert head + [s["sample_id"] for s in rest] == reference
    assert len(set(reference)) > 4


@pytest.mark.parametrize(
    ("mixture", "image_size", "workers"),
    [("demo_action", None, 0), ("demo_action", None, 2), ("demo_pose", (160, 90), 0), ("demo_pose", (160, 90), 2)],
)
def test_batches_made_in_workers_equal_the_per_sample_loader(data, mixture, image_size, workers):
    """MixtureBatches (images decoded into reused shared buffers, poses only for rows over the token
    budget, small arrays by value) yields exactly the batches of DataLoader + BudgetCollate over the
    per-sample stream. Every batch is HELD while the workers go on (more than MAX_BUFFERS of them):
    a worker that reused a buffer the main process still holds would corrupt an earlier batch."""
    _, mixtures = data
    batch_size, budget = 4, 16  # most rows lose poses (DROID rows are 14-64 tokens, a pose 10)
    per_worker = batch_size * (MAX_BUFFERS + 3) + 2  # a last, shorter batch too

    def dataset():
        return MixtureDataset(mixtures[mixture], image_size=image_size, chunk=8, num_samples=per_worker)

    book = dataset().codebook
    reference = list(DataLoader(dataset(), batch_size=batch_size, num_workers=workers,
                                collate_fn=BudgetCollate(budget, book)))
    batches = list(MixtureBatches(dataset(), batch_size, budget=budget).loader(num_workers=workers))
    assert len(batches) == len(reference) == max(workers, 1) * (MAX_BUFFERS + 4)
    for ours, theirs in zip(batches, reference, strict=True):
        assert ours.keys() == theirs.keys()
        for key, value in theirs.items():
            if isinstance(value, torch.Tensor):
                assert isinstance(ours[key], torch.Tensor) and ours[key].dtype == value.dtype, key
                assert torch.equal(ours[key], value), key
            else:
                assert ours[key] == value, key
    counts = Counter()
    for batch in batches:
        counts.update(batch["token_budget"])
    assert counts["tokens/rows_over_budget"] > 0


def test_worker_buffers_are_reused_only_after_release():
    """A leased buffer arrives (pickled as a DataLoader worker sends it) as a plain tensor; the worker
    hands the buffer out again only once every view of that tensor is gone, and past MAX_BUFFERS
    held buffers it hands out unpooled memory."""
    import gc
    import pickle
    from multiprocessing.reduction import ForkingPickler

    from model.worker_transfer import Lease, SharedBuffers

    def send(lease):  # what the main process receives from a worker
        return pickle.loads(ForkingPickler.dumps(lease))

    buffers = SharedBuffers(max_buffers=2)
    first, lease = buffers.take((2, 3))
    first[:] = 7
    received = send(lease)
    assert type(received) is torch.Tensor and received.tolist() == [[7] * 3] * 2
    view = received[1]  # a view keeps the buffer held after the batch tensor is dropped
    del received, lease
    gc.collect()
    second, lease2 = buffers.take((2, 3))
    assert isinstance(lease2, Lease) and not np.shares_memory(first, second)
    third, unpooled = buffers.take((2, 3))  # both held: fresh memory, not a lease
    assert not isinstance(unpooled, Lease)
    assert not np.shares_memory(third, first) and not np.shares_memory(third, second)
    assert view.tolist() == [7] * 3
    del view
    gc.collect()
    again, lease3 = buffers.take((2, 3))
    assert isinstance(lease3, Lease) and np.shares_memory(again, first)


def test_samples_group_views_and_chunk_actions(data):
    _, mixtures = data
    ds = MixtureDataset(mixtures["demo_action"], image_size=(160, 90), chunk=8)
    sample = ds.draw(0, 1, 3)
    assert sample["views"] == ["exterior_1_left", "exterior_2_left", "wrist_left"]
    assert sample["images"].shape == (3, 90, 160, 3)
    np.testing.assert_allclose(sample["K"][0, 0, 0], 0.5 * load_fx(data, sample), rtol=1e-9)
    assert sample["actions"].shape == (8, 7) and sample["action_mask"][0] == 1
    valid = int(sample["action_mask"].sum())
    assert valid == min(8, 30 - sample["frame_index"])
    batch = collate([ds.draw(0, 1, i) for i in range(4)])
    assert batch["images"].shape == (4, 3, 90, 160, 3) and batch["tokens"].shape[0] == 4
    assert batch["actions"].shape == (4, 8, 7) and batch["token_mask"].any(dim=1).all()
    two = MixtureDataset(
        mixtures["demo_action"],
        image_size=(160, 90),
        codebook=Codebook.load(load_mixture(mixtures["demo_pose"])["fitted_codebook"]["path"]),
    )
    assert two.draw(0, 1, 3)["tokens"][0][0] == 1  # any codebook tokenizes the same rows


def load_fx(data, sample) -> float:
    root, _ = data
    table = pa.concat_tables([pq.read_table(p) for p in (root / "out/droid/data/train").glob("*.parquet")])
    row = table.filter(pa.compute.equal(table.column("sample_id"), sample["sample_id"])).to_pylist()[0]
    return row["K"][0]


def test_ray_data_reads_converted_shards(data):
    import ray

    root, _ = data
    files = sorted(str(p) for p in (root / "out/droid/data").rglob("*.parquet"))
    if not ray.is_initialized():
        ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    ds = ray.data.read_parquet(files).select_columns(["sample_id", "tokens"])
    assert ds.count() == 6 * 30 * 3


# ---------------------------------------------------------------------------------- the Hub
def test_dry_run_folder_loads_with_datasets(data, tmp_path):
    import datasets

    from pipelines.upload import main, upload

    root, _ = data
    assert (
        main(
            [
                "--dataset",
                "bop_ycbv",
                "--repo-id",
                "org/bop",
                "--data",
                str(root / "out"),
                "--dry-run",
                str(tmp_path / "hub"),
            ]
        )
        == 0
    )
    card = (tmp_path / "hub/README.md").read_text()
    assert "configs:" in card and "Hodan et al., BOP" in card and "![preview](preview.png)" in card
    loaded = datasets.load_dataset(str(tmp_path / "hub"))
    manifest = json.loads((root / "out/bop_ycbv/manifest.json").read_text())
    assert {s: len(loaded[s]) for s in loaded} == {s: v["rows"] for s, v in manifest["splits"].items()}
    split = next(iter(loaded))
    assert isinstance(loaded[split].features["image"], datasets.Image)
    assert (tmp_path / "hub/plots/depth.png").is_file() and (tmp_path / "hub/preview.png").is_file()

    import huggingface_hub

    original = huggingface_hub.get_token
    huggingface_hub.get_token = lambda: None
    try:
        with pytest.raises(PermissionError, match="not logged in"):
            upload(tmp_path / "hub", "org/bop", private=True)
    finally:
        huggingface_hub.get_token = original


def test_collate_mixes_sources_with_different_view_counts(data):
    _, mixtures = data
    three = MixtureDataset(mixtures["demo_action"], image_size=(160, 90)).draw(0, 1, 0)
    one = MixtureDataset(mixtures["demo_pose"], image_size=(160, 90)).draw(0, 1, 0)
    batch = collate([three, one])
    assert batch["images"].shape == (2, 1, 90, 160, 3) and batch["K"].shape == (2, 1, 3, 3)
    assert "actions" not in batch  # not every sample has actions


# ------------------------------------------------------------------------ splits that hold out
def test_demo_pose_splits_hold_out_whole_scenes_and_source_test_rows(data):
    """Views of one scene (Omni3D images in one folder, frames of one Objectron video) are one
    episode, so no scene is on both sides; BOP's ``test`` rows stay ``test`` and never train."""
    root, mixtures = data
    record = load_mixture(mixtures["demo_pose"])
    for member in record["members"]:
        table = pa.concat_tables(pq.read_table(s["path"], columns=["episode_id", "split"]) for s in member["shards"])
        episodes = set(table.column("episode_id").to_pylist())
        assert len(episodes) == 9, (member["dataset"], sorted(episodes)[:4])  # 9 scenes x 2 views each
    bop = next(m for m in record["members"] if m["dataset"] == "bop_ycbv")
    assert bop["rows"] == {"test": 18} and bop["effective_weight"] == 0
    train = {s["dataset"] for s in (MixtureDataset(mixtures["demo_pose"]).draw(0, 1, i) for i in range(200))}
    assert "bop_ycbv" not in train and train == {"omni3d_sunrgbd", "objectron"}
    test = MixtureDataset(mixtures["demo_pose"], split="test")
    assert {test.draw(0, 1, i)["dataset"] for i in range(20)} == {"bop_ycbv"}


def test_pools_hold_enough_rows_when_row_groups_are_small(data):
    """A block's pool is at least POOL_ROWS rows: an Objectron member stored one frame per row group
    mixes all its training scenes in a block (with 2 row groups per pool it saw at most 2 scenes,
    and stage 1 memorised each block), while 300-row robot row groups keep 8 per pool."""
    root, mixtures = data
    dataset = MixtureDataset(mixtures["demo_pose"], pool_row_groups=2, block_samples=100_000)
    drawn = [dataset.draw(0, 1, i) for i in range(300)]
    scenes = {s["episode_id"] for s in drawn if s["dataset"] == "objectron"}
    assert len(scenes) >= 5, scenes
    robot = {"shards": [{"row_groups": [300] * 159 + [120]}]}
    assert MixtureDataset._pool_size(robot, 160, 8) == 8  # DROID's stream is unchanged
    assert MixtureDataset._pool_size({"shards": [{"row_groups": [3] * 120}]}, 120, 8) == 120
    assert MixtureDataset._pool_size({"shards": [{"row_groups": [1] * 5000}]}, 5000, 8) == POOL_ROWS
    assert MixtureDataset._pool_size(robot, 160, None) == 0


def test_episode_in_two_source_splits_is_refused(data, tmp_path):
    import shutil

    root, _ = data
    copy = tmp_path / "out"
    shutil.copytree(root / "out" / "omni3d_sunrgbd", copy / "omni3d_sunrgbd")
    for name in ("bop_ycbv", "objectron"):
        (copy / name).symlink_to(root / "out" / name)
    shard = next((copy / "omni3d_sunrgbd").rglob("*.parquet"))
    table = pq.read_table(shard)
    splits = table.column("split").to_pylist()
    splits[0] = "val"  # the first view of scene 0 in the source's val split, the other view in train
    pq.write_table(table.set_column(table.schema.get_field_index("split"), "split", pa.array(splits)), shard)
    manifest = json.loads((copy / "omni3d_sunrgbd/manifest.json").read_text())
    from pipelines.storage import file_sha256

    for s in manifest["shards"]:
        s["sha256"] = file_sha256(copy / "omni3d_sunrgbd" / s["path"])
        s["bytes"] = (copy / "omni3d_sunrgbd" / s["path"]).stat().st_size
    (copy / "omni3d_sunrgbd/manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ManifestError, match="in two splits"):
        build("demo_pose", None, copy, tmp_path / "m", VAL, fit=False)


def test_mixture_loads_from_any_working_directory(data, tmp_path, monkeypatch):
    import shutil

    root, mixtures = data
    moved = tmp_path / "moved"
    shutil.copytree(root / "out", moved / "out", ignore=shutil.ignore_patterns("depth*", "*.zarr"))
    shutil.copytree(root / "mixtures", moved / "mixtures")
    stored = json.loads((moved / "mixtures/demo_pose.json").read_text())
    assert all(not s["path"].startswith("/") for m in stored["members"] for s in m["shards"])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    ds = MixtureDataset(Path("../moved/mixtures/demo_pose.json"), image_size=(160, 90))
    assert ds.draw(0, 1, 0)["images"].shape[1:] == (90, 160, 3)
    assert Path(load_mixture(moved / "mixtures/demo_pose.json")["fitted_codebook"]["path"]).is_file()


def test_fit_uses_tokenised_items_and_needs_ten_samples_per_bin(data, tmp_path):
    from pipelines.build_mixture import fit_samples
    from schemas.tokenizer import fit_codebook

    _, mixtures = data
    member = load_mixture(mixtures["demo_pose"])["members"][0]
    table = pq.read_table(member["shards"][0]["path"])
    rows = table.to_pylist()
    row = next(r for r in rows if split_of(r["dataset"], r["episode_id"], VAL, r["split"]) == "train")
    behind = {**row["objects"][0], "t": [0.1, 0.0, -0.3], "center_uv": None}  # not tokenised: no 2D anchor
    row["objects"] = [*row["objects"], behind]
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), tmp_path / "behind.parquet")
    samples = fit_samples([{**member, "shards": [{"path": str(tmp_path / "behind.parquet")}]}], VAL)
    assert samples["tz"].min() > 0  # only items in front of the camera are tokenised
    base = default_codebook()
    with pytest.warns(UserWarning, match="fewer than 10 per bin"):
        few = fit_codebook({"tz": samples["tz"]})
    np.testing.assert_array_equal(few.family("tz").edges, base.family("tz").edges)
    rng = np.random.default_rng(0)
    many = fit_codebook({"tz": rng.uniform(0.2, 3.0, 10 * base.family("tz").n_bins)})
    assert many.family("tz").edges[0] >= 0.2


# ------------------------------------------------------------------------- loader error messages
def test_loader_errors_name_the_cause_and_the_fix(data, tmp_path):
    from model.data import LoaderError, require

    _, mixtures = data
    three = MixtureDataset(mixtures["demo_action"]).draw(0, 1, 0)
    one = MixtureDataset(mixtures["demo_pose"]).draw(0, 1, 0)
    with pytest.raises(LoaderError, match=r"images of different sizes.*image_size"):
        collate([three, one])
    other = dict(three, state=np.zeros(5, np.float32), dataset="other_robot")
    mixed = collate([three, other])  # fine for token stages; a stage that needs the state says why it has none
    with pytest.raises(LoaderError, match=r"state shapes differ.*other_robot.*one embodiment"):
        require(mixed, "state")
    empty = build("demo_pose", None, data[0] / "out", tmp_path / "m", 0.0, fit=False)
    with pytest.raises(LoaderError, match="the val split is empty.*--val-fraction"):
        MixtureDataset(empty, split="val")


# ---------------------------------------------------------------------------- mixture on the Hub
def test_mixture_dry_run_publishes_members_manifest_and_card(data, tmp_path, monkeypatch):
    import yaml

    from pipelines.upload import main

    root, mixtures = data
    hub = tmp_path / "hub"
    args = ["--mixture", str(mixtures["demo_pose"]), "--repo-id", "org/mix", "--data", str(root / "out")]
    assert main([*args, "--catalog", "catalog.yaml", "--dry-run", str(hub)]) == 0
    card = (hub / "README.md").read_text()
    header = yaml.safe_load(card.split("---")[1])
    assert [c["config_name"] for c in header["configs"]] == ["omni3d_sunrgbd", "bop_ycbv", "objectron"]
    bop = next(c for c in header["configs"] if c["config_name"] == "bop_ycbv")
    assert [f["split"] for f in bop["data_files"]] == ["test"]  # splits as converted
    if header["license"] == "other":
        assert header["license_name"] and (hub / header["license_link"]).is_file()
    for name in ("omni3d_sunrgbd", "bop_ycbv", "objectron"):
        assert "path" not in json.loads((hub / name / "manifest.json").read_text())["source"]
    monkeypatch.chdir(tmp_path)
    published = MixtureDataset(hub / "mixtures/demo_pose.json", image_size=(160, 90))
    assert published.draw(0, 1, 0)["dataset"] in {"omni3d_sunrgbd", "objectron"}
