"""`neurino compare EVAL_DIR...`: paper-style method × data-set tables (tables 6 and 7)."""

from __future__ import annotations

import argparse

from nnunetv2_neurino.commands._options import add_json_option, print_json

NAME = "compare"
HELP = ("method × data-set tables like the paper's tables 6 (F1, HD95) and 7 (ESA / DSA / PDS per tracer) "
        "from `neurino evaluate` folders (summary.json) or nnU-Net validation folders of neurino trainers "
        "(summary_topology.json), as Markdown, CSV and LaTeX")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("eval_dirs", nargs="+", metavar="EVAL_DIR",
                        help="`neurino evaluate` output folder, fold_N/validation folder with "
                             "summary_topology.json, or one of those JSON files")
    parser.add_argument("--names", nargs="+", help="method names, one per EVAL_DIR (default: from summaries)")
    parser.add_argument("--lcc", action="store_true",
                        help="table 7 from the metrics after keep-largest-component post-processing")
    parser.add_argument("-o", "--output", required=True, help="output folder")
    parser.add_argument("--force", action="store_true", help="replace an existing output folder")
    add_json_option(parser)


#: Library parameter names -> this command's flags in its error messages (applied by ``cli.main``).
FLAGS = {"names": "--names"}


def run(args: argparse.Namespace) -> int:
    from nnunetv2_neurino.evaluation.comparison import compare, table_dict, to_markdown, write_comparison
    from nnunetv2_neurino.io_utils import check_output_folder, check_output_paths

    tables = compare(args.eval_dirs, names=args.names, lcc=args.lcc)  # only reads: bad inputs named first
    check_output_paths([args.output], args.eval_dirs)
    check_output_folder(args.output, args.force)
    write_comparison(tables, args.output, force=args.force)
    if args.json:
        print_json({**{name: table_dict(t) for name, t in tables.items()}, "output": str(args.output)})
        return 0
    for t in tables.values():
        print(to_markdown(t))
    print(f"wrote {args.output}/ (table6/table7 .md .csv .tex, comparison.md)")
    return 0
