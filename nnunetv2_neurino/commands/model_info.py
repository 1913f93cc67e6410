"""`neurino model-info`: parameters and GFLOPs of every registered architecture (the paper's table 11).

Fields per architecture (JSON keys):

* ``params`` — parameters with a 1-channel input stem.
* ``params_rgb_stem`` — parameters with a 3-channel (RGB) stem, the paper's count for the DINOv3-inflated
  NeurINO models; ``null`` for MedNeXt, which has no pretrained RGB stem (its paper count is the 1-channel
  one).
* ``gflops`` — conv + linear multiply-adds (one multiply-add = one FLOP, fvcore's convention) of one forward
  pass on a ``1 × 1 × Z × Y × X`` patch in eval mode with deep supervision on: the implementation-independent
  target for the paper's table 11 (docs/benchmarks.md). Counted on meta tensors (instant).
* ``gflops_fvcore_total`` — fvcore ``FlopCountAnalysis``'s total of a real forward pass (norms included;
  seconds per model at 64³); ``null`` with ``--no-fvcore``.
"""

from __future__ import annotations

import argparse
import sys

import torch
from tqdm import tqdm

from nnunetv2_neurino.commands._options import add_json_option, print_json
from nnunetv2_neurino.errors import NeurinoError
from nnunetv2_neurino.networks.complexity import conv_linear_gflops, count_parameters, fvcore_gflops
from nnunetv2_neurino.networks.registry import ARCHITECTURES, Architecture, get_architecture

NAME = "model-info"
HELP = "parameters and GFLOPs (conv+linear, fvcore total) of the registered networks (the paper's table 11)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_json_option(parser)
    parser.add_argument("--patch", nargs=3, type=int, default=[64, 64, 64], metavar=("Z", "Y", "X"),
                        help="input patch in voxels (default 64 64 64, the paper's)")
    parser.add_argument("--arch", action="append", metavar="NAME",
                        help="only these architectures (repeatable; default all: "
                             f"{', '.join(ARCHITECTURES)})")
    parser.add_argument("--no-fvcore", action="store_true",
                        help="skip fvcore's traced total (gflops_fvcore_total = null); the rest is instant")


def _meta_build(arch: Architecture, in_channels: int) -> torch.nn.Module:
    with torch.device("meta"):
        return arch.build(in_channels)


def model_info(arch: Architecture, patch: tuple[int, int, int], fvcore: bool = True) -> dict[str, object]:
    """Counts of one architecture; see the module docstring for the fields.

    Raises NeurinoError when ``patch`` is not divisible by the network's total stride.
    """
    net = _meta_build(arch, 1)
    stride = tuple(net.total_stride)
    if any(p % s for p, s in zip(patch, stride)):
        raise NeurinoError(f"--patch {' '.join(map(str, patch))}: {arch.name} needs every axis divisible by "
                           f"its total stride {' '.join(map(str, stride))} (z y x)")
    info: dict[str, object] = {
        "params": count_parameters(net),
        "params_rgb_stem": count_parameters(_meta_build(arch, 3)) if arch.rgb_stem else None,
        "gflops": round(conv_linear_gflops(net, patch), 4),
        "gflops_fvcore_total": None,
    }
    if fvcore:
        info["gflops_fvcore_total"] = round(float(fvcore_gflops(arch.build(1), patch)["total"]), 4)
    return info


def format_table(results: dict[str, dict[str, object]], patch: tuple[int, int, int]) -> str:
    """A fixed-width text table of :func:`model_info` results."""
    def num(v, fmt):
        return "–" if v is None else format(v, fmt)

    head = ["model", "params", "params (RGB stem)", "GFLOPs conv+linear", "GFLOPs fvcore total"]
    rows = [[name, num(r["params"], ","), num(r["params_rgb_stem"], ","), num(r["gflops"], ".2f"),
             num(r["gflops_fvcore_total"], ".2f")] for name, r in results.items()]
    widths = [max(len(str(row[i])) for row in [head, *rows]) for i in range(len(head))]
    lines = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(row, widths)))
             for row in [head, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append(f"patch 1x1x{patch[0]}x{patch[1]}x{patch[2]}, eval, deep supervision on, 2 classes; "
                 "1 multiply-add = 1 FLOP")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    patch = tuple(int(v) for v in args.patch)
    if any(v < 1 for v in patch):
        raise NeurinoError(f"--patch {' '.join(map(str, patch))}: sizes must be positive")
    archs = [get_architecture(n) for n in args.arch] if args.arch else list(ARCHITECTURES.values())
    results: dict[str, dict[str, object]] = {}
    for arch in tqdm(archs, desc="model-info", unit="model", file=sys.stderr, disable=len(archs) < 2):
        results[arch.name] = model_info(arch, patch, fvcore=not args.no_fvcore)  # type: ignore[arg-type]
    if args.json:
        print_json(results)
    else:
        print(format_table(results, patch))  # type: ignore[arg-type]
    return 0
