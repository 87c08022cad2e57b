"""Evaluate a checkpoint on a mixture split, in token space and decoded back to metric space.

    python -m model.evaluate --ckpt runs/pose/last.pt --mixture out/mixtures/demo_pose.json [--split val]

Token stages: teacher-forced token accuracy; greedy decoding from ``bos view_start`` of as many
poses as the ground truth has, each token restricted to its slot's family (the pose layout) and
chosen as the mode (default) or the expected value near the mode (``--decoding mean``), then
decoded with the codebook and compared pose by pose (in token order: objects near to far, then
ego, then waypoints) with the continuous ground truth: translation error [cm], depth error [cm], rotation
error [deg], waypoint translation error [cm]; and the best constant predictor (the mean first-pose
translation of the train split) for reference. Action stage: squared error of Euler-sampled action
chunks, de-normalised to the dataset's raw units (Euler angle differences wrapped), per dimension
and overall (mean over dimensions), over the valid steps, beside two baselines on the same samples:
``constant`` (the train split's mean target in the network's form, decoded: the best constant
output; for actions relative to the state, the mean offset from the current state) and
``repeat_last`` (the episode's previous action held for the whole chunk; the constant where a
sample has no previous frame). Rows longer than the model's token budget lose whole poses first, as
in training (:mod:`model.token_budget`; the ground truth compared with too), and the result counts
them (``tokens/rows_over_budget``, ``tokens/dropped_objects`` ...). Results are printed (a table) and
written as JSON. A checkpoint evaluated with another codebook than its own, or on a mixture of
another stage, is refused.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from model.actions import VectorSpace
from model.batches import model_inputs
from model.data import MixtureDataset, collate
from model.network import PoseVLA
from model.token_budget import WAYPOINT, describe, fit_samples, pose_kinds
from model.train import RunMismatch, action_context, config_from, load_checkpoint, resolve_mixture, run_info
from schemas.geometry import quat_to_matrix
from schemas.mixture import SPLITS, load_mixture
from schemas.tokenizer import Codebook, decode_view, default_codebook


def pose_slots(book: Codebook, poses) -> tuple[list[tuple[int, int]], list[str | None]]:
    """Token id ranges of the layout of ``poses`` (what ``encode_poses`` emits), each closed by
    ``sep``, and the family name of every slot (None for ``sep``)."""
    sep = book.special_id("sep")
    slots, names = [], []
    for pose in poses:
        layout = ["loc", "loc", "txy", "txy", "tz"] + ["size"] * 3 * (pose.size is not None) + ["rot"] * 3
        layout += ["grip"] * (pose.gripper is not None)
        slots += [(book.offsets[n], book.offsets[n] + book.family(n).n_bins) for n in layout] + [(sep, sep + 1)]
        names += [*layout, None]
    return slots, names


def expected_bin(book: Codebook, names: list[str | None], reach: int):
    """``choose`` for :meth:`PoseVLA.generate`: for interval families, the bin holding the expected
    value of the distribution restricted to ``reach`` bins either side of its mode (the width of
    the soft training targets); argmax for angles and ``sep``. The whole-range expected value would
    be dragged by the tails: on log-spaced depth bins reaching 100 m, 1 % of stray mass moves it by
    ~10 cm."""

    def choose(k: int, probs: torch.Tensor) -> torch.Tensor:
        name = names[k]
        mode = probs.argmax(-1, keepdim=True)
        if name is None or book.family(name).periodic or reach < 1:
            return mode
        fam = book.family(name)
        window = (mode + torch.arange(-reach, reach + 1)).clamp(0, fam.n_bins - 1)
        weights = probs.gather(-1, window).double()
        values = torch.from_numpy(fam.midpoints)[window]
        mean = (weights * values).sum(-1) / weights.sum(-1)
        return torch.from_numpy(fam.encode(mean.numpy()))[:, None]

    return choose


def rotation_deg(qa, qb) -> float:
    R = quat_to_matrix(np.asarray(qa)).T @ quat_to_matrix(np.asarray(qb))
    return float(np.degrees(np.arccos(np.clip((np.trace(R) - 1) / 2, -1, 1))))


def action_errors(model: PoseVLA, info: dict, mixture: Path, items: list[dict], batch_size: int, seed: int) -> dict:
    """Per-dimension and overall mean squared errors (raw units) of the model and the baselines."""
    state_space = VectorSpace.from_dict(info["state_space"]) if info["state_space"] else None
    space = VectorSpace.from_dict(info["action_space"])
    train = MixtureDataset(
        mixture, "train", seed=seed, chunk=model.cfg.chunk, image_size=model.cfg.image_size, pool_row_groups=None
    )
    drawn = [train.draw(0, 1, i) for i in range(256)]
    mean = np.concatenate(
        [space.encode(s["actions"][None], None if s["state"] is None else s["state"][None])[0][s["action_mask"] > 0]
         for s in drawn]
    ).mean(axis=0)  # the best constant output of the network: the train mean of its targets
    sums = {name: np.zeros(len(space.names)) for name in ("model", "constant", "repeat_last")}
    steps, missing = 0, 0
    gen = torch.Generator().manual_seed(seed)
    for i in range(0, len(items), batch_size):
        chunk_items = items[i : i + batch_size]
        batch = collate(chunk_items)
        x = model_inputs(batch, model.cfg, torch.device("cpu"))
        with torch.no_grad():
            context = action_context(model, batch, x, state_space, torch.device("cpu"))
        state = None if "state" not in batch else batch["state"].numpy()
        predicted = space.decode(model.sample_actions(context, generator=gen).numpy(), state)
        truth, mask = batch["actions"].numpy(), batch["action_mask"].numpy()
        constant = space.decode(np.broadcast_to(mean, (*truth.shape[:2], len(mean))), state)
        held = np.stack([c[0] if s["previous_action"] is None else s["previous_action"]
                         for c, s in zip(constant, chunk_items, strict=True)])
        missing += sum(s["previous_action"] is None for s in chunk_items)
        for name, guess in (
            ("model", predicted),
            ("constant", constant),
            ("repeat_last", np.broadcast_to(held[:, None], truth.shape)),
        ):
            sums[name] += (space.squared_errors(guess, truth) * mask[..., None]).sum(axis=(0, 1))
        steps += int(mask.sum())
    per_dim = {name: dict(zip(space.names, (v / steps).tolist(), strict=True)) for name, v in sums.items()}
    overall = {name: float(np.mean(list(v.values()))) for name, v in per_dim.items()}
    return {
        "action_mse": overall["model"],
        "action_mse_per_dim": per_dim["model"],
        "baselines": {
            name: {"action_mse": overall[name], "action_mse_per_dim": per_dim[name]}
            for name in ("constant", "repeat_last")
        },
        "repeat_last_without_previous": missing,
        "action_steps": steps,
    }


def action_table(result: dict) -> str:
    """Markdown table: per action dimension and overall, model beside the baselines."""
    rows = ["| dimension | model | constant (train mean) | repeat last action |", "|---|---|---|---|"]
    base = result["baselines"]
    for name, value in result["action_mse_per_dim"].items():
        rows.append(
            f"| {name} | {value:.5f} | {base['constant']['action_mse_per_dim'][name]:.5f} | "
            f"{base['repeat_last']['action_mse_per_dim'][name]:.5f} |"
        )
    rows.append(
        f"| **overall (mean)** | **{result['action_mse']:.5f}** | {base['constant']['action_mse']:.5f} | "
        f"{base['repeat_last']['action_mse']:.5f} |"
    )
    return "\n".join(rows)


def evaluate(
    ckpt: Path,
    mixture: Path,
    split: str = "val",
    samples: int = 64,
    batch_size: int = 16,
    codebook: Codebook | None = None,
    seed: int = 1,
    decoding: str = "argmax",
) -> dict:
    state = load_checkpoint(ckpt)
    cfg = config_from(state)
    info = run_info(state, ckpt)
    stage = info["stage"]
    book = codebook or default_codebook()
    if book.codebook_id != info["codebook_id"]:
        raise RunMismatch(
            f"{ckpt} was trained with codebook {info['codebook_id']}, not {book.codebook_id}: its tokens would be "
            f"decoded with the wrong bins; pass --codebook with the codebook it was trained with"
        )
    record = load_mixture(mixture)
    if record["stage"] != stage:
        raise RunMismatch(f"{ckpt} is a {stage}-stage checkpoint; {mixture} is a {record['stage']}-stage mixture")
    model = PoseVLA(cfg)
    model.load_state_dict(state["model"])
    model.eval()
    ds = MixtureDataset(
        mixture, split, book, seed=seed, chunk=cfg.chunk, image_size=cfg.image_size, pool_row_groups=None
    )
    # rows longer than the model's token budget lose whole poses, as in training: the ground truth too
    items, budget_counts = fit_samples([ds.draw(0, 1, i) for i in range(samples)], cfg.max_tokens, book)
    result: dict = {
        "checkpoint": str(ckpt),
        "stage": stage,
        "split": split,
        "samples": samples,
        "step": state["step"],
        "decoding": decoding,
        "mixture_hash_matches": record["content_hash"] == info["mixture_hash"],
        "token_budget": cfg.max_tokens,
        **budget_counts,
    }
    if stage == "action":
        result.update(action_errors(model, info, mixture, items, batch_size, seed))
        return result
    correct = total = 0
    pose_t, pose_z, pose_r, wp_t, first = [], [], [], [], []
    train = MixtureDataset(
        mixture, "train", book, seed=seed, chunk=cfg.chunk, image_size=cfg.image_size, pool_row_groups=None
    )
    train_first = np.array([s["poses"][0].t for s in (train.draw(0, 1, i) for i in range(256)) if s["poses"]])
    constant = train_first.mean(axis=0)
    baseline = []
    for i in range(0, samples, batch_size):
        chunk_items = items[i : i + batch_size]
        batch = collate(chunk_items)
        x = model_inputs(batch, cfg, torch.device("cpu"))
        with torch.no_grad():
            prefix = model.encode_prefix(x["images"], x["K"], x["text"])
            logits = model.token_logits(prefix, x["tokens"][:, :-1])
        mask = x["token_mask"][:, 1:]
        correct += int(((logits.argmax(-1) == x["tokens"][:, 1:]) & mask).sum())
        total += int(mask.sum())
        for j, item in enumerate(chunk_items):
            width, height = cfg.image_size
            truth = item["poses"]
            slots, names = pose_slots(book, truth)
            choose = expected_bin(book, names, round(4 * cfg.label_sigma)) if decoding == "mean" else None
            seq = model.generate(prefix[j : j + 1], x["tokens"][j : j + 1, :2], slots, choose)[0].tolist()
            predicted = decode_view(book, seq + [book.special_id("view_end"), book.special_id("eos")], width, height)
            if truth:
                baseline.append(100 * np.linalg.norm(constant - np.array(truth[0].t)))
            kinds = pose_kinds(truth)[0]
            for k, (p, g) in enumerate(zip(predicted, truth, strict=False)):
                err = 100 * np.linalg.norm(np.array(p.t) - np.array(g.t))
                (wp_t if kinds[k] == WAYPOINT else pose_t).append(err)
                pose_z.append(100 * abs(p.t[2] - g.t[2]))
                pose_r.append(rotation_deg(p.q, g.q))
                if k == 0:
                    first.append(err)

    def median(v):
        return float(np.median(v)) if v else None

    result.update(
        {
            "token_accuracy": correct / max(total, 1),
            "translation_error_cm": median(pose_t),
            "depth_error_cm": median(pose_z),
            "rotation_error_deg": median(pose_r),
            "waypoint_error_cm": median(wp_t),
            "first_pose_translation_error_cm": median(first),
            "constant_baseline_cm": median(baseline),
        }
    )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m model.evaluate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ckpt", type=Path, required=True)
    parser.add_argument("--mixture", required=True, help="mixture manifest path, or a name in out/mixtures/")
    parser.add_argument("--split", default="val", choices=SPLITS)
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--codebook", type=Path, help="codebook JSON the model was trained with")
    parser.add_argument(
        "--decoding",
        default="argmax",
        choices=("argmax", "mean"),
        help="per slot: the most likely bin (default), or the bin of the expected value within the soft-target "
        "width of the mode",
    )
    parser.add_argument("--out", type=Path, help="JSON file (default: <ckpt folder>/eval_<split>.json)")
    args = parser.parse_args(argv)
    try:
        result = evaluate(
            args.ckpt,
            resolve_mixture(args.mixture),
            args.split,
            args.samples,
            codebook=Codebook.load(args.codebook) if args.codebook else None,
            decoding=args.decoding,
        )
    except RunMismatch as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = args.out or args.ckpt.parent / f"eval_{args.split}.json"
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    print(describe(result, result["token_budget"]))
    if result["stage"] == "action":
        print(action_table(result))
    if not result["mixture_hash_matches"]:
        print("note: evaluated on another mixture (content hash) than the checkpoint was trained on")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
