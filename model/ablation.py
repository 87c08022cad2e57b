"""Pose-VLA's pretraining ablation in miniature: does action post-training initialised from the
stage-1 (pose) + stage-2 (trajectory) model reach a lower validation action error, at equal
steps, than the same post-training from scratch?

    python -m model.ablation --pose-mixture out/train/mixtures/demo_pose.json \\
        --trajectory-mixture out/train/mixtures/demo_trajectory.json \\
        --action-mixture out/train/mixtures/demo_action.json --out runs/ablation [--pose-ckpt CKPT]

Writes ``results.json`` and ``results.md`` (a table with seeds, steps and the errors).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from model.evaluate import evaluate
from model.train import train


def run(
    pose_mixture: Path,
    trajectory_mixture: Path,
    action_mixture: Path,
    out: Path,
    pose_steps: int,
    trajectory_steps: int,
    action_steps: int,
    seeds: list[int],
    pose_ckpt: Path | None = None,
    samples: int = 64,
) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    pose = pose_ckpt or train("pose", pose_mixture, out / "pose", pose_steps, progress=False)
    trajectory = train(
        "trajectory", trajectory_mixture, out / "trajectory", trajectory_steps, init=pose, progress=False
    )
    rows = []
    for seed in seeds:
        for variant, init in (("from stage 1+2", trajectory), ("from scratch", None)):
            ckpt = train(
                "action",
                action_mixture,
                out / f"action_{variant.replace(' ', '_')}_{seed}",
                action_steps,
                init=init,
                seed=seed,
                progress=False,
            )
            rows.append(
                {
                    "variant": variant,
                    "seed": seed,
                    "steps": action_steps,
                    "val_action_mse": evaluate(ckpt, action_mixture, "val", samples)["action_mse"],
                }
            )
    summary = {
        v: float(np.mean([r["val_action_mse"] for r in rows if r["variant"] == v]))
        for v in ("from stage 1+2", "from scratch")
    }
    result = {
        "pose_steps": pose_steps if pose_ckpt is None else "given",
        "trajectory_steps": trajectory_steps,
        "action_steps": action_steps,
        "seeds": seeds,
        "runs": rows,
        "mean_val_action_mse": summary,
    }
    (out / "results.json").write_text(json.dumps(result, indent=1))
    table = ["| initialisation | seed | action steps | val action MSE |", "|---|---|---|---|"]
    table += [f"| {r['variant']} | {r['seed']} | {r['steps']} | {r['val_action_mse']:.5f} |" for r in rows]
    table += [
        f"| **mean, {v}** | {', '.join(map(str, seeds))} | {action_steps} | **{m:.5f}** |" for v, m in summary.items()
    ]
    (out / "results.md").write_text("\n".join(table) + "\n")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m model.ablation", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pose-mixture", type=Path, required=True)
    parser.add_argument("--trajectory-mixture", type=Path, required=True)
    parser.add_argument("--action-mixture", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--pose-ckpt", type=Path, help="reuse a trained stage-1 checkpoint")
    parser.add_argument("--pose-steps", type=int, default=3000)
    parser.add_argument("--trajectory-steps", type=int, default=400)
    parser.add_argument("--action-steps", type=int, default=300)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = parser.parse_args(argv)
    result = run(
        args.pose_mixture,
        args.trajectory_mixture,
        args.action_mixture,
        args.out,
        args.pose_steps,
        args.trajectory_steps,
        args.action_steps,
        args.seeds,
        args.pose_ckpt,
    )
    print((args.out / "results.md").read_text())
    print(json.dumps(result["mean_val_action_mse"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
