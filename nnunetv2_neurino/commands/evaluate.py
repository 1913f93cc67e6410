"""`neurino evaluate`: F1, HD95 and ESA/DSA/PDS of an nnU-Net prediction folder, with report and figures."""

from __future__ import annotations

import argparse

from nnunetv2_neurino.commands._options import (
    add_json_option,
    add_renamed_option,
    add_tracer_option,
    print_json,
)

NAME = "evaluate"
HELP = ("score an nnU-Net prediction folder against ground truth (F1, HD95, ESA/DSA/PDS with and without "
        "keep-largest-component): cases.csv, summary.json, report.md, figures/; exit 1 if any case failed")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pred", required=True, help="prediction folder (CASE.nii.gz, .tif, .npy ...)")
    parser.add_argument("--gt", required=True, help="ground-truth label folder (same case names)")
    parser.add_argument("--images", help="raw image folder (CASE_0000.nii.gz ...), used for the figures")
    parser.add_argument("--gt-swc", help="gold-standard SWC folder (CASE.swc, voxel coordinates); "
                                         "default: trace the ground-truth masks with the same tracer")
    add_tracer_option(parser, several=True)
    parser.add_argument("--name", help="method name for tables (default: trainer from the nnU-Net path)")
    parser.add_argument("--dataset", help="data set name (default: from DatasetXXX_NAME in the path)")
    add_renamed_option(parser, "--distance-threshold", "--threshold", type=float, default=2.0,
                       dest="threshold",
                       metavar="D", help="DSA/PDS distance threshold, voxels (default 2)")
    parser.add_argument("--label", type=int, help="score only this label (default: all nonzero labels)")
    parser.add_argument("--spacing", type=float, nargs=3, metavar=("Z", "Y", "X"),
                        help="override the files' voxel spacing (unit of HD95)")
    parser.add_argument("--root-at-gold", action="store_true",
                        help="re-root each traced tree at its node nearest the gold SWC's root (the seed "
                             "point the DIADEM challenge gave tracers); needs --gt-swc. The distance from "
                             "the gold root to the nearest traced root is reported either way (root_dist)")
    parser.add_argument("--no-figures", action="store_true", help="skip the per-case PNG figures")
    parser.add_argument("-j", "--workers", type=int, default=1, help="parallel worker processes (default 1)")
    parser.add_argument("-o", "--output", required=True, help="output folder")
    parser.add_argument("--force", action="store_true", help="replace an existing output folder")
    add_json_option(parser)


#: Library parameter names -> this command's flags in its error messages (applied by ``cli.main``).
FLAGS = {"workers": "-j", "root_at_gold": "--root-at-gold", "gt_swc_dir": "--gt-swc"}


def run(args: argparse.Namespace) -> int:
    from nnunetv2_neurino.evaluation.evaluate import evaluate_folders
    from nnunetv2_neurino.io_utils import check_output_folder, check_output_paths

    check_output_paths([args.output], [args.pred, args.gt, args.images, args.gt_swc])
    check_output_folder(args.output, args.force)  # before the (long) scoring

    s = evaluate_folders(args.pred, args.gt, args.output, images_dir=args.images, gt_swc_dir=args.gt_swc,
                         tracers=args.tracer, method=args.name, dataset=args.dataset, workers=args.workers,
                         threshold=args.threshold, label=args.label, spacing=args.spacing,
                         figures=not args.no_figures, force=args.force, root_at_gold=args.root_at_gold)
    if args.json:  # the summary.json document
        print_json(s)
        return 1 if s["n_failed"] else 0
    m = s["metrics"]

    def pm(key: str, scale: float = 1.0) -> str:
        st = m[key]
        return "n/a" if st["mean"] is None else f"{scale * st['mean']:.3f} ± {scale * st['std']:.3f}"

    print(f"{s['method']} on {s['dataset']}: {s['n_ok']}/{s['n_cases']} cases scored")
    print(f"  F1 % {pm('f1', 100)}   HD95 {pm('hd95')}")
    for t in s["tracers"]:
        for v in (t, t + "+lcc"):
            root = f"  root {pm(v + '/root_dist')}" if s["gt_swc_dir"] else ""
            print(f"  {v:16} ESA {pm(v + '/ESA')}  DSA {pm(v + '/DSA')}  PDS {pm(v + '/PDS')}{root}")
    for f in s["failed"]:
        print(f"  FAILED {f['case']}: {f['error']}")
    figs = "" if args.no_figures else ", figures/"
    print(f"wrote {args.output}/ (cases.csv, summary.json, report.md{figs})")
    return 1 if s["n_failed"] else 0
