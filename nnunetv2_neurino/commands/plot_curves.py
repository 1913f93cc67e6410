"""`neurino plot-curves`: training/validation loss and pseudo Dice per epoch of several runs, plus a CSV."""

from __future__ import annotations

import argparse
from pathlib import Path

from nnunetv2_neurino.commands._options import add_json_option, print_json
from nnunetv2_neurino.errors import NeurinoError
from nnunetv2_neurino.io_utils import atomic_file, check_output_paths, refuse_existing_file

NAME = "plot-curves"
HELP = ("plot train loss, validation loss and pseudo Dice per epoch of nnU-Net runs "
        "(fold or trainer folders) on shared axes; also writes the numbers to OUT.csv")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                   help="TRAINER__PLANS__CONFIG folder (each fold_* is a curve) or one of its fold_N folders")
    p.add_argument("--names", nargs="+", help="legend name per RUN_DIR (default: trainer name)")
    p.add_argument("-o", "--output", required=True,
                   help="figure path (.png/.pdf/.svg); the CSV goes beside it")
    p.add_argument("--title", help="figure title")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    add_json_option(p)


#: Library parameter names -> this command's flags in its error messages (applied by ``cli.main``).
FLAGS = {"names": "--names"}


def run(args: argparse.Namespace) -> int:
    from nnunetv2_neurino.analysis.curves import plot_curves, read_run_curves, write_curves_csv

    out = Path(args.output)
    if out.suffix.lower() not in (".png", ".pdf", ".svg"):
        raise NeurinoError(f"-o {out}: use a .png, .pdf or .svg file name")
    csv_path = out.with_suffix(".csv")
    for p in (out, csv_path):
        refuse_existing_file(p, args.force)
    curves = read_run_curves(args.run_dirs, args.names)  # only reads: bad inputs are named first
    check_output_paths([out, csv_path], args.run_dirs)
    with atomic_file(csv_path, force=True) as tmp:
        write_curves_csv(curves, tmp)
    with atomic_file(out, force=True) as tmp:
        plot_curves(curves, tmp, args.title)  # tmp keeps the extension: format follows it
    if args.json:
        print_json({"figure": str(out), "csv": str(csv_path),
                    "runs": [{"label": c.label, "fold_dir": str(c.fold_dir), "epochs": c.epochs,
                              "train_loss": c.train_loss, "val_loss": c.val_loss,
                              "pseudo_dice": c.pseudo_dice,
                              "ema_pseudo_dice": c.ema_pseudo_dice} for c in curves]})
        return 0
    for c in curves:
        print(f"{c.label}: {len(c.epochs)} epoch(s), last val loss {c.val_loss[-1]:.4f}, "
              f"pseudo Dice {c.pseudo_dice[-1]:.4f} (EMA {c.ema_pseudo_dice[-1]:.4f})")
    print(f"wrote {out} and {csv_path}")
    return 0
