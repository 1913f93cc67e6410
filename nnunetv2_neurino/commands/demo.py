"""`neurino demo`: the main job — built-in data, NeurINO vs stock nnU-Net through nnU-Net's CLIs, evaluation.

See :mod:`nnunetv2_neurino.demo.pipeline` for the stages and the outputs.
"""

from __future__ import annotations

import argparse

NAME = "demo"
HELP = ("build the built-in neuron data set, train NeurINO and stock nnU-Net on it for the same fixed "
        "number of iterations through nnU-Net's own CLIs, predict, trace, evaluate and print the comparison "
        "table (2 CPU cores: ≤ 15 min, --quick ≤ 5 min)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", default="neurino_demo",
                        help="work folder for data, nnU-Net runs, predictions, evaluations, tables and "
                             "figures (default ./neurino_demo; must be empty or absent unless --force)")
    parser.add_argument("--quick", action="store_true",
                        help="smaller data set and shorter training (about 5 minutes on 2 CPU cores)")
    parser.add_argument("--force", action="store_true",
                        help="reuse a non-empty work folder, replacing the demo's own outputs in it")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="nnU-Net's -device (default: cuda when available, else cpu)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the built-in data set and of both trainings (default 0)")
    parser.add_argument("--safety-seconds", type=float, default=None, metavar="S",
                        help="wall-clock safety stop per training (default 1800, --quick 600): a training "
                             "still running after S seconds stops at the next epoch and its table row is "
                             "marked 'stopped early — not comparable'")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (stage lines only)")


def run(args: argparse.Namespace) -> int:
    from nnunetv2_neurino.demo.pipeline import run_demo

    result = run_demo(args.output, quick=args.quick, force=args.force, device=args.device, seed=args.seed,
                      progress=not args.no_progress, safety_seconds=args.safety_seconds)
    # a case that failed to score is an error; a safety stop is not (its row says it is not comparable)
    return 1 if result.failed_cases else 0
