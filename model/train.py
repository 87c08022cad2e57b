"""Train the model on a mixture: stage ``pose`` (object pose tokens), ``trajectory`` (end-effector /
hand waypoint tokens) or ``action`` (flow-matching action chunks).

    python -m model.train --stage pose --mixture out/mixtures/demo_pose.json --steps 3000 --out runs/pose
    python -m model.train --stage action --mixture ... --init runs/trajectory/last.pt --out runs/action

AdamW with linear warmup and cosine decay, gradient clipping at 1.0, bf16 autocast on CUDA when
available (CPU float32 otherwise). Checkpoints (``torch.save`` of tensors and plain containers,
loaded with ``weights_only=True``) hold the model, optimiser, schedule, step and RNG state;
re-running with the same ``--out`` resumes exactly (same losses as an uninterrupted run).
A checkpoint records what it was trained for (:data:`RUN_KEYS`: stage, mixture and its content
hash, codebook id, preset and its token budget, and the state / action spaces of :mod:`model.actions`);
resuming a run folder with another stage, mixture, codebook, preset or budget is refused, and so is
``--init`` into a folder that already holds a run, unless ``--resume`` says to continue it. Rows
longer than the preset's token budget drop whole poses (:mod:`model.token_budget`). Metrics go to
``metrics.jsonl`` (loss, learning rate, and per step the ``tokens/*`` counters: rows, rows over the
budget, poses dropped per kind) and ``loss_curve.png``.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
from tqdm import tqdm

from model.actions import VectorSpace, fit_relative, spaces_of
from model.batches import model_inputs, token_bins, vector_features
from model.batching import MixtureBatches
from model.data import MixtureDataset, require
from model.network import PRESETS, ModelConfig, PoseVLA, soft_token_loss
from model.token_budget import COUNTERS, describe
from schemas.mixture import load_mixture
from schemas.tokenizer import Codebook, default_codebook

STAGES = ("pose", "trajectory", "action")
# Peak learning rate per stage (``--lr`` overrides): stage 1 from scratch needs the larger one to
# leave its plateau within a few thousand steps (docs/training.md); later stages start from weights.
STAGE_LR = {"pose": 1e-3, "trajectory": 3e-4, "action": 3e-4}
CHECKPOINT = "last.pt"
RUN_KEYS = ("stage", "mixture_hash", "codebook_id", "preset", "token_budget")  # must match to resume


class RunMismatch(ValueError):
    """A checkpoint used with a stage, mixture, codebook or preset it was not trained for."""


def resolve_mixture(name_or_path: str) -> Path:
    path = Path(name_or_path)
    return path if path.suffix == ".json" else Path("out/mixtures") / f"{name_or_path}.json"


def save_checkpoint(path: Path, model, optim, sched, step: int, cfg: ModelConfig, extra: dict) -> None:
    state = {
        "model": model.state_dict(),
        "optim": optim.state_dict(),
        "sched": sched.state_dict(),
        "step": step,
        "config": json.dumps(cfg.to_dict()),
        "torch_rng": torch.get_rng_state(),
        "extra": json.dumps(extra),
    }
    tmp = path.with_name(f".{path.name}.partial")
    torch.save(state, tmp)
    tmp.replace(path)


def load_checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def run_info(state: dict, path: Path) -> dict:
    """What a checkpoint was trained for (its ``extra``: stage, mixture, mixture_hash, codebook_id,
    preset, token_budget, state_space, action_space). Checkpoints written before the token budget
    was recorded have the one of their config."""
    info = json.loads(state["extra"])
    if "codebook_id" not in info:
        raise RunMismatch(f"{path}: written before checkpoints recorded their codebook and mixture; retrain it")
    info.setdefault("token_budget", json.loads(state["config"])["max_tokens"])
    return info


def check_run(info: dict, expected: dict, what: str, path: Path, keys=RUN_KEYS) -> None:
    """Refuse ``what`` (e.g. "resume") when the checkpoint's ``keys`` differ from ``expected``."""
    diff = {k: (info.get(k), expected[k]) for k in keys if info.get(k) != expected[k]}
    if diff:
        lines = "; ".join(f"{k}: checkpoint {a!r}, now {b!r}" for k, (a, b) in diff.items())
        raise RunMismatch(f"{path}: cannot {what}: {lines}")


