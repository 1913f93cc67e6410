"""`neurino feature-pca`: RGB PCA maps of encoder features on one slice, for several runs on one basis."""

from __future__ import annotations

import argparse
from pathlib import Path

from nnunetv2_neurino.commands._options import add_device_option, add_json_option, print_json, resolve_device
from nnunetv2_neurino.errors import NeurinoError
from nnunetv2_neurino.io_utils import atomic_file, check_output_paths, refuse_existing_file

NAME = "feature-pca"
HELP = ("project one encoder stage's features on a slice to 3 PCA components (one basis shared by all "
        "--model runs) and save input, [GT] and one RGB map per model (the paper's fig. 8)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", action="append", required=True, metavar="RUN_DIR/fold_N",
                   help="trained fold folder; repeat for several models")
    p.add_argument("--names", nargs="+", help="one label per --model")
    p.add_argument("--checkpoint", choices=("final", "best", "latest"), default="final")
    p.add_argument("--image", required=True, help="image stack (.tif/.v3draw/.v3dpbd/.zarr/.nii.gz)")
    p.add_argument("--gt", help="label stack of the same shape (default slice: most foreground)")
    p.add_argument("--slice", metavar="AXIS:INDEX",
                   help="e.g. z:40 (axis z/y/x or 0/1/2; default: the z slice with most GT foreground, "
                        "else the middle)")
    p.add_argument("--stage", type=int, default=0, help="encoder stage, 0 = highest resolution (default 0)")
    add_device_option(p, "torch device of the networks")
    add_json_option(p)
    p.add_argument("-o", "--output", required=True, help="figure (.png/.pdf/.svg)")
    p.add_argument("--force", action="store_true", help="overwrite an existing figure")


#: Library parameter names -> this command's flags in its error messages (applied by ``cli.main``).
FLAGS = {"names": "--names", "slice": "--slice", "stage": "--stage"}


def run(args: argparse.Namespace) -> int:
    from nnunetv2_neurino.analysis.feature_pca import feature_pca, parse_slice, plot_feature_pca

    out = Path(args.output)
    if out.suffix.lower() not in (".png", ".pdf", ".svg"):
        raise NeurinoError(f"-o {out}: use a .png, .pdf or .svg file name")
    check_output_paths([out], [*args.model, args.image, args.gt])
    refuse_existing_file(out, args.force)
    res = feature_pca(args.model, args.image, args.gt, parse_slice(args.slice), args.stage,
                      args.checkpoint, args.names, resolve_device(args.device), progress=True)
    with atomic_file(out, force=True) as tmp:
        plot_feature_pca(res, tmp, args.stage)
    where = f"{'zyx'[res.slice.axis]}:{res.slice.index}"
    basis = "shared basis" if res.shared_basis else "separate bases (channel counts differ)"
    if args.json:
        print_json({"output": str(out), "slice": where, "stage": args.stage, "shared_basis": res.shared_basis,
                    "explained_variance_ratio": dict(zip(res.labels, res.explained_variance_ratio))})
        return 0
    for label, ratio in zip(res.labels, res.explained_variance_ratio):
        print(f"{label}: explained variance ratio PC1-3 {', '.join(f'{r:.3f}' for r in ratio)}")
    print(f"slice {where}, stage {args.stage}, {basis}; wrote {out}")
    return 0
