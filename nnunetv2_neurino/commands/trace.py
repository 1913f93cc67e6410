"""`neurino trace INPUT -o OUT.swc`: mask / probability map (file or folder) -> SWC reconstruction(s)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

NAME = "trace"
HELP = ("trace a segmentation mask or probability map (NIfTI, TIFF, v3draw, zarr, .npy, nnU-Net .npz) into "
        "an SWC; INPUT may be a folder (one SWC per case into the folder OUT)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from nnunetv2_neurino.tracing.roots import ROOT_RULES
    from nnunetv2_neurino.tracing.vaa3d import TRACERS

    p.add_argument("input", help="volume file (.nii.gz/.nii, .tif/.tiff, .v3draw/.v3dpbd, .zarr, .npy, or "
                                 "nnU-Net .npz probabilities), or a folder of them")
    p.add_argument("-o", "--output", required=True, help="output .swc (a folder when INPUT is a folder)")
    p.add_argument("--threshold", type=float, default=0.5,
                   help="foreground = probability > THRESHOLD for float volumes, 0 <= THRESHOLD < 1 "
                        "(default 0.5); integer volumes: label != 0")
    p.add_argument("--min-size", type=int, default=10,
                   help="remove 26-connected components with fewer voxels, >= 0 (default 10; built-in "
                        "tracer)")
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
    p.add_argument("--tracer", choices=("builtin",) + TRACERS, default="builtin",
                   help="built-in skeleton tracer (default) or a Vaa3D plugin (needs Vaa3D: VAA3D_BIN)")
    p.add_argument("--length-threshold", type=float, default=1,
                   help="Vaa3D APP2 length threshold (default 1)")
    p.add_argument("--background-threshold", type=float, default=None,
                   help="Vaa3D background threshold on the 8-bit image (default: 1 for masks, "
                        "255*THRESHOLD for probabilities)")
    p.add_argument("--use-probabilities", action="store_true",
                   help="folder mode: when a case has both a mask and an .npz/.npy file, trace the latter")
    p.add_argument("--force", action="store_true", help="overwrite an existing output")


def _trace_file(path: Path, args: argparse.Namespace):
    import numpy as np

    from nnunetv2_neurino.errors import NeurinoError
    from nnunetv2_neurino.tracing import (
        prune_short_branches,
        resample_chains,
        trace_mask,
        trace_probabilities,
    )
    from nnunetv2_neurino.tracing.io import read_volume
    from nnunetv2_neurino.tracing.vaa3d import trace_with_vaa3d

    volume, spacing = read_volume(path)
    if args.root is not None:
        _check_root(args.root, volume.shape, path)
    if args.spacing:
        spacing = tuple(args.spacing)
    is_prob = np.issubdtype(volume.dtype, np.floating)
    if args.tracer != "builtin":
        if args.root is not None:
            raise NeurinoError(f"--root is used by the built-in tracer only ({args.tracer} chooses its own "
                               "root); drop --root or use --tracer builtin")
        if args.root_rule != "radius":
            raise NeurinoError(f"--root-rule is used by the built-in tracer only ({args.tracer} chooses its "
                               "own root); drop --root-rule or use --tracer builtin")
        tree = trace_with_vaa3d(volume, args.tracer, is_probability=is_prob, threshold=args.threshold,
                                background_threshold=args.background_threshold,
                                length_threshold=args.length_threshold)
        if args.prune > 0:
            tree = prune_short_branches(tree, args.prune, spacing)
        return resample_chains(tree, args.step) if args.step > 1 else tree
    kwargs = dict(spacing=spacing, min_component_size=args.min_size, root=args.root,
                  prune_length=args.prune, resample_step=args.step, root_rule=args.root_rule)
    if is_prob:
        return trace_probabilities(volume, threshold=args.threshold, **kwargs)
    return trace_mask(volume != 0, **kwargs)


def _check_root(root, shape: tuple[int, ...], path: Path) -> None:
    """``--root X Y Z`` (voxels, x = last axis) must lie inside the (z, y, x) volume ``shape``."""
    from nnunetv2_neurino.errors import NeurinoError

    limits = (shape[2], shape[1], shape[0])
    if not all(-0.5 <= float(c) <= n - 0.5 for c, n in zip(root, limits)):
        raise NeurinoError(f"--root {' '.join(f'{c:g}' for c in root)} (x y z) lies outside {path} "
                           f"(x 0..{limits[0] - 1}, y 0..{limits[1] - 1}, z 0..{limits[2] - 1})")


def _why_empty(path: Path, args: argparse.Namespace) -> str:
    """Why tracing ``path`` gave no node: no foreground, or every component below ``--min-size``."""
    import cc3d
    import numpy as np

    from nnunetv2_neurino.tracing.io import read_volume

    volume, _ = read_volume(path)
    is_prob = np.issubdtype(volume.dtype, np.floating)
    mask = volume > args.threshold if is_prob else volume != 0
    if not mask.any():
        return (f"no foreground voxel (probability > {args.threshold:g})" if is_prob
                else "no foreground voxel (all labels are 0)")
    sizes = np.bincount(cc3d.connected_components(mask, connectivity=26).ravel())[1:]
    if args.tracer == "builtin" and sizes.max() < args.min_size:
        return (f"all {len(sizes)} component(s) have fewer than --min-size {args.min_size} voxels (largest: "
                f"{int(sizes.max())}); lower --min-size to keep them")
    return f"{int(mask.sum())} foreground voxel(s) gave no skeleton"


def _header(path: Path, args: argparse.Namespace) -> str:
    return (f"traced by neurino trace ({args.tracer}) from {path.name}\n"
            f"threshold={args.threshold} min_size={args.min_size} spacing={args.spacing} root={args.root} "
            f"root_rule={args.root_rule} prune={args.prune} step={args.step}\n"
            "coordinates: 0-based voxels, x = last array axis")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from nnunetv2_neurino.errors import NeurinoError
    from nnunetv2_neurino.io_utils import atomic_directory, check_output_paths
    from nnunetv2_neurino.swc import write_swc
    from nnunetv2_neurino.tracing.io import is_volume_file, volume_stem

    src, out = Path(args.input), Path(args.output)
    if args.step < 1:
        raise NeurinoError(f"--step must be >= 1, got {args.step}")
    if args.prune < 0:
        raise NeurinoError(f"--prune must be >= 0, got {args.prune}")
    if not 0 <= args.threshold < 1:
        raise NeurinoError(f"--threshold must be a probability in [0, 1), got {args.threshold}")
    if args.min_size < 0:
        raise NeurinoError(f"--min-size must be >= 0 voxels, got {args.min_size}")
    if not src.exists():
        raise NeurinoError(f"{src}: no such file or folder")
    check_output_paths([out], [src])
    if not (src.is_dir() and not src.name.lower().endswith(".zarr")):
        if out.is_dir():
            raise NeurinoError(f"-o {out} is a folder; tracing one file writes one .swc file: "
                               "give a file name")
        if out.exists() and not args.force:
            raise NeurinoError(f"{out} already exists (pass --force to overwrite)")
        tree = _trace_file(src, args)
        write_swc(tree, out, force=True, header=_header(src, args))
        note = f" — {_why_empty(src, args)}" if tree.n == 0 else ""
        print(f"{out}: {tree.n} nodes, {len(tree.roots)} tree(s){note}")
        return 0

    files = sorted(p for p in src.iterdir() if is_volume_file(p) and not p.name.startswith("."))
    # nnU-Net prediction folders hold CASE.nii.gz and, with --save_probabilities, CASE.npz: trace the
    # segmentation, unless --use-probabilities
    prefer_npz = args.use_probabilities
    chosen: dict[str, Path] = {}
    duplicates = []
    for p in sorted(files, key=lambda q: (q.suffix.lower() in (".npz", ".npy")) != prefer_npz):
        stem = volume_stem(p)
        if stem in chosen:
            duplicates.append(f"{p.name} (same case as {chosen[stem].name})")
        else:
            chosen[stem] = p
    cases = sorted(chosen.values())
    if not cases:
        raise NeurinoError(f"{src}: no volume files (.nii.gz, .tif, .v3draw, .zarr, .npy, .npz, ...) "
                           "in the folder")
    failed, empty = [], []
    with atomic_directory(out, force=args.force) as tmp:
        for path in tqdm(cases, desc="trace", unit="case"):
            try:
                tree = _trace_file(path, args)
                if tree.n == 0:
                    empty.append(f"{volume_stem(path)}.swc: 0 nodes — {_why_empty(path, args)}")
            except Exception as e:  # one bad case (unreadable file, tracer error) must not stop the batch
                reason = str(e) if isinstance(e, NeurinoError) else f"{type(e).__name__}: {e}"
                failed.append(f"{path.name}: {reason}")
                continue
            write_swc(tree, tmp / f"{volume_stem(path)}.swc", header=_header(path, args))
    print(f"{out}: traced {len(cases) - len(failed)} of {len(cases)} case(s)")
    for line in empty:
        print(f"note: {line}", file=sys.stderr)
    for line in duplicates:
        print(f"skipped {line}", file=sys.stderr)
    for line in failed:
        print(f"FAILED {line}", file=sys.stderr)
    return 1 if failed else 0