def load_matching(model: PoseVLA, weights: dict) -> list[str]:
    """Load the tensors of ``weights`` whose name and shape the model has (e.g. a trajectory-stage
    checkpoint into an action model whose state / action layers differ); returns the names left out."""
    own = model.state_dict()
    kept = {k: v for k, v in weights.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(kept, strict=False)
    return sorted(set(own) - set(kept))


def config_from(state: dict) -> ModelConfig:
    d = json.loads(state["config"])
    d["image_size"] = tuple(d["image_size"])
    return ModelConfig(**d)


def action_context(
    model: PoseVLA, batch: dict, x: dict, state_space: VectorSpace | None, device: torch.device
) -> torch.Tensor:
    """What the action expert attends to: the prefix token states (+ the state token)."""
    prefix = model.encode_prefix(x["images"], x["K"], x["text"])
    state = vector_features(state_space, require(batch, "state") if state_space is not None else None)
    return model.context(prefix, None if state is None else state.to(device))


def stage_loss(
    model: PoseVLA,
    stage: str,
    batch: dict,
    families: torch.Tensor,
    spaces: tuple[VectorSpace | None, VectorSpace | None],
    device: torch.device,
) -> torch.Tensor:
    x = model_inputs(batch, model.cfg, device)
    if stage == "action":
        state = require(batch, "state") if spaces[0] is not None else None
        actions = vector_features(spaces[1], require(batch, "actions"), state).to(device)
        context = action_context(model, batch, x, spaces[0], device)
        return model.flow_loss(context, actions, batch["action_mask"].to(device))
    prefix = model.encode_prefix(x["images"], x["K"], x["text"])
    logits = model.token_logits(prefix, x["tokens"][:, :-1])
    return soft_token_loss(
        logits, x["tokens"][:, 1:], x["token_mask"][:, 1:].float(), families.to(device), model.cfg.label_sigma
    )


def lr_at(step: int, total: int, warmup: int, peak: float) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def plot_losses(out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], lw=1)
    ax.set(xlabel="step", ylabel="loss", title=out.name, yscale="log")
    fig.tight_layout()
    fig.savefig(out / "loss_curve.png", dpi=80)
    plt.close(fig)


