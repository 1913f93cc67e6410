"""`neurino swc-distance A.swc B.swc`: ESA / DSA / PDS with Vaa3D ``neuron_distance`` semantics."""

from __future__ import annotations

import argparse
import math
import sys
import warnings

from nnunetv2_neurino.commands._options import add_json_option, add_renamed_option, print_json
from nnunetv2_neurino.errors import NeurinoError

NAME = "swc-distance"
HELP = "ESA / DSA / PDS between two SWC reconstructions (Vaa3D neuron_distance semantics)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("swc_1", help="first reconstruction (e.g. the traced one)")
    parser.add_argument("swc_2", help="second reconstruction (e.g. the gold standard)")
    add_renamed_option(parser, "--distance-threshold", "--threshold", type=float, default=2.0,
                       dest="threshold",
                       metavar="D", help="'different structure' distance, d >= D (default 2, SWC units)")
    parser.add_argument("--vaa3d-compat", action="store_true",
                        help="hang nodes whose parent is missing from the file from its first row, as "
                             "Vaa3D's parent lookup does, loops included (default: such nodes become roots)")
    add_json_option(parser)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from nnunetv2_neurino.metrics.neuron_distance import neuron_distance

    for name in (args.swc_1, args.swc_2):
        if Path(name).is_dir():
            raise NeurinoError(f"{name} is a folder; swc-distance compares two .swc files")
    if not (args.threshold >= 0 and math.isfinite(args.threshold)):
        raise NeurinoError(f"--distance-threshold must be a finite number >= 0, got {args.threshold}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = neuron_distance(args.swc_1, args.swc_2, threshold=args.threshold, vaa3d_compat=args.vaa3d_compat)
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    if args.json:
        print_json(r)
        return 0
    print(f"{'':6}{'1→2':>12}{'2→1':>12}{'combined':>12}")
    for m in ("ESA", "DSA", "PDS"):
        print(f"{m:6}{r[m + '12']:12.4f}{r[m + '21']:12.4f}{r[m]:12.4f}")
    print(f"samples: {r['n12']} / {r['n21']}, different (d >= {args.threshold:g}): "
          f"{r['n12big']} / {r['n21big']}")
    if r["flag"]:
        print(f"note: {r['flag']}")
    return 0
