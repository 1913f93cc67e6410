"""`neurino demo`: the main job — built-in data, NeurINO vs stock nnU-Net through nnU-Net's CLIs, evaluation.

See :mod:`nnunetv2_neurino.demo.pipeline` for the stages and the outputs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from nnunetv2_neurino.commands._options import add_device_option, add_json_option, resolve_device

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
    add_device_option(parser, "nnU-Net's -device for training and prediction")
    add_json_option(parser)
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the built-in data set and of both trainings (default 0)")
    parser.add_argument("--safety-seconds", type=float, default=None, metavar="S",
                        help="wall-clock safety stop per training (default 1800, --quick 600): a training "
                             "still running after S seconds stops at the next epoch and its table row is "
                             "marked 'stopped early — not comparable'")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (stage lines only)")


def _claim_work_dir(path: Path, force: bool) -> None:
    """Create ``path`` with the neurino marker, or accept an earlier demo folder (marker present) if --force.

    The demo's ``--force`` removes its own outputs inside the folder: allowed only in a folder the demo made.
    """
    from nnunetv2_neurino.errors import NeurinoError
    from nnunetv2_neurino.io_utils import OUTPUT_MARKER

    if path.exists() and not path.is_dir():
        raise NeurinoError(f"{path} exists and is not a folder: choose another folder with -o")
    marker = path / OUTPUT_MARKER
    if path.is_dir() and any(p.name != OUTPUT_MARKER for p in path.iterdir()):
        if not marker.is_file():
            raise NeurinoError(f"{path} is not empty and was not made by neurino demo (no {OUTPUT_MARKER} "
                               "file): the demo never deletes anything there; choose a new or empty "
                               "folder with -o")
        if not force:
            raise NeurinoError(f"{path} holds an earlier demo run: pass --force to replace the demo outputs "
                               "in it, or choose another folder with -o")
    path.mkdir(parents=True, exist_ok=True)
    marker.write_text("made by neurino demo; `neurino demo --force` may replace its outputs here\n",
                      encoding="utf-8")


#: Library parameter names -> this command's flags in its error messages (applied by ``cli.main``).
FLAGS = {"device": "--device"}


def run(args: argparse.Namespace) -> int:
    import sys

    from nnunetv2_neurino.commands._options import print_json
    from nnunetv2_neurino.demo.pipeline import run_demo, summary_dict

    _claim_work_dir(Path(args.output), args.force)
    # with --json, stage lines and tables go to stderr so that stdout is one JSON document
    echo = (lambda line: print(line, file=sys.stderr)) if args.json else print
    # force=True: the folder is new, empty but for the marker, or an earlier demo run the user lets us replace
    result = run_demo(args.output, quick=args.quick, force=True, device=resolve_device(args.device),
                      seed=args.seed, progress=not args.no_progress, echo=echo,
                      safety_seconds=args.safety_seconds)
    if args.json:
        print_json(summary_dict(result))          # what demo_summary.json holds
    # a case that failed to score is an error; a safety stop is not (its row says it is not comparable)
    return 1 if result.failed_cases else 0
