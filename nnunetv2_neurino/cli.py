"""`neurino` command line: one module per sub-command in ``nnunetv2_neurino/commands/``.

Each command module defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``.
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
from nnunetv2_neurino.errors import NeurinoError


def _command_modules():
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            yield importlib.import_module(f"{commands.__name__}.{info.name}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="neurino", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in _command_modules():
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
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
