"""The loader's fast paths (model/data.py) keep every sample's content: images as OpenCV decodes
and resizes them, intrinsics, stored tokens and action chunks as stored (docs/benchmarks.md)."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from torch.utils.data import DataLoader

import model.data
from model.data import MixtureDataset, collate, decode_image
from pipelines.build_mixture import build
from pipelines.engine import Engine
from pipelines.samples.droid import write_droid_sample
from schemas.catalog import load_catalog
from schemas.geometry import resize_intrinsics
from schemas.record import sample_id
from schemas.tokenizer import default_codebook


@pytest.fixture(scope="module")
def droid(tmp_path_factory):
    """A converted 3-view DROID sample (180x320 JPEG), its demo_action mixture and its rows."""
    root = tmp_path_factory.mktemp("loader")
    write_droid_sample(root / "src", seed=7, num_episodes=4, num_steps=20, episodes_per_shard=2)
    Engine(load_catalog().dataset("droid"), root / "src", root / "out", default_codebook(), workers=1).run(
        progress=False
    )
    mixture = build("demo_action", None, root / "out", root / "mixtures", 0.25, fit=False)
    rows = pa.concat_tables([pq.read_table(p) for p in sorted((root / "out/droid/data").rglob("*.parquet"))])
    return mixture, {r["sample_id"]: r for r in rows.to_pylist()}


REDUCED = ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4), (2, cv2.IMREAD_REDUCED_COLOR_2))


def opencv_image(data: bytes, size: tuple[int, int] | None) -> np.ndarray:
    """The image as OpenCV decodes it (RGB), reduced while decoding by 8, 4 or 2 when ``size`` is
    at most that fraction of it, then resized with INTER_AREA when ``size`` differs."""
    buffer = np.frombuffer(data, np.uint8)
    height, width = cv2.imdecode(buffer, cv2.IMREAD_GRAYSCALE).shape
    flag = next((f for s, f in REDUCED if size and width >= size[0] * s and height >= size[1] * s), None)
    image = cv2.imdecode(buffer, cv2.IMREAD_COLOR_RGB if flag is None else flag)
    if flag is not None:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if size is not None and image.shape[1::-1] != size:
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return image


@pytest.mark.parametrize("size", [None, (160, 90), (100, 60), (40, 22)])
def test_samples_hold_the_stored_rows_decoded_as_opencv_does(droid, size):
    mixture, rows = droid
    ds = MixtureDataset(mixture, image_size=size, chunk=4)
    for index in range(12):
        sample = ds.draw(0, 1, index)
        views = [rows[sample_id("droid", sample["episode_id"], sample["frame_index"], v)] for v in sample["views"]]
        for v, row in enumerate(views):
            np.testing.assert_array_equal(sample["images"][v], opencv_image(row["image"]["bytes"], size))
            K = np.array(row["K"]).reshape(3, 3)
            if size is not None:
                K = resize_intrinsics(K, (row["width"], row["height"]), size)
            np.testing.assert_array_equal(sample["K"][v], K)
            np.testing.assert_array_equal(sample["tokens"][v], row["tokens"])
        first = views[0]
        np.testing.assert_array_equal(sample["state"], np.float32(first["state"]))
        np.testing.assert_array_equal(sample["actions"][0], np.float32(first["action"]))
        assert sample["instruction"] == first["instruction"]
        assert sample["images"].flags.writeable and sample["state"].flags.writeable


def test_decode_image_writes_into_the_given_array_and_reads_any_format(rng):
    image = rng.integers(0, 255, (45, 70, 3), dtype=np.uint8)
    jpeg = cv2.imencode(".jpg", image)[1].tobytes()
    out = np.zeros((2, 45, 70, 3), np.uint8)
    assert np.shares_memory(decode_image(jpeg, 70, 45, None, out[1]), out[1])
    np.testing.assert_array_equal(out[1], opencv_image(jpeg, None))
    small = np.zeros((20, 30, 3), np.uint8)
    decode_image(jpeg, 70, 45, (30, 20), small)  # reduced decode, then the exact resize, into ``small``
    np.testing.assert_array_equal(small, opencv_image(jpeg, (30, 20)))
    png = cv2.imencode(".png", image)[1].tobytes()
    np.testing.assert_array_equal(decode_image(png, 70, 45, None), image[..., ::-1])
    cmyk = Image.fromarray(image).convert("CMYK")  # libjpeg-turbo cannot turn CMYK into RGB: OpenCV does
    with io.BytesIO() as f:
        cmyk.save(f, "JPEG")
        data = f.getvalue()
    np.testing.assert_array_equal(decode_image(data, 70, 45, None), opencv_image(data, None))


def test_each_shard_is_opened_once_per_process(droid, monkeypatch):
    mixture, _ = droid
    opened = []
    original = model.data.open_shard
    monkeypatch.setattr(model.data, "open_shard", lambda path, sha: opened.append(path) or original(path, sha))
    ds = MixtureDataset(mixture, pool_row_groups=None)
    for index in range(60):
        ds.draw(0, 1, index)
    assert opened and len(opened) == len(set(opened))


def images_shared(samples: list[dict]) -> dict:
    batch = collate(samples)
    return {**batch, "stacked_in_shared_memory": batch["images"].is_shared()}


def test_worker_batches_are_stacked_in_shared_memory(droid):
    mixture, _ = droid
    ds = MixtureDataset(mixture, image_size=(80, 45), num_samples=8)
    batch = next(iter(DataLoader(ds, batch_size=4, num_workers=1, collate_fn=images_shared)))
    assert batch["stacked_in_shared_memory"] and batch["images"].shape == (4, 3, 45, 80, 3)
    assert not collate([ds.draw(0, 1, i) for i in range(2)])["images"].is_shared()  # the main process: no copy
