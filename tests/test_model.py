"""The training module: exact resume, every stage trains and evaluates, checkpoints load safely."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from model.batches import family_table
from model.evaluate import evaluate
from model.network import PRESETS, PoseVLA, ray_maps, soft_token_loss
from model.train import load_checkpoint, train
from schemas.geometry import intrinsics_matrix
from schemas.priors import ray_map
from schemas.tokenizer import default_codebook
from tests.test_mixture import data  # noqa: F401  (module fixture: converted samples + mixtures)


def losses(run) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("stage,mixture", [("pose", "demo_pose"), ("action", "demo_action")])
def test_stopped_and_resumed_run_matches_uninterrupted(data, tmp_path, stage, mixture):  # noqa: F811
    _, mixtures = data
    common = dict(stage=stage, mixture=mixtures[mixture], steps=6, batch_size=4, warmup=2, save_every=3, progress=False)
    train(out=tmp_path / "full", **common)
    train(out=tmp_path / "resumed", stop_after=5, **common)  # crashes after step 5; checkpoint at step 3
    assert len(losses(tmp_path / "resumed")) == 5
    train(out=tmp_path / "resumed", **common)
    assert losses(tmp_path / "resumed") == losses(tmp_path / "full")
    full, resumed = load_checkpoint(tmp_path / "full/last.pt"), load_checkpoint(tmp_path / "resumed/last.pt")
    for name, tensor in full["model"].items():
        torch.testing.assert_close(resumed["model"][name], tensor, rtol=0, atol=0)
    assert (tmp_path / "full/loss_curve.png").stat().st_size > 1000


def test_evaluate_reports_metric_errors(data, tmp_path):  # noqa: F811
    _, mixtures = data
    ckpt = train("pose", mixtures["demo_pose"], tmp_path / "pose", steps=4, batch_size=4, warmup=1, progress=False)
    result = evaluate(ckpt, mixtures["demo_pose"], split="val", samples=4, batch_size=4)
    assert result["stage"] == "pose" and 0 <= result["token_accuracy"] <= 1
    for key in (
        "translation_error_cm",
        "depth_error_cm",
        "rotation_error_deg",
        "first_pose_translation_error_cm",
        "constant_baseline_cm",
    ):
        assert np.isfinite(result[key]), key
    action = train(
        "action",
        mixtures["demo_action"],
        tmp_path / "action",
        steps=3,
        batch_size=4,
        warmup=1,
        init=ckpt,
        progress=False,
    )
    assert np.isfinite(evaluate(action, mixtures["demo_action"], samples=4, batch_size=4)["action_mse"])


def test_ray_map_matches_schemas_priors():
    K = intrinsics_matrix(80.0, 82.0, 47.5, 35.5)
    ours = ray_maps(torch.tensor(K[None]), 96, 72)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(ours, ray_map(K, 96, 72), rtol=1e-6, atol=1e-6)


def test_soft_loss_prefers_near_misses():
    book = default_codebook()
    families = family_table(book)
    target = torch.tensor([[book.offsets["tz"] + 500]])
    near, far = torch.full((1, 1, book.vocab_size), -10.0), torch.full((1, 1, book.vocab_size), -10.0)
    near[0, 0, book.offsets["tz"] + 501] = 10.0
    far[0, 0, book.offsets["tz"] + 900] = 10.0
    mask = torch.ones(1, 1)
    assert soft_token_loss(near, target, mask, families, 1.5) < soft_token_loss(far, target, mask, families, 1.5)
    special = torch.tensor([[book.special_id("sep")]])
    exact = torch.full((1, 1, book.vocab_size), -10.0)
    exact[0, 0, book.special_id("sep")] = 10.0
    assert soft_token_loss(exact, special, mask, families, 1.5) < 1e-3


def test_any_backbone_can_be_plugged_in():
    cfg = PRESETS["tiny"]

    class Features(torch.nn.Module):  # stands in for e.g. a local Hugging Face vision model
        def forward(self, images):
            return torch.zeros(images.shape[0], (96 // 12) * (72 // 12), cfg.dim)

    model = PoseVLA(cfg, backbone=Features())
    prefix = model.encode_prefix(
        torch.zeros(2, 72, 96, 3, dtype=torch.uint8),
        torch.tensor(intrinsics_matrix(80, 80, 47.5, 35.5)).expand(2, 3, 3),
        torch.zeros(2, 5, dtype=torch.long),
    )
    assert prefix.shape == (2, 48 + 5, cfg.dim)
