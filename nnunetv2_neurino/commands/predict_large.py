"""`neurino predict-large`: a whole-brain volume → block-wise nnU-Net mask (OME-Zarr), on dask.distributed."""

from __future__ import annotations

import argparse
from pathlib import Path

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
    from nnunetv2_neurino.commands._options import add_device_option, add_json_option

    add_device_option(p, "torch device of the network (cuda: one worker per GPU)")
    add_json_option(p)
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
    p.add_argument("--trace", nargs="?", const="", default=None, metavar="DIR",
                   help="then trace the written mask with trace-large into DIR (default: OUT's sibling "
                        "OUT_trace/, e.g. brain_pred.ome.zarr -> brain_pred_trace/): trees/*.swc, "
                        "all_trees.swc, trees.csv")
    p.add_argument("--trace-halo", type=int, default=None,
                   help="tracing margin in voxels (trace-large's --halo; default its default)")
    p.add_argument("--trace-min-length", type=float, default=0.0,
                   help="write only trees with at least this cable length (physical units; default 0)")
    p.add_argument("--force", action="store_true",
                   help="replace an existing output of this command (and, with --trace, an earlier "
                        "trace-large folder)")


def trace_folder(output: str | Path, trace: str) -> Path:
    """Where ``--trace`` writes: the folder given, else OUT's sibling ``NAME_trace`` (NAME = OUT without
    ``.ome.zarr`` / ``.zarr``)."""
    if trace:
        return Path(trace)
    out = Path(output)
    name = out.name
    for suffix in (".ome.zarr", ".zarr"):
        if name.endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
            break
    return out.with_name(name + "_trace")


def run(args: argparse.Namespace) -> int:
    from nnunetv2_neurino.commands._options import print_json, resolve_device
    from nnunetv2_neurino.large.predict import predict_large
    from nnunetv2_neurino.tracing.registry import MIN_COMPONENT_SIZE

    trace_dir = None
    if args.trace is not None:
        from nnunetv2_neurino.commands.trace_large import check_trace_options
        from nnunetv2_neurino.large.trace import DEFAULT_BLOCK, DEFAULT_HALO
        from nnunetv2_neurino.large.trace_output import check_output_folder

        trace_dir = trace_folder(args.output, args.trace)
        halo = DEFAULT_HALO if args.trace_halo is None else args.trace_halo
        check_trace_options(DEFAULT_BLOCK, halo, MIN_COMPONENT_SIZE, 1, 0.0, args.trace_min_length)
        # before hours of prediction: the trace folder must be writable under the rules of trace-large
        check_output_folder(trace_dir, [Path(args.input), Path(args.output)], args.force)

    device = resolve_device(args.device)
    res = predict_large(args.input, args.model, args.output, block=args.block, device=device,
                        use_mirroring=not args.disable_tta, threshold=args.threshold,
                        save_probabilities=args.save_probabilities, workers=args.workers,
                        scheduler=args.scheduler, resume=args.resume, skip_empty=not args.no_skip,
                        folds=args.folds, checkpoint=args.checkpoint, level=args.level,
                        spacing=tuple(args.spacing) if args.spacing else None, force=args.force)
    if not args.json:
        print(res.summary())
    blocks = {"total": res.blocks_total, "done": res.blocks_done, "skipped": res.blocks_skipped,
              "resumed": res.blocks_resumed}
    result = {"output": str(res.output), "blocks": blocks,
              "seconds": res.seconds, "voxels_per_second": res.voxels_per_second, "tiles": res.tiles,
              "peak_worker_rss_bytes": res.peak_worker_rss, "torch_threads": list(res.torch_threads),
              "trace": None}
    if trace_dir is not None:
        from nnunetv2_neurino.commands.trace_large import trace_to_folder
        from nnunetv2_neurino.large.readers import open_volume
        from nnunetv2_neurino.large.trace import DEFAULT_BLOCK

        src = res.output / "labels" / "neurites"
        volume = open_volume(src, level=0)
        spacing = volume.spacing or (1.0, 1.0, 1.0)
        rows, n_traced = trace_to_folder(src, volume, trace_dir, [Path(args.input), res.output], spacing,
                                         DEFAULT_BLOCK, halo, None, MIN_COMPONENT_SIZE, args.trace_min_length,
                                         None, 0.0, 1, args.force)
        n_nodes = sum(r["nodes"] for r in rows)
        result["trace"] = {"folder": str(trace_dir), "trees_written": len(rows), "trees_traced": n_traced,
                           "nodes": n_nodes}
        if not args.json:
            print(f"{trace_dir}: {len(rows)} tree(s) written ({n_traced} traced, "
                  f"{n_nodes} nodes; SWCs in {trace_dir / 'trees'}, combined "
                  f"{trace_dir / 'all_trees.swc'}, table {trace_dir / 'trees.csv'})")
    if args.json:
        print_json(result)
    return 0
