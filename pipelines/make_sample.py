"""Write a synthetic sample dataset in a source's real on-disk layout.

    python -m pipelines.make_sample --dataset droid --out /tmp/droid_sample [--episodes 8] [--steps 100] [--seed 0]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from pipelines.samples import COMPLETE_MARKER, SAMPLES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.make_sample", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, choices=sorted(SAMPLES), help="which source format to write")
    parser.add_argument("--out", required=True, type=Path, help="folder to write (replaced if it exists)")
    parser.add_argument("--episodes", type=int, default=8, help="number of episodes (default 8)")
    parser.add_argument("--steps", type=int, default=100, help="steps per episode (default 100 = 6.7 s at 15 Hz)")
    parser.add_argument("--episodes-per-shard", type=int, default=2, help="episodes per source shard file")
    parser.add_argument("--seed", type=int, default=0, help="world seed; same seed, same bytes")
    args = parser.parse_args(argv)
    shutil.rmtree(args.out, ignore_errors=True)
    SAMPLES[args.dataset](args.out, seed=args.seed, num_episodes=args.episodes, num_steps=args.steps,
                          episodes_per_shard=args.episodes_per_shard)
    (args.out / COMPLETE_MARKER).write_text(f"seed={args.seed}\n")
    print(f"wrote a {args.episodes}-episode {args.dataset} sample to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
