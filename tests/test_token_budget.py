"""The token budget: rows longer than the model's ``max_tokens`` lose whole poses by the documented
priority (far objects, then late waypoints, then ego), stay decodable, and every cut is counted."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from model.batches import model_inputs
from model.data import collate
from model.evaluate import evaluate
from model.network import PRESETS, ModelConfig
from model.token_budget import EGO, OBJECT, WAYPOINT, BudgetCollate, fit_sample, fit_tokens, pose_kinds
from model.train import RunMismatch, check_run, load_checkpoint, run_info, train
from schemas.geometry import intrinsics_matrix
from schemas.record import ego_item, object_item, waypoint_item
from schemas.tokenizer import decode_view, default_codebook, poses_of_row, row_tokens
from tests.test_mixture import data  # noqa: F401  (module fixture: converted samples + mixtures)

BOOK = default_codebook()
W, H = 320, 240
K = intrinsics_matrix(260.0, 260.0, (W - 1) / 2, (H - 1) / 2)
Q = [1.0, 0.0, 0.0, 0.0]
OFFSETS = (3, 6, 9, 12, 15)  # 5 waypoints per arm: the RoboTwin / AgiBot horizon


def row(objects=(), hands=("left_arm", "right_arm"), gripper: float | None = 0.5) -> dict:
    """A record row (schema v1 pose columns) built with the record helpers: objects at the given
    camera-frame depths [m], and per end-effector its pose now plus waypoints at :data:`OFFSETS`."""
    objs = [object_item(f"box{i}", str(i), [0.02 * (i % 5) - 0.04, 0.01, z], Q, [0.1, 0.1, 0.1], K, W, H)
            for i, z in enumerate(objects)]
    ego = [ego_item(name, [0.1 * (j - 0.5), 0.05, 0.6], Q, K, W, H, gripper=gripper) for j, name in enumerate(hands)]
    waypoints = [waypoint_item(name, o, o / 15, [0.1 * (j - 0.5), 0.05 - 0.005 * o, 0.6], Q, K, W, H, gripper=gripper)
                 for j, name in enumerate(hands) for o in OFFSETS]
    return {"objects": objs, "ego": ego, "waypoints": waypoints, "width": W, "height": H}


def sample(r: dict) -> dict:
    """What ``MixtureDataset.draw`` yields for a one-view row (the keys ``collate`` reads)."""
    return {"dataset": "d", "sample_id": "s", "views": ["v"], "images": np.zeros((1, 8, 8, 3), np.uint8),
            "K": K[None], "instruction": [], "tokens": [np.array(row_tokens(BOOK, r))], "poses": poses_of_row(r)}


def labels(poses) -> list[str]:
    return [p.label for p in poses]


def test_bimanual_row_fits_every_preset_untouched():
    bimanual = row()
    tokens = np.array(row_tokens(BOOK, bimanual))
    assert tokens.size == 124  # 2 arms x (now + 5 waypoints) x (9 tokens + sep) + 4
    two_hands = row(hands=("left_hand", "right_hand"), gripper=None)
    assert len(row_tokens(BOOK, two_hands)) == 112  # hands: no gripper token
    assert ModelConfig().max_tokens >= 124
    for preset in PRESETS.values():
        fitted, kept = fit_tokens(tokens, *pose_kinds(poses_of_row(bimanual)), preset.max_tokens, BOOK)
        assert np.array_equal(fitted, tokens) and kept.all()


def test_row_under_budget_is_unchanged_and_counted():
    s = sample(row(objects=(0.8, 1.2), hands=()))
    fitted, counts = fit_sample(s, 128, BOOK)
    assert fitted is s
    assert counts == {"tokens/rows": 1, "tokens/rows_over_budget": 0, "tokens/dropped_objects": 0,
                      "tokens/dropped_ego": 0, "tokens/dropped_waypoints": 0}


def test_crowded_scene_drops_the_farthest_objects_and_still_decodes():
    depths = [2.9, 0.7, 1.9, 3.4, 0.9, 1.1, 2.3, 1.5, 0.8, 2.6, 1.3, 3.1, 1.0, 1.7]  # 14 objects: 172 tokens
    s = sample(row(objects=depths, hands=()))
    tokens = s["tokens"][0]
    assert tokens.size == 4 + 14 * 12
    fitted, counts = fit_sample(s, 128, BOOK)
    out = fitted["tokens"][0]
    assert out.size <= 128
    kept_depths = sorted(p.t[2] for p in fitted["poses"])
    assert kept_depths == sorted(depths)[:10]  # the 4 farthest went, the 10 nearest stay in order
    assert np.array_equal(out, np.r_[tokens[: 2 + 10 * 12], tokens[-2:]])  # whole poses, never a cut one
    decoded = decode_view(BOOK, out.tolist(), W, H)
    assert len(decoded) == 10 and np.allclose([p.t[2] for p in decoded], kept_depths, rtol=0.01)
    assert counts["tokens/rows_over_budget"] == 1 and counts["tokens/dropped_objects"] == 4
    assert counts["tokens/dropped_waypoints"] == counts["tokens/dropped_ego"] == 0


def test_waypoints_drop_after_objects_latest_first():
    s = sample(row(objects=(0.5, 2.0)))  # 2 objects (24) + bimanual (120) + 4 = 148 tokens
    assert s["tokens"][0].size == 148
    fitted, counts = fit_sample(s, 148 - 34, BOOK)  # 34 over: both objects (24), then ONE waypoint (10)
    assert "right arm 15" not in labels(fitted["poses"])  # the latest; at one offset the later in the sequence
    assert "left arm 15" in labels(fitted["poses"])
    assert counts["tokens/dropped_objects"] == 2 and counts["tokens/dropped_waypoints"] == 1
    fitted, counts = fit_sample(s, 4 + 2 * 10 + 4 * 10, BOOK)  # room for both arms now + 2 waypoints each
    kept = ["left arm", "right arm", "left arm 3", "left arm 6", "right arm 3", "right arm 6"]
    assert labels(fitted["poses"]) == kept
    assert counts["tokens/dropped_waypoints"] == 6 and counts["tokens/dropped_ego"] == 0
    assert len(decode_view(BOOK, fitted["tokens"][0].tolist(), W, H)) == 6


def test_hand_waypoints_and_ego_are_told_apart():
    poses = poses_of_row(row(objects=(1.0,), hands=("left_hand", "right_hand"), gripper=None))
    kind, depth, offset = pose_kinds(poses)
    assert kind.tolist() == [OBJECT, EGO, EGO, *[WAYPOINT] * 10]
    assert offset.tolist() == [0, 0, 0, *OFFSETS, *OFFSETS] and depth[0] == pytest.approx(1.0)


def test_a_budget_smaller_than_every_pose_leaves_an_empty_view():
    s = sample(row(objects=(1.0, 2.0), hands=("arm",)))
    fitted, counts = fit_sample(s, 5, BOOK)
    names = ("bos", "view_start", "no_object", "view_end", "eos")
    assert fitted["tokens"][0].tolist() == [BOOK.special_id(n) for n in names]
    assert fitted["poses"] == [] and decode_view(BOOK, fitted["tokens"][0].tolist(), W, H) == []
    assert (counts["tokens/dropped_objects"], counts["tokens/dropped_ego"], counts["tokens/dropped_waypoints"]) == (
        2, 1, 5)
    with pytest.raises(ValueError, match="cannot hold even an empty view"):
        fit_sample(s, 4, BOOK)


def test_collate_fits_the_batch_and_model_inputs_refuses_a_longer_one():
    samples = [sample(row(objects=(0.5, 2.0))), sample(row(hands=()))]
    cfg = replace(PRESETS["tiny"], max_tokens=100)
    batch = BudgetCollate(cfg.max_tokens, BOOK)(samples)
    assert batch["tokens"].shape[1] <= 100 and batch["token_budget"]["tokens/rows_over_budget"] == 1
    assert batch["token_budget"]["tokens/rows"] == 2 and batch["token_budget"]["tokens/dropped_objects"] == 2
    assert model_inputs(batch, cfg, torch.device("cpu"))["tokens"].shape == batch["tokens"].shape
    with pytest.raises(ValueError, match="exceed the model's budget of 100"):  # no silent cut inside a pose
        model_inputs(collate(samples), cfg, torch.device("cpu"))


def test_checkpoint_budget_is_part_of_the_run():
    extra = {"stage": "pose", "mixture_hash": "h", "codebook_id": BOOK.codebook_id, "preset": "tiny"}
    state = {"extra": json.dumps(extra), "config": json.dumps(replace(ModelConfig(), max_tokens=72).to_dict())}
    info = run_info(state, "old.pt")  # written before checkpoints recorded the budget: its config's
    assert info["token_budget"] == 72
    with pytest.raises(RunMismatch, match="token_budget: checkpoint 72, now 128"):
        check_run(info, {**extra, "token_budget": 128}, "resume", "old.pt")


def test_training_and_evaluation_count_the_cuts(data, tmp_path, monkeypatch):  # noqa: F811
    _, mixtures = data
    monkeypatch.setitem(PRESETS, "tiny", replace(PRESETS["tiny"], max_tokens=16))  # one object at most
    short = dict(steps=2, batch_size=4, warmup=1, save_every=2, progress=False)
    ckpt = train("pose", mixtures["demo_pose"], tmp_path / "pose", **short)
    assert json.loads(load_checkpoint(ckpt)["extra"])["token_budget"] == 16
    logged = [json.loads(line) for line in (tmp_path / "pose/metrics.jsonl").read_text().splitlines()]
    assert all(r["tokens/rows"] == 4 for r in logged)
    assert sum(r["tokens/rows_over_budget"] for r in logged) > 0
    assert sum(r["tokens/dropped_objects"] for r in logged) >= sum(r["tokens/rows_over_budget"] for r in logged)
    result = evaluate(ckpt, mixtures["demo_pose"], split="val", samples=4, batch_size=4)
    assert result["token_budget"] == 16 and result["tokens/rows"] == 4
    assert result["tokens/dropped_objects"] >= result["tokens/rows_over_budget"]
    monkeypatch.undo()  # the preset's budget changed: the run cannot be resumed under its name
    with pytest.raises(RunMismatch, match="token_budget: checkpoint 16, now 128"):
        train("pose", mixtures["demo_pose"], tmp_path / "pose", **{**short, "steps": 4})
