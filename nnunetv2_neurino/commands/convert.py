"""`neurino convert KIND SRC -d ID`: a public neuron data set → nnU-Net raw data set (+ SWCs, log)."""

from __future__ import annotations

import argparse

NAME = "convert"
HELP = ("convert BigNeuron / NeuroFly / CWMBS / DIADEM OP / generic image+SWC folders into an nnU-Net raw "
        "data set")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from nnunetv2_neurino.commands._options import add_json_option
    from nnunetv2_neurino.dataset_conversion.run import CONVERTERS

    parser.add_argument("kind", choices=CONVERTERS, help="layout of SRC")
    parser.add_argument("src", help="data set folder (generic: the image folder)")
    parser.add_argument("-d", "--dataset-id", type=int, required=True, help="nnU-Net dataset id (1-999)")
    parser.add_argument("--name", default=None, help="dataset name (default: the converter's)")
    parser.add_argument("-o", "--output", default=None, help="nnU-Net raw folder (default: $nnUNet_raw)")
    parser.add_argument("--radius-floor", type=float, default=1.0,
                        help="smallest label radius in voxels when rendering SWCs (default 1)")
    parser.add_argument("--radius-scale", type=float, default=1.0, help="factor on SWC radii (default 1)")
    parser.add_argument("--skeleton-radius", type=float, default=1.0,
                        help="neurofly: tube radius in voxels for skeleton-mask labels (default 1)")
    parser.add_argument("--swc-dir", default=None, help="generic: folder of SWC files (default: SRC)")
    parser.add_argument("--channel", type=int, default=0, help="channel of multi-channel stacks (default 0)")
    parser.add_argument("--spacing", type=float, nargs=3, metavar=("Z", "Y", "X"), default=None,
                        help="diadem: voxel size in µm (default 0.9988 0.3296 0.3296, the DIADEM OP stacks)")
    parser.add_argument("--test-fraction", type=float, default=0.2, help="share of cases for imagesTs")
    parser.add_argument("--test-cases", nargs="+", default=None, metavar="CASE",
                        help="these cases (e.g. OP_4) form the test split instead of --test-fraction")
    parser.add_argument("--seed", type=int, default=0, help="seed of the train/test split")
    parser.add_argument("--force", action="store_true", help="replace an existing data set folder")
    add_json_option(parser)


#: Library parameter names -> this command's flags in its error messages (applied by ``cli.main``).
FLAGS = {"test_fraction": "--test-fraction", "channel": "--channel", "spacing": "--spacing"}


def run(args: argparse.Namespace) -> int:
    import importlib
    from pathlib import Path

    from nnunetv2_neurino.commands._options import print_json
    from nnunetv2_neurino.data.nnunet_raw import LOG_NAME, format_report
    from nnunetv2_neurino.dataset_conversion.run import convert
    from nnunetv2_neurino.errors import NeurinoError
    from nnunetv2_neurino.io_utils import check_output_folder, check_output_paths
    from nnunetv2_neurino.nnunet_layout import dataset_folder_name, resolve_raw_root

    src = Path(args.src)
    if not src.exists():
        raise NeurinoError(f"{src}: no such file or folder")
    if src.is_dir() and not any(p.is_file() and not p.name.startswith(".") for p in src.rglob("*")):
        raise NeurinoError(f"{src} holds no files: nothing to convert")
    converter = importlib.import_module(f"nnunetv2_neurino.dataset_conversion.{args.kind}")
    name = args.name or converter.DEFAULT_NAME
    target = resolve_raw_root(args.output) / dataset_folder_name(args.dataset_id, name)
    check_output_paths([target], [src, args.swc_dir])
    check_output_folder(target, args.force)
    try:
        report = convert(args.kind, args.src, args.dataset_id, args.name, args.output,
                         radius_floor=args.radius_floor, radius_scale=args.radius_scale,
                         test_fraction=args.test_fraction, seed=args.seed, force=args.force,
                         channel=args.channel, swc_dir=args.swc_dir, skeleton_radius=args.skeleton_radius,
                         spacing=tuple(args.spacing) if args.spacing else None, test_cases=args.test_cases)
    except NeurinoError as e:
        if "(0 skipped: )" not in str(e):
            raise
        raise NeurinoError(f"found no {args.kind} case in {src} (no image with its SWC/label; see "
                           "`neurino convert --help` and docs/ for the expected layout)") from None
    used = tuple(args.spacing) if args.spacing else None
    if args.kind == "diadem":
        from nnunetv2_neurino.dataset_conversion.diadem import DEFAULT_SPACING

        used = used or DEFAULT_SPACING
    if args.json:
        skipped = [{"name": s.name, "reason": s.reason} for s in report.skipped]
        print_json({"dataset": str(report.path), "log": str(report.path / LOG_NAME), "train": report.train,
                    "test": report.test, "skipped": skipped, "spacing": used})
        return 0
    print(format_report(report))
    if args.kind == "diadem":
        origin = "--spacing" if args.spacing else "the DIADEM OP voxel size; --spacing Z Y X overrides"
        print(f"spacing (z, y, x) = {used} µm ({origin})")
    return 0
