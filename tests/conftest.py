"""Shared fixtures: small, valid schema-v1 rows built from random camera-frame poses."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from schemas.geometry import euler_xyz_to_quat, intrinsics_matrix
from schemas.record import ego_item, object_item, sample_id, to_table, waypoint_item
from schemas.tokenizer import default_codebook, row_tokens

WIDTH, HEIGHT = 64, 48
K_SMALL = intrinsics_matrix(50.0, 50.0, 31.5, 23.5)


def jpeg_bytes(rng: np.random.Generator, width: int = WIDTH, height: int = HEIGHT) -> bytes:
    image = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(".jpg", image)
    assert ok
    return buf.tobytes()


def make_row(rng: np.random.Generator, episode: str = "ep0", frame: int = 0, view: str = "cam") -> dict:
    """One valid robot+objects row with a random pose in front of the camera."""
    t = np.array([rng.uniform(-0.2, 0.2), rng.uniform(-0.2, 0.2), rng.uniform(0.4, 2.0)])
    q = euler_xyz_to_quat(rng.uniform(-np.pi, np.pi, 3))
    row = {
        "sample_id": sample_id("unit", episode, frame, view),
        "dataset": "unit", "split": "train", "kind": "robot", "episode_id": episode,
        "frame_index": frame, "timestamp_s": frame / 15.0, "view": view,
        "image": {"bytes": jpeg_bytes(rng), "path": None},
        "height": HEIGHT, "width": WIDTH, "K": K_SMALL.ravel().tolist(),
        "T_ref_cam": np.eye(4).ravel().tolist(), "ref_frame": "robot_base", "depth": None,
        "instruction": ["pick up the cube", "grasp the cube"],
        "objects": [object_item("cube", "0", t + [0.05, 0, 0.1], q, [0.05, 0.05, 0.05], K_SMALL, WIDTH, HEIGHT,
                                bbox_xyxy=[1, 2, 30, 40], visibility=1.0, truncation=0.0)],
        "ego": [ego_item("arm", t, q, K_SMALL, WIDTH, HEIGHT, gripper=0.25)],
        "waypoints": [waypoint_item("arm", 15, 1.0, t + [0, 0, 0.05], q, K_SMALL, WIDTH, HEIGHT, gripper=1.0)],
        "state": [0.1] * 7, "action": [0.2] * 7, "embodiment": "franka_robotiq",
    }
    row["tokens"] = row_tokens(default_codebook(), row)
    return row


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def valid_rows(rng) -> list[dict]:
    return [make_row(rng, episode=f"ep{e}", frame=f) for e in range(2) for f in range(3)]


@pytest.fixture
def valid_table(valid_rows):
    return to_table(valid_rows)


@pytest.fixture(scope="session")
def bundled_sample(tmp_path_factory):
    """``dataset -> results`` of converting its bundled sample in-process (every unit of the plan:
    EpisodeRows and Rejected), once per test session however many tests ask for it. The MANO-parameter
    sources get the stand-in model that convert.py hands them for the sample."""
    from converters.base import UnitStats, load_converter  # imported here: pipelines.samples loads every writer
    from pipelines.samples import MANO_SAMPLES, SYNTHETIC_MANO_DIR, ensure_sample
    from schemas.catalog import load_catalog

    results: dict[str, list] = {}

    def convert(dataset: str) -> list:
        if dataset not in results:
            folder = ensure_sample(dataset, tmp_path_factory.mktemp(dataset), num_episodes=1)
            entry = load_catalog().dataset(dataset)
            options = dict(entry.options)
            if dataset in MANO_SAMPLES:
                assert (folder / SYNTHETIC_MANO_DIR / "MANO_RIGHT.pkl").is_file()
                options["mano_dir"] = str(folder / SYNTHETIC_MANO_DIR)
            converter = load_converter(entry, folder, options)
            units = converter.plan()
            results[dataset] = [r for u in units for r in converter.convert_unit(u, default_codebook(), UnitStats())]
        return results[dataset]

    return convert
