"""`neurino seg-metrics PRED GT`: voxel F1 / precision / recall and HD95 of two label volumes."""

from __future__ import annotations

import argparse
import math

from nnunetv2_neurino.commands._options import add_json_option, print_json
from nnunetv2_neurino.errors import NeurinoError

NAME = "seg-metrics"
HELP = "F1 (Dice), precision, recall and HD95 of a predicted mask against ground truth (NIfTI/TIFF/npy)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pred", help="predicted mask (.nii.gz, .tif, .npy, ...); nonzero = foreground")
    parser.add_argument("gt", help="ground-truth mask, same shape")
    parser.add_argument("--spacing", type=float, nargs=3, metavar=("Z", "Y", "X"),
                        help="voxel size in array order; default: the files' spacing (must agree)")
    parser.add_argument("--label", type=int, default=None,
                        help="score this label value only (default: every nonzero label is foreground)")
    parser.add_argument("--threshold", type=float, default=None,
                        help="binarise float volumes (probability maps) at value > THRESHOLD; required "
                             "for volumes with non-integer values, which are refused otherwise")
    add_json_option(parser)


#: Library parameter names -> this command's flags in its error messages (applied by ``cli.main``).
FLAGS = {"threshold": "--threshold"}


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from nnunetv2_neurino.data.volumes import read_label_volume, same_spacing
    from nnunetv2_neurino.metrics.segmentation import foreground, segmentation_metrics

    if args.threshold is not None and not math.isfinite(args.threshold):
        raise NeurinoError(f"--threshold must be a finite number, got {args.threshold}")

    pred, sp_pred = read_label_volume(args.pred)
    gt, sp_gt = read_label_volume(args.gt)
    if pred.shape != gt.shape:
        raise NeurinoError(f"{args.pred}: shape {pred.shape} differs from {args.gt}: shape {gt.shape}")
    if args.spacing is None and not same_spacing(sp_pred, sp_gt):
        raise NeurinoError(f"{args.pred}: spacing {sp_pred} differs from {args.gt}: spacing {sp_gt} "
                           "(pass --spacing to override)")
    spacing = tuple(args.spacing) if args.spacing is not None else sp_gt
    if args.label is not None and not ((pred == args.label).any() or (gt == args.label).any()):
        present = sorted(set(np.unique(pred).tolist()) | set(np.unique(gt).tolist()))[:10]
        raise NeurinoError(f"--label {args.label} occurs in neither {args.pred} nor {args.gt} (values "
                           f"present: {', '.join(f'{v:g}' for v in present)}); nothing to score")
    pred = foreground(pred, args.pred, args.threshold, args.label)
    gt = foreground(gt, args.gt, args.threshold, args.label)
    r = segmentation_metrics(pred, gt, spacing)
    r["spacing"] = list(spacing)
    if args.json:
        print_json(r)
        return 0
    print(f"F1        {100 * r['f1']:8.2f} %")
    print(f"precision {100 * r['precision']:8.2f} %")
    print(f"recall    {100 * r['recall']:8.2f} %")
    print(f"HD95      {r['hd95']:8.3f}   (pred→gt {r['hd95_pred_to_gt']:.3f}, "
          f"gt→pred {r['hd95_gt_to_pred']:.3f}; spacing z,y,x = {spacing})")
    if r["flag"]:
        print(f"note: {r['flag']}")
    return 0
