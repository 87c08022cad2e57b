"""The training module: exact resume, every stage trains and evaluates, checkpoints load safely."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from model.actions import VectorSpace
from model.batches import encode_text, token_bins
from model.evaluate import action_table, evaluate, expected_bin
from model.network import PRESETS, ConvStem, PoseVLA, patch_strides, ray_maps, soft_token_loss
from model.train import RunMismatch, load_checkpoint, train
from pipelines.build_mixture import build
from schemas.geometry import intrinsics_matrix
from schemas.mixture import load_mixture
from schemas.priors import ray_map
from schemas.tokenizer import Codebook, TokenFamily, default_codebook
from tests.test_mixture import data  # noqa: F401  (module fixture: converted samples + mixtures)

FIT_STEPS = 300


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
    result = evaluate(action, mixtures["demo_action"], samples=4, batch_size=4)
    assert np.isfinite(result["action_mse"]) and result["stage"] == "action"
    for name in ("constant", "repeat_last"):  # baselines on the same samples, per dimension and overall
        baseline = result["baselines"][name]
        assert np.isfinite(baseline["action_mse"]) and list(baseline["action_mse_per_dim"]) == list(
            result["action_mse_per_dim"]
        )
    assert "cartesian_position.roll" in result["action_mse_per_dim"]
    assert "| **overall (mean)** |" in action_table(result)


def test_stage1_fits_its_training_scenes(data, tmp_path):  # noqa: F811
    """The short run with a looser bound (the held-out goal is ``test_learning.py``, slow): a few
    hundred steps on the small fixture must decode its training images' nearest-object translation
    far better than the constant predictor. Fails when learning or decoding breaks (e.g. the
    whole-range expected value that decoded memorised poses 80 cm off)."""
    _, mixtures = data
    ckpt = train("pose", mixtures["demo_pose"], tmp_path / "fit", steps=FIT_STEPS, batch_size=8, progress=False)
    result = evaluate(ckpt, mixtures["demo_pose"], split="train", samples=32, batch_size=16)
    assert result["first_pose_translation_error_cm"] < 0.5 * result["constant_baseline_cm"], result


def test_ray_map_matches_schemas_priors():
    K = intrinsics_matrix(80.0, 82.0, 47.5, 35.5)
    ours = ray_maps(torch.tensor(K[None]), 96, 72)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(ours, ray_map(K, 96, 72), rtol=1e-6, atol=1e-6)


def test_soft_loss_prefers_near_misses():
    book = default_codebook()
    families, _ = token_bins(book)
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


def test_mean_decoding_ignores_stray_tail_mass():
    """95 % of the mass on depth bins 1000 +- 2, 5 % spread over all bins: the tail must not move the
    estimate (the whole-range mean would land ~0.5 m deeper)."""
    book = default_codebook()
    fam = book.family("tz")
    probs = torch.full((1, fam.n_bins), 0.05 / fam.n_bins, dtype=torch.float64)
    probs[0, 998:1003] += torch.tensor([0.1, 0.2, 0.3, 0.25, 0.1])
    choose = expected_bin(book, ["tz"], reach=6)
    assert abs(int(choose(0, probs)) - 1000) <= 1
    assert int(expected_bin(book, ["tz"], reach=0)(0, probs)) == 1000  # no window: the mode
    assert int(expected_bin(book, [None], reach=6)(0, probs)) == 1000  # sep slot: the mode


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_maps_images_to_its_patch_grid(preset):
    cfg = PRESETS[preset]
    (w, h), patch = cfg.image_size, cfg.patch
    assert np.prod(patch_strides(patch)) == patch
    assert ConvStem(cfg)(torch.zeros(2, 3, h, w)).shape == (2, cfg.dim, h // patch, w // patch)
    K = torch.tensor(intrinsics_matrix(80, 80, w / 2 - 0.5, h / 2 - 0.5), dtype=torch.float32).expand(2, 3, 3)
    images, text = torch.zeros(2, h, w, 3, dtype=torch.uint8), torch.zeros(2, 1, dtype=torch.long)
    prefix = PoseVLA(cfg).encode_prefix(images, K, text)
    assert prefix.shape == (2, (w // patch) * (h // patch) + 1, cfg.dim)
    with pytest.raises(ValueError, match="patch size 14"):
        patch_strides(14)


def test_ordinal_tokens_start_close_to_their_neighbours():
    book = default_codebook()
    model = PoseVLA(PRESETS["tiny"])
    model.init_ordinal_tokens(*token_bins(book))
    assert model.head.weight is model.tokens.weight  # tied: predicting a bin = pointing at its embedding
    w = model.tokens.weight.detach()
    loc, tz = book.offsets["loc"], book.offsets["tz"]
    near, far, other_family = w[loc + 500] @ w[loc + 502], w[loc + 500] @ w[loc + 900], w[loc + 500] @ w[tz + 500]
    assert near > 2 * far and near > 2 * other_family
    specials = w[: len(book.special)]
    assert (specials @ specials.T - torch.eye(len(book.special))).abs().max() < 0.6  # each its own code


def test_text_is_padded_to_the_longest_instruction_only():
    assert encode_text([[], []], 48).shape == (2, 1)
    assert encode_text([["ab"], []], 48).tolist() == [[97, 98], [256, 256]]
    assert encode_text([["x" * 60]], 48).shape == (1, 48)


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


# ----------------------------------------------------------------- checkpoints know their run
def test_checkpoint_refuses_another_codebook_stage_mixture_or_init(data, tmp_path):  # noqa: F811
    _, mixtures = data
    short = dict(steps=2, batch_size=2, warmup=1, save_every=2, progress=False)
    ckpt = train("pose", mixtures["demo_pose"], tmp_path / "pose", **short)
    info = json.loads(load_checkpoint(ckpt)["extra"])
    assert info["codebook_id"] == default_codebook().codebook_id and info["preset"] == "tiny"
    assert info["mixture_hash"] == load_mixture(mixtures["demo_pose"])["content_hash"]
    book = default_codebook()
    other = Codebook(  # same layout, other depth bins: it would decode 0.38 cm as something else, silently
        "other", tuple(TokenFamily(f.name, f.edges * 1.01) if f.name == "tz" else f for f in book.families)
    )
    with pytest.raises(RunMismatch, match="trained with codebook"):
        evaluate(ckpt, mixtures["demo_pose"], samples=2, codebook=other)
    with pytest.raises(RunMismatch, match="pose-stage checkpoint"):
        evaluate(ckpt, mixtures["demo_action"], samples=2)
    with pytest.raises(RunMismatch, match="already holds a run.*--resume"):
        train("pose", mixtures["demo_pose"], tmp_path / "pose", init=ckpt, **short)
    rebuilt = build("demo_pose", None, data[0] / "out", tmp_path / "other", 0.5, fit=False)  # other split
    with pytest.raises(RunMismatch, match="cannot resume: mixture_hash"):
        train("pose", rebuilt, tmp_path / "pose", **{**short, "steps": 4})
    with pytest.raises(RunMismatch, match="cannot resume: .*preset"):
        train("pose", mixtures["demo_pose"], tmp_path / "pose", preset="small", **{**short, "steps": 4})


# --------------------------------------------------------------------- actions, well posed
def test_action_space_6d_rotations_round_trip_and_wrap():
    names = [*(f"cartesian_position.{k}" for k in ("x", "y", "z", "roll", "pitch", "yaw")), "gripper_position"]
    space = VectorSpace(tuple(names), (0.3, -0.3, 0.0, -3.1, -0.5, -3.1, 0.0), (0.7, 0.3, 0.4, 3.1, 0.5, 3.1, 1.0))
    assert space.euler == [3] and space.feature_dim == 3 + 6 + 1
    near_pi = np.array([[0.5, 0.0, 0.2, np.pi - 0.01, 0.1, 0.3, 0.5], [0.5, 0.0, 0.2, -np.pi + 0.01, 0.1, 0.3, 0.5]])
    features = space.encode(near_pi)
    assert np.abs(features[0] - features[1]).max() < 0.03  # 0.02 rad apart: close, not 2 pi apart
    np.testing.assert_allclose(space.squared_errors(space.decode(features), near_pi), 0, atol=1e-10)
    quantile = 2 * (near_pi[:, :3] - [0.3, -0.3, 0.0]) / [0.4, 0.6, 0.4] - 1  # openpi's quantile normalisation
    np.testing.assert_allclose(features[:, :3], quantile, atol=1e-5)
    assert space.squared_errors(near_pi[:1], near_pi[1:])[0, 3] == pytest.approx(0.02**2)


def test_action_expert_attends_to_prefix_tokens():
    """The expert reads every prefix token (cross-attention), not a pooled vector: changing one patch
    token changes the velocity, and which patch it is matters."""
    torch.manual_seed(0)
    model = PoseVLA(PRESETS["tiny"]).eval()
    prefix = torch.randn(1, 10, model.cfg.dim)
    context = model.context(prefix)
    assert context.shape == (1, 10, model.cfg.dim)
    noisy, t = torch.randn(1, model.cfg.chunk, model.cfg.action_dim), torch.full((1,), 0.5)
    moved = prefix.clone()
    moved[0, 3] += torch.randn(model.cfg.dim)  # not a constant: every block's LayerNorm would remove it
    with torch.no_grad():
        base = model.velocity(noisy, t, context)
        assert not torch.allclose(base, model.velocity(noisy, t, model.context(moved)))
    assert isinstance(model.expert, torch.nn.TransformerDecoder)
