"""`neurino predict-large`: a whole-brain volume → block-wise nnU-Net mask (OME-Zarr), on dask.distributed."""

from __future__ import annotations

import argparse

NAME = "predict-large"
HELP = ("segment a volume too large for memory (OME-Zarr, zarr, IMS/HDF5, TIFF) block by block with a "
        "trained nnU-Net run; writes OUT.ome.zarr (labels/neurites, optional probabilities)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-i", "--input", required=True, metavar="IN",
                   help="volume (OME-Zarr, zarr, IMS/HDF5, TIFF)")
    p.add_argument("-m", "--model", required=True, metavar="RUN_DIR",
                   help="trained run: TRAINER__PLANS__CONFIG folder or its fold_N folder")
    p.add_argument("-o", "--output", required=True, metavar="OUT.ome.zarr", help="output OME-Zarr folder")
    p.add_argument("-f", "--folds", nargs="+", help="folds to ensemble (default: all of the run)")
    p.add_argument("--checkpoint", choices=("final", "best", "latest"), default="final")
    p.add_argument("--level", type=int, default=None, help="resolution level of a multiscale input (0)")
    p.add_argument("--spacing", nargs=3, type=float, metavar=("Z", "Y", "X"),
                   help="voxel size (z, y, x) for inputs that record none")
    p.add_argument("--block", type=int, default=256,
                   help="block core size in voxels, rounded up to a multiple of the tile step (256)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="auto: cuda when available (one worker per GPU), else cpu")
    p.add_argument("--disable-tta", action="store_true", help="no test-time mirroring (up to 8x faster)")
    p.add_argument("--threshold", type=float, default=0.5, help="foreground probability threshold (0.5)")
    p.add_argument("--save-probabilities", action="store_true",
                   help="also write probabilities/0 (uint8, p x 255)")
    p.add_argument("--workers", type=int, default=None,
                   help="workers of the embedded LocalCluster (default: GPUs on cuda, cores/4 on cpu)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="tcp://HOST:PORT of a running dask scheduler, or 'synchronous' (in this process)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run (same settings)")
    p.add_argument("--no-skip", action="store_true",
                   help="predict every block (default: skip blocks darker than the training foreground)")
    p.add_argument("--force", action="store_true", help="replace an existing output of this command")


def run(args: argparse.Namespace) -> int:
    from nnunetv2_neurino.large.predict import predict_large

    device = args.device
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    res = predict_large(args.input, args.model, args.output, block=args.block, device=device,
                        use_mirroring=not args.disable_tta, threshold=args.threshold,
                        save_probabilities=args.save_probabilities, workers=args.workers,
                        scheduler=args.scheduler, resume=args.resume, skip_empty=not args.no_skip,
                        folds=args.folds, checkpoint=args.checkpoint, level=args.level,
                        spacing=tuple(args.spacing) if args.spacing else None, force=args.force)
    lat = res.lattice
    print(f"block core {'x'.join(map(str, lat.core))} (patch {'x'.join(map(str, lat.patch))}, "
          f"step {'x'.join(map(str, lat.step))}), {res.blocks_total} blocks")
    print(f"{res.output}: {res.blocks_done} predicted, {res.blocks_skipped} skipped as empty, "
          f"{res.blocks_resumed} already done; {res.seconds:.1f} s, {res.voxels_per_second:.3g} voxels/s")
    return 0
