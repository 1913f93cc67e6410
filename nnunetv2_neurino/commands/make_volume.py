"""`neurino make-volume -o brain.ome.zarr`: a large synthetic multi-neuron OME-Zarr volume, its label and gold
SWCs, written block by block (never held whole in memory)."""

from __future__ import annotations

import argparse

NAME = "make-volume"
HELP = ("write a large synthetic multi-neuron volume (OME-Zarr image pyramid, labels/neurites, gold SWCs) "
        "block by block, for predict-large / trace-large examples and benchmarks")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", required=True, help="output folder, e.g. brain.ome.zarr")
    p.add_argument("--shape", type=int, nargs=3, required=True, metavar=("Z", "Y", "X"),
                   help="volume size in voxels")
    p.add_argument("--neurons", type=int, default=8, help="number of labelled neurons (default 8)")
    p.add_argument("--seed", type=int, default=0, help="seed: the volume is a deterministic function of it")
    p.add_argument("--spacing", type=float, nargs=3, default=(1.0, 1.0, 1.0), metavar=("Z", "Y", "X"),
                   help="voxel size in micrometres (default 1 1 1)")
    p.add_argument("--chunk", type=int, default=128,
                   help="zarr chunk and block edge in voxels (default 128); the voxels do not depend on it")
    p.add_argument("--ngff", choices=("0.4", "0.5"), default="0.4",
                   help="OME-NGFF version: 0.4 (zarr v2, default) or 0.5 (zarr v3)")
    p.add_argument("--levels", type=int, default=None,
                   help="pyramid levels (default: halve until the smallest side would drop below 16)")
    p.add_argument("--force", action="store_true",
                   help="replace an existing output of make-volume (never another folder)")


def run(args: argparse.Namespace) -> int:
    from nnunetv2_neurino.large.make_volume import write_volume

    path = write_volume(args.output, tuple(args.shape), args.neurons, seed=args.seed, chunk=args.chunk,
                        spacing=tuple(args.spacing), force=args.force, progress=True, version=args.ngff,
                        n_levels=args.levels)
    print(f"wrote {path}: image, labels/neurites, swc/ ({args.neurons} neurons + all_neurons.swc)")
    return 0
