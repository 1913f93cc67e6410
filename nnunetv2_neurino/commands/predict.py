"""`neurino predict`: a microscopy stack → nnU-Net mask (+ probabilities) → traced SWC, in one command."""

from __future__ import annotations

import argparse

from nnunetv2_neurino.commands._options import (
    add_device_option,
    add_json_option,
    add_renamed_option,
    print_json,
    resolve_device,
)

NAME = "predict"
HELP = ("segment one stack (.tif/.v3draw/.v3dpbd/.zarr/.nii.gz) with a trained nnU-Net run and trace it: "
        "writes OUT/NAME_mask.nii.gz, OUT/NAME.swc and, on request, OUT/NAME_probabilities.npz")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from nnunetv2_neurino.tracing.registry import MIN_COMPONENT_SIZE
    from nnunetv2_neurino.tracing.roots import ROOT_RULES

    p.add_argument("-i", "--input", required=True, metavar="STACK", help="image stack")
    p.add_argument("-m", "--model", required=True, metavar="RUN_DIR",
                   help="trained run: TRAINER__PLANS__CONFIG folder or its fold_N folder")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="output folder")
    p.add_argument("-f", "--folds", nargs="+", help="folds to ensemble (default: all with the checkpoint)")
    p.add_argument("--checkpoint", choices=("final", "best", "latest"), default="final")
    p.add_argument("--save-probabilities", action="store_true", help="also write NAME_probabilities.npz")
    p.add_argument("--threshold", type=float, default=0.5, help="foreground probability threshold (0.5)")
    add_device_option(p, "torch device of the network")
    p.add_argument("--disable-tta", action="store_true",
                   help="no test-time mirroring (up to 8x faster; as nnUNetv2_predict --disable_tta)")
    p.add_argument("--no-trace", action="store_true", help="skip tracing (no SWC)")
    p.add_argument("--spacing", nargs=3, type=float, metavar=("Z", "Y", "X"),
                   help="voxel size override in array order (z, y, x)")
    add_renamed_option(p, "--min-size", "--min-component-size", type=int, default=MIN_COMPONENT_SIZE,
                       metavar="N", dest="min_component_size",
                       help="drop mask components smaller than this many voxels before tracing "
                            f"(default {MIN_COMPONENT_SIZE})")
    p.add_argument("--root-rule", choices=ROOT_RULES, default="radius",
                   help="where each traced tree is rooted: radius = its thickest node, the soma "
                        "(default); boundary = the terminal where the fibre enters the volume "
                        "(see neurino trace --help)")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    add_json_option(p)


def _check_paths(args: argparse.Namespace) -> None:
    """Refuse outputs over or inside the inputs, and a 2D image, before nnU-Net is loaded."""
    from pathlib import Path

    from nnunetv2_neurino.data.readers import image_stem, read_image
    from nnunetv2_neurino.errors import NeurinoError
    from nnunetv2_neurino.io_utils import check_output_paths

    out, name = Path(args.output), image_stem(args.input)
    files = [out / f"{name}_mask.nii.gz", out / f"{name}.swc", out / f"{name}_probabilities.npz"]
    check_output_paths(files, [args.input, args.model])
    if out.exists() and not out.is_dir():
        raise NeurinoError(f"-o {out} exists and is not a folder (predict writes a folder of outputs)")
    image, _ = read_image(args.input, channel=None)
    if image.ndim < 3 or image.shape[-3] < 2:
        raise NeurinoError(f"{args.input} is a 2D image (shape {image.shape}); neurino predict segments 3D "
                           "stacks (z, y, x) with a 3D nnU-Net model")


#: Library parameter names -> this command's flags in its error messages (applied by ``cli.main``).
FLAGS = {"threshold": "--threshold", "device": "--device"}


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from nnunetv2_neurino.inference.predict import predict_file

    _check_paths(args)

    with tqdm(total=1, desc="predict", unit="stack") as bar:
        res = predict_file(args.input, args.model, args.output, folds=args.folds, checkpoint=args.checkpoint,
                           save_probabilities=args.save_probabilities, threshold=args.threshold,
                           device=resolve_device(args.device), trace=not args.no_trace,
                           spacing=tuple(args.spacing) if args.spacing else None,
                           min_component_size=args.min_component_size, force=args.force,
                           use_mirroring=not args.disable_tta, root_rule=args.root_rule)
        bar.update(1)
    if args.json:
        print_json({"mask": str(res.mask_path), "shape": list(res.shape),
                    "foreground_voxels": res.n_foreground,
                    "probabilities": None if res.probabilities_path is None else str(res.probabilities_path),
                    "swc": None if res.swc_path is None else str(res.swc_path),
                    "swc_nodes": res.n_nodes if res.swc_path is not None else None})
        return 0
    print(f"mask {res.mask_path} shape {res.shape}, {res.n_foreground} foreground voxels")
    if res.probabilities_path is not None:
        print(f"probabilities {res.probabilities_path}")
    if res.swc_path is not None:
        note = f" (no component of >= {args.min_component_size} voxels: no tree)" if not res.n_nodes else ""
        print(f"SWC {res.swc_path}: {res.n_nodes} node(s){note}")
    return 0
