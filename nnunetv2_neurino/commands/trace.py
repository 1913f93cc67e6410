"""`neurino trace INPUT -o OUT.swc`: mask / probability map (file or folder) -> SWC reconstruction(s)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

NAME = "trace"
HELP = ("trace a segmentation mask or probability map (NIfTI, TIFF, v3draw, zarr, .npy, nnU-Net .npz) into "
        "an SWC; INPUT may be a folder (one SWC per case into the folder OUT)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from nnunetv2_neurino.commands._options import add_json_option, add_tracer_option
    from nnunetv2_neurino.tracing.registry import MIN_COMPONENT_SIZE
    from nnunetv2_neurino.tracing.roots import ROOT_RULES

    p.add_argument("input", help="volume file (.nii.gz/.nii, .tif/.tiff, .v3draw/.v3dpbd, .zarr, .npy, or "
                                 "nnU-Net .npz probabilities), or a folder of them")
    p.add_argument("-o", "--output", required=True, help="output .swc (a folder when INPUT is a folder)")
    p.add_argument("--threshold", type=float, default=0.5,
                   help="foreground = probability > THRESHOLD for float volumes, 0 <= THRESHOLD < 1 "
                        "(default 0.5); integer volumes: label != 0")
    p.add_argument("--min-size", type=int, default=MIN_COMPONENT_SIZE,
                   help="remove 26-connected components with fewer voxels, >= 0 "
                        f"(default {MIN_COMPONENT_SIZE}; built-in tracer)")
    p.add_argument("--spacing", type=float, nargs=3, metavar=("Z", "Y", "X"),
                   help="voxel size (default: from the file, 1 1 1 for .npy/.npz); affects radii and lengths")
    p.add_argument("--root", type=float, nargs=3, metavar=("X", "Y", "Z"),
                   help="soma / seed point in voxel coordinates: its component is rooted there (type 1; "
                        "built-in tracer only)")
    p.add_argument("--root-rule", choices=ROOT_RULES, default="radius",
                   help="where each tree is rooted (built-in tracer): radius = its thickest node, the "
                        "soma of a whole neuron (default); boundary = the terminal where the fibre enters "
                        "the volume (a terminal on the volume boundary, the one with the longest path into "
                        "the tree; without one, the end of the longest path with the longer unbranched "
                        "chain), for fibres whose soma is outside the stack such as the DIADEM olfactory "
                        "projection fibres; --root overrides it for the seeded tree")
    p.add_argument("--prune", type=float, default=0.0,
                   help="remove terminal branches shorter than this (physical units; default 0 = keep all)")
    p.add_argument("--step", type=int, default=1,
                   help="keep every STEP-th node along unbranched chains (default 1 = every skeleton voxel)")
    add_tracer_option(p)
    add_json_option(p)
    p.add_argument("--length-threshold", type=float, default=1,
                   help="Vaa3D APP2 length threshold (default 1)")
    p.add_argument("--background-threshold", type=float, default=None,
                   help="Vaa3D background threshold on the 8-bit image (default: 1 for masks, "
                        "255*THRESHOLD for probabilities)")
    p.add_argument("--use-probabilities", action="store_true",
                   help="folder mode: when a case has both a mask and an .npz/.npy file, trace the latter")
    p.add_argument("--force", action="store_true", help="overwrite an existing output")


#: Library parameter names (tracing.folder.TraceSettings) -> this command's flags in its error messages
#: (applied by ``cli.main``).
FLAGS = {"threshold": "--threshold", "min_component_size": "--min-size", "root": "--root",
         "root_rule": "--root-rule", "prune_length": "--prune", "resample_step": "--step"}


def _settings(args: argparse.Namespace):
    from nnunetv2_neurino.tracing.folder import TraceSettings

    return TraceSettings(tracer=args.tracer, threshold=args.threshold, min_component_size=args.min_size,
                         spacing=args.spacing, root=args.root, root_rule=args.root_rule,
                         prune_length=args.prune, resample_step=args.step,
                         length_threshold=args.length_threshold,
                         background_threshold=args.background_threshold)


def run(args: argparse.Namespace) -> int:
    from nnunetv2_neurino.commands._options import print_json
    from nnunetv2_neurino.errors import NeurinoError
    from nnunetv2_neurino.io_utils import check_output_paths, refuse_existing_file
    from nnunetv2_neurino.swc import write_swc
    from nnunetv2_neurino.tracing.folder import empty_reason, trace_file, trace_folder

    src, out = Path(args.input), Path(args.output)
    settings = _settings(args)
    settings.check()
    if not src.exists():
        raise NeurinoError(f"{src}: no such file or folder")
    check_output_paths([out], [src])
    if not (src.is_dir() and not src.name.lower().endswith(".zarr")):
        if out.is_dir():
            raise NeurinoError(f"-o {out} is a folder; tracing one file writes one .swc file: "
                               "give a file name")
        refuse_existing_file(out, args.force)
        tree = trace_file(src, settings)
        write_swc(tree, out, force=True, header=settings.header(src))
        reason = empty_reason(src, settings, "--min-size") if tree.n == 0 else None
        if args.json:
            print_json({"output": str(out), "nodes": tree.n, "trees": len(tree.roots),
                        "empty_reason": reason})
        else:
            print(f"{out}: {tree.n} nodes, {len(tree.roots)} tree(s)" + (f" — {reason}" if reason else ""))
        return 0

    result = trace_folder(src, out, settings, force=args.force, use_probabilities=args.use_probabilities,
                          size_name="--min-size")
    if args.json:
        print_json({"output": str(out), "cases": result.n_cases,
                    "traced": result.n_cases - len(result.failed), "empty": result.empty,
                    "skipped": result.skipped, "failed": result.failed})
        return 1 if result.failed else 0
    print(f"{out}: traced {result.n_cases - len(result.failed)} of {result.n_cases} case(s)")
    for line in result.empty:
        print(f"note: {line}", file=sys.stderr)
    for line in result.skipped:
        print(f"skipped {line}", file=sys.stderr)
    for line in result.failed:
        print(f"FAILED {line}", file=sys.stderr)
    return 1 if result.failed else 0
