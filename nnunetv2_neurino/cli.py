"""`neurino` command line: one module per sub-command in ``nnunetv2_neurino/commands/``.

Each command module defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``, and may
define ``FLAGS`` ({library parameter name: its flag}): library errors name parameters, the user reads the
command's flags (:func:`~nnunetv2_neurino.commands._options.flag_names`).
This file only discovers them, parses and turns :class:`NeurinoError` into a message and exit code 2 —
and so does an ``OSError`` (permissions, full disk, a folder where a file was expected) that a command did
not turn into a NeurinoError itself: the user gets the file and the reason, not a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from nnunetv2_neurino import __version__, commands
from nnunetv2_neurino.commands._options import flag_names
from nnunetv2_neurino.errors import NeurinoError

CONVENTIONS = """\
conventions shared by every command:
  inputs   positional when they are one kind of thing, in the order of the command's name
           (seg-metrics PRED GT, swc-distance A B, trace INPUT, upkern CHECKPOINT, convert KIND SRC,
           compare EVAL_DIR..., plot-curves RUN_DIR...); flags when a command takes inputs of
           different kinds (predict -i STACK -m RUN_DIR, evaluate --pred --gt [--images] [--gt-swc],
           feature-pca --model --image [--gt])
  outputs  always -o/--output; an existing output is replaced only with --force
  --device auto|cpu|cuda (default auto: cuda when torch sees one, else cpu)
  --json   results as one JSON document on stdout (NaN as null) instead of text
  renamed options keep their old spelling, which still works and prints a deprecation note on stderr:
           evaluate/swc-distance --threshold -> --distance-threshold (a distance; --threshold is a
           probability in trace/predict), predict --min-component-size -> --min-size (as in trace)
"""


def _command_modules():
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            yield importlib.import_module(f"{commands.__name__}.{info.name}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="neurino", description=__doc__.splitlines()[0], epilog=CONVENTIONS,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in _command_modules():
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run, _flags=getattr(module, "FLAGS", {}))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with flag_names(args._flags):
            return int(args._run(args) or 0)
    except NeurinoError as e:
        print(f"neurino {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # outputs are atomic (io_utils), so nothing half-written is left behind
        where = f"{e.filename}: " if e.filename else ""
        print(f"neurino {args.command}: error: {where}{e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
