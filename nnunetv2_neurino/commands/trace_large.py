"""`neurino trace-large -i MASK.zarr -o OUT_DIR`: block-wise tracing of a volume too large for memory."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "trace-large"
HELP = ("trace a large mask or probability map (OME-Zarr labels/neurites, zarr, N5, IMS/HDF5, TIFF) block by "
        "block into one SWC per tree, a combined SWC and trees.csv (same trees as `neurino trace`)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from nnunetv2_neurino.commands._options import add_json_option
    from nnunetv2_neurino.large.trace import DEFAULT_BLOCK, DEFAULT_HALO
    from nnunetv2_neurino.tracing.registry import MIN_COMPONENT_SIZE

    add_json_option(p)

    p.add_argument("-i", "--input", required=True,
                   help="mask volume; for an OME-Zarr with labels/neurites (predict-large, make-volume "
                        "output) that label image is traced unless --label says otherwise")
    p.add_argument("-o", "--output", required=True, help="output folder (SWCs, trees.csv)")
    p.add_argument("--label", default=None,
                   help="label image of an OME-Zarr to trace (INPUT/labels/LABEL; default: neurites if "
                        "present)")
    p.add_argument("--level", type=int, default=None, help="resolution level (default 0 = full)")
    p.add_argument("--block", type=int, default=DEFAULT_BLOCK,
                   help=f"block core edge in voxels (default {DEFAULT_BLOCK})")
    p.add_argument("--halo", type=int, default=DEFAULT_HALO,
                   help=f"tracing margin in voxels (default {DEFAULT_HALO}); at least the largest neurite "
                        "radius expected, else trees near thick objects (somata) can differ from `trace`")
    p.add_argument("--threshold", type=float, default=None,
                   help="foreground = value > THRESHOLD (probability maps; default: value != 0, or 0.5 "
                        "for float volumes)")
    p.add_argument("--min-size", type=int, default=MIN_COMPONENT_SIZE,
                   help="remove 26-connected components with fewer voxels, counted on the whole volume "
                        f"(default {MIN_COMPONENT_SIZE})")
    p.add_argument("--min-length", type=float, default=0.0,
                   help="write only trees with at least this cable length (physical units; default 0)")
    p.add_argument("--spacing", type=float, nargs=3, metavar=("Z", "Y", "X"),
                   help="voxel size (default: from the file, else 1 1 1)")
    p.add_argument("--root", type=float, nargs=3, metavar=("X", "Y", "Z"),
                   help="soma / seed point in voxel coordinates: its tree is rooted there (type 1)")
    p.add_argument("--prune", type=float, default=0.0,
                   help="remove terminal branches shorter than this (physical units; default 0)")
    p.add_argument("--step", type=int, default=1,
                   help="keep every STEP-th node along unbranched chains (default 1)")
    p.add_argument("--force", action="store_true",
                   help="replace an earlier trace-large output folder (never anything else)")


def _open(args: argparse.Namespace):
    from nnunetv2_neurino.errors import NeurinoError
    from nnunetv2_neurino.large.readers import open_volume

    src = Path(args.input)
    if not src.exists():
        raise NeurinoError(f"{src}: no such file or folder")
    label = args.label
    if label is None and (src / "labels" / "neurites").is_dir():
        label = "neurites"
    if label is not None:
        if not (src / "labels" / label).is_dir():
            raise NeurinoError(f"{src}: no label image labels/{label}")
        src = src / "labels" / label
    return src, open_volume(src, level=args.level)


def check_trace_options(block: int, halo: int, min_size: int, step: int, prune: float,
                        min_length: float) -> None:
    """NeurinoError naming the option for out-of-range tracing settings."""
    from nnunetv2_neurino.errors import NeurinoError

    for name, value, low in (("--block", block, 1), ("--halo", halo, 0), ("--min-size", min_size, 0),
                             ("--step", step, 1)):
        if value < low:
            raise NeurinoError(f"{name} must be >= {low}, got {value}")
    if prune < 0 or min_length < 0:
        raise NeurinoError("--prune and --min-length must be >= 0")


def trace_to_folder(src: Path, volume, output: Path, inputs: list[Path], spacing, block: int, halo: int,
                    threshold: float | None, min_size: int, min_length: float, root, prune: float, step: int,
                    force: bool) -> tuple[list[dict], int]:
    """Trace ``volume`` (a :class:`~nnunetv2_neurino.large.readers.LazyVolume`) into the trace-large folder
    ``output``; returns (trees.csv rows, traced trees)."""
    from nnunetv2_neurino.large.trace import trace_large
    from nnunetv2_neurino.large.trace_output import write_trace_outputs

    forest = trace_large(volume.array, spacing, block=block, halo=halo, min_component_size=min_size,
                         threshold=threshold, root=root, prune_length=prune, resample_step=step,
                         progress=True)
    header = (f"traced by neurino trace-large from {src}\nblock={block} halo={halo} threshold={threshold} "
              f"min_size={min_size} spacing={tuple(spacing)} root={root} prune={prune} step={step}\n"
              "coordinates: 0-based voxels, x = last array axis")
    rows = write_trace_outputs(forest, output, spacing, min_length, inputs=inputs, force=force, header=header)
    return rows, len(forest.roots)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from nnunetv2_neurino.errors import NeurinoError
    from nnunetv2_neurino.large.trace_output import check_output_folder

    check_trace_options(args.block, args.halo, args.min_size, args.step, args.prune, args.min_length)
    check_output_folder(Path(args.output), [Path(args.input)], args.force)     # before hours of work
    src, volume = _open(args)
    spacing = tuple(args.spacing) if args.spacing else (volume.spacing or (1.0, 1.0, 1.0))
    threshold = args.threshold
    if threshold is None and np.issubdtype(np.dtype(volume.array.dtype), np.floating):
        threshold = 0.5
    if threshold is not None and not 0.0 <= threshold < 1.0 and np.issubdtype(np.dtype(volume.array.dtype),
                                                                               np.floating):
        raise NeurinoError(f"--threshold must be in [0, 1) for a probability map, got {threshold}")
    rows, n_traced = trace_to_folder(src, volume, Path(args.output), [Path(args.input)], spacing, args.block,
                                     args.halo, threshold, args.min_size, args.min_length, args.root,
                                     args.prune, args.step, args.force)
    if args.json:
        from nnunetv2_neurino.commands._options import print_json

        print_json({"output": str(args.output), "trees_written": len(rows), "trees_traced": n_traced,
                    "nodes": sum(r["nodes"] for r in rows), "trees": rows})
    else:
        print(f"{args.output}: {len(rows)} tree(s) written ({n_traced} traced, "
              f"{sum(r['nodes'] for r in rows)} nodes)")
    return 0
