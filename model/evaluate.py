"""Evaluate a checkpoint on a mixture split, in token space and decoded back to metric space.

    python -m model.evaluate --ckpt runs/pose/last.pt --mixture out/mixtures/demo_pose.json [--split val]

Token stages: teacher-forced token accuracy; greedy decoding from ``bos view_start`` of as many
poses as the ground truth has, each token restricted to its slot's family (the pose layout) and
chosen as the mode (default) or the expected value near the mode (``--decoding mean``), then
decoded with the codebook and compared pose by pose (in token order: objects near to far, then
ego, then waypoints) with the continuous ground truth: translation error [cm], depth error [cm], rotation
error [deg], waypoint translation error [cm]; and the best constant predictor (the mean first-pose
translation of the train split) for reference. Action stage: MSE of Euler-sampled action chunks
(raw units, valid steps). Results are printed and written as JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from model.batches import ActionNormalizer, model_inputs
from model.data import MixtureDataset, collate
from model.network import PoseVLA
from model.train import config_from, load_checkpoint, resolve_mixture
from schemas.geometry import quat_to_matrix
from schemas.mixture import load_mixture
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
    stage = json.loads(state["extra"])["stage"]
    model = PoseVLA(cfg)
    model.load_state_dict(state["model"])
    model.eval()
    book = codebook or default_codebook()
    ds = MixtureDataset(
        mixture, split, book, seed=seed, chunk=cfg.chunk, image_size=cfg.image_size, pool_row_groups=None
    )
    items = [ds.draw(0, 1, i) for i in range(samples)]
    result: dict = {
        "checkpoint": str(ckpt),
        "stage": stage,
        "split": split,
        "samples": samples,
        "step": state["step"],
        "decoding": decoding,
    }
    if stage == "action":
        normalizer = ActionNormalizer.from_mixture(load_mixture(mixture))
        errors = []
        gen = torch.Generator().manual_seed(seed)
        for i in range(0, samples, batch_size):
            batch = collate(items[i : i + batch_size])
            x = model_inputs(batch, cfg, torch.device("cpu"))
            pred = model.sample_actions(
                model.context(model.encode_prefix(x["images"], x["K"], x["text"])), generator=gen
            )
            pred = normalizer.denormalize(batch["dataset"], pred)
            err = ((pred - batch["actions"]) ** 2).mean(-1)
            errors.append(float((err * batch["action_mask"]).sum() / batch["action_mask"].sum()))
        result["action_mse"] = float(np.mean(errors))
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
            for k, (p, g) in enumerate(zip(predicted, truth, strict=False)):
                err = 100 * np.linalg.norm(np.array(p.t) - np.array(g.t))
                waypoint = g.size is None and g.label.split()[-1].isdigit()  # "left arm 15": offset in steps
                (wp_t if waypoint else pose_t).append(err)
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
    parser.add_argument("--split", default="val", choices=("train", "val"))
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
    result = evaluate(
        args.ckpt,
        resolve_mixture(args.mixture),
        args.split,
        args.samples,
        codebook=Codebook.load(args.codebook) if args.codebook else None,
        decoding=args.decoding,
    )
    out = args.out or args.ckpt.parent / f"eval_{args.split}.json"
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