def train(
    stage: str,
    mixture: Path,
    out: Path,
    steps: int,
    preset: str = "tiny",
    init: Path | None = None,
    batch_size: int = 16,
    lr: float | None = None,
    warmup: int = 100,
    seed: int = 0,
    save_every: int = 200,
    stop_after: int | None = None,
    codebook: Codebook | None = None,
    progress: bool = True,
    label_sigma: float | None = None,
    resume: bool = False,
) -> Path:
    """Train (or resume) and return the checkpoint path. ``stop_after`` ends early, as a crash would.
    A run folder that holds a checkpoint is resumed when it was trained for the same stage, mixture
    (content hash), codebook, preset and token budget; with ``init`` only when ``resume`` is set."""
    lr = STAGE_LR[stage] if lr is None else lr
    record = load_mixture(mixture)
    book = codebook or default_codebook()
    ckpt = out / CHECKPOINT
    spaces = spaces_of(record) if stage == "action" else (None, None)
    if spaces[0] is not None and spaces[1] is not None:  # actions learned relative to the state
        spaces = (spaces[0], fit_relative(spaces[1], spaces[0], record, PRESETS[preset].chunk))
    info = {
        "stage": stage,
        "mixture": str(mixture),
        "mixture_name": record["mixture"],
        "mixture_hash": record["content_hash"],
        "codebook_id": book.codebook_id,
        "preset": preset,
        "token_budget": PRESETS[preset].max_tokens,
        "state_space": None if spaces[0] is None else spaces[0].to_dict(),
        "action_space": None if spaces[1] is None else spaces[1].to_dict(),
    }
    if stage != record["stage"]:
        raise RunMismatch(f"{mixture}: a {record['stage']}-stage mixture, not one for stage {stage!r}")
    previous = load_checkpoint(ckpt) if ckpt.is_file() else None
    if previous is not None:
        if init is not None and not resume:
            raise RunMismatch(
                f"{out} already holds a run (step {int(previous['step'])}); --init would be ignored. Pass --resume "
                f"to continue that run, or choose a new --out"
            )
        check_run(run_info(previous, ckpt), info, "resume", ckpt)
    out.mkdir(parents=True, exist_ok=True)
    cfg = config_from(previous) if previous else PRESETS[preset]
    if previous is None:
        cfg = replace(
            cfg,
            label_sigma=cfg.label_sigma if label_sigma is None else label_sigma,
            action_dim=cfg.action_dim if spaces[1] is None else spaces[1].feature_dim,
            state_dim=0 if spaces[0] is None else spaces[0].feature_dim,
        )
    if book.vocab_size != cfg.vocab_size:
        raise ValueError(f"codebook vocabulary {book.vocab_size} != model vocabulary {cfg.vocab_size}")
    torch.manual_seed(seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    families, positions = token_bins(book)
    model = PoseVLA(cfg)
    if cfg.ordinal_tokens:
        model.init_ordinal_tokens(families, positions)
    model = model.to(device)
    if init is not None and previous is None:
        start = load_checkpoint(init)
        check_run(run_info(start, init), info, "initialise from it", init, keys=("codebook_id",))
        left_out = load_matching(model, start["model"])
        if left_out and progress:
            print(f"initialised from {init}; new (not in it or other shape): {', '.join(left_out)}")
    optim = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(optim, lambda s: lr_at(s, steps, warmup, lr) / lr)
    step = 0
    if previous:
        model.load_state_dict(previous["model"])
        optim.load_state_dict(previous["optim"])
        sched.load_state_dict(previous["sched"])
        step = int(previous["step"])
    dataset = MixtureDataset(mixture, "train", book, seed=seed, chunk=cfg.chunk, image_size=cfg.image_size)
    dataset.load_state_dict({"seed": seed, "split": "train", "next_index": step * batch_size})
    # one worker overlaps decoding with compute; its draws equal those of the main process (worker 0 of 1);
    # whole poses are dropped past the token budget, counted per batch
    batches = iter(MixtureBatches(dataset, batch_size, budget=cfg.max_tokens).loader(num_workers=1))
    if previous:  # after the iterator: creating it draws a worker seed from the global RNG
        torch.set_rng_state(previous["torch_rng"])
    log = out / "metrics.jsonl"
    if log.is_file():  # drop rows logged after the checkpoint: those steps run again
        kept = [line for line in log.read_text().splitlines() if json.loads(line)["step"] <= step]
        log.write_text("".join(line + "\n" for line in kept))
    metrics = log.open("a")
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)
    )
    model.train()
    bar = tqdm(total=steps, initial=step, desc=f"train {stage}", disable=not progress)
    started = time.perf_counter()
    while step < steps and (stop_after is None or step < stop_after):
        batch = next(batches)
        with autocast:
            loss = stage_loss(model, stage, batch, families, spaces, device)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optim.step()
        sched.step()
        step += 1
        metrics.write(
            json.dumps(
                {
                    "step": step,
                    "loss": loss.item(),
                    "lr": sched.get_last_lr()[0],
                    "seconds": round(time.perf_counter() - started, 3),
                    **batch["token_budget"],
                }
            )
            + "\n"
        )
        metrics.flush()
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}")
        if step % save_every == 0 or step == steps:
            save_checkpoint(ckpt, model, optim, sched, step, cfg, info)
    bar.close()
    metrics.close()
    del batches  # stop its worker now: a later DataLoader's fork must not inherit this iterator
    gc.collect()
    plot_losses(out)
    if progress:
        print(describe(logged_counts(log), cfg.max_tokens))
    return ckpt


def logged_counts(log: Path) -> dict[str, int]:
    """The token-budget counters (:data:`model.token_budget.COUNTERS`) summed over a run's ``metrics.jsonl``."""
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    return {key: sum(r.get(key, 0) for r in rows) for key in COUNTERS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m model.train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stage", required=True, choices=STAGES)
    parser.add_argument("--mixture", required=True, help="mixture manifest path, or a name in out/mixtures/")
    parser.add_argument("--out", type=Path, required=True, help="run folder (re-use it to resume)")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--init", type=Path, help="start from this checkpoint's weights (e.g. the previous stage)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run already in --out (needed when --init is given too)")
    parser.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, help=f"peak learning rate (default per stage: {STAGE_LR})")
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save-every", type=int, default=200)
    parser.add_argument("--codebook", type=Path, help="codebook JSON (default posetok-v1)")
    parser.add_argument("--label-sigma", type=float,
                        help="width in bins of the soft targets over neighbouring bins (default: the preset's)")
    args = parser.parse_args(argv)
    try:
        ckpt = run(args)
    except RunMismatch as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"checkpoint {ckpt}\nmetrics {args.out / 'metrics.jsonl'}\nloss curve {args.out / 'loss_curve.png'}")
    return 0


def run(args: argparse.Namespace) -> Path:
    return train(
        args.stage,
        resolve_mixture(args.mixture),
        args.out,
        args.steps,
        args.preset,
        args.init,
        args.batch_size,
        args.lr,
        args.warmup,
        args.seed,
        args.save_every,
        codebook=Codebook.load(args.codebook) if args.codebook else None,
        label_sigma=args.label_sigma,
        resume=args.resume,
    )


if __name__ == "__main__":
    raise SystemExit(main())
