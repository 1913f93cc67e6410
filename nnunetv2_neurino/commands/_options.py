"""Options every `neurino` command spells the same way: ``--device``, ``--json`` and renamed flags.

* ``--device {auto,cpu,cuda}`` (default ``auto`` = CUDA when torch sees one, else CPU):
  :func:`add_device_option` and :func:`resolve_device`.
* ``--json``: results as one JSON document on stdout (NaN written as ``null``), human text otherwise:
  :func:`add_json_option` and :func:`print_json`.
* ``--tracer``: one name or several, checked by the tracer registry (same error from every command):
  :func:`add_tracer_option`.
* Library errors name parameters (``min_component_size``); :func:`flag_names` rewrites them as the
  command's flags (``--min-size``), from the command module's ``FLAGS`` (``cli.main`` applies it).
* A renamed flag keeps its old spelling as a deprecated alias that still works and prints a note on
  stderr: :func:`add_renamed_option`.

The leading underscore keeps this module out of the sub-command discovery in :mod:`nnunetv2_neurino.cli`.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from nnunetv2_neurino.errors import NeurinoError
from nnunetv2_neurino.io_utils import json_dumps

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def add_device_option(parser: argparse.ArgumentParser, what: str = "torch device") -> None:
    """Add ``--device {auto,cpu,cuda}`` with default ``auto``; ``what`` says what the device is used for."""
    parser.add_argument("--device", choices=DEVICE_CHOICES, default="auto",
                        help=f"{what}: auto (default: cuda when available, else cpu), cpu or cuda")


def resolve_device(device: str) -> str:
    """``"auto"`` → ``"cuda"`` when torch sees a CUDA device, else ``"cpu"``; ``"cpu"``/``"cuda"`` unchanged.

    Raises
    ------
    NeurinoError : ``"cuda"`` asked for on a machine where torch sees no CUDA device, or an unknown name.
    """
    if device not in DEVICE_CHOICES:
        raise NeurinoError(f"--device must be one of {', '.join(DEVICE_CHOICES)}, got {device!r}")
    if device == "cpu":
        return "cpu"
    import torch

    available = torch.cuda.is_available()
    if device == "cuda" and not available:
        raise NeurinoError("--device cuda requested but torch sees no CUDA device (use --device auto or cpu)")
    return "cuda" if available else "cpu"


def add_json_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--json``: print the results as one JSON document on stdout instead of text."""
    parser.add_argument("--json", action="store_true",
                        help="print the results as one JSON document on stdout (NaN as null) instead of text")


def print_json(obj: Any) -> None:
    """Print ``obj`` as strict JSON (no NaN: :func:`~nnunetv2_neurino.io_utils.json_dumps`) on stdout."""
    print(json_dumps(obj))


class _DeprecatedAlias(argparse.Action):
    """Store like the new option; when given under an old spelling, print a deprecation note on stderr."""

    def __init__(self, option_strings, dest, deprecated=(), new_name="", **kwargs):
        self.deprecated = tuple(deprecated)
        self.new_name = new_name
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        if option_string in self.deprecated:
            print(f"{parser.prog}: note: {option_string} is deprecated, use {self.new_name}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_renamed_option(parser: argparse.ArgumentParser, new: str | list[str], old: str | list[str],
                       **kwargs) -> argparse.Action:
    """Add an option under its ``new`` spelling(s) and its ``old`` spelling(s) as deprecated aliases.

    ``kwargs`` are those of ``add_argument`` for a value-taking option (type, default, nargs, help …);
    ``dest`` defaults to the first new spelling. The help text lists the old spelling as deprecated.
    """
    new = [new] if isinstance(new, str) else list(new)
    old = [old] if isinstance(old, str) else list(old)
    kwargs.setdefault("dest", new[-1].lstrip("-").replace("-", "_"))
    help_text = kwargs.pop("help", "")
    help_text = f"{help_text} ({', '.join(old)}: deprecated alias)".strip()
    return parser.add_argument(*new, *old, action=_DeprecatedAlias, deprecated=old, new_name=new[-1],
                               help=help_text, **kwargs)


def add_tracer_option(parser: argparse.ArgumentParser, several: bool = False, **kwargs) -> argparse.Action:
    """Add ``--tracer NAME`` (``several``: ``--tracer NAME [NAME ...]``), default ``builtin``.

    Names are not checked by argparse: the library checks them
    (:func:`nnunetv2_neurino.tracing.registry.check_tracer`), so every command refuses an unknown tracer
    with the same message (exit 2).
    """
    from nnunetv2_neurino.tracing.registry import BUILTIN, TRACER_NAMES

    default = [BUILTIN] if several else BUILTIN
    kwargs.setdefault("help", f"tracer: {', '.join(TRACER_NAMES)} (default {BUILTIN}; Vaa3D tracers need "
                              "VAA3D_BIN or vaa3d on PATH)")
    return parser.add_argument("--tracer", nargs="+" if several else None, default=default, metavar="NAME",
                               **kwargs)


@contextmanager
def flag_names(flags: Mapping[str, str]) -> Iterator[None]:
    """Re-raise a NeurinoError with the library parameter names in ``flags`` written as their flags.

    ``flags`` maps parameter names to flags, e.g. ``{"min_component_size": "--min-size"}``. A name is
    replaced where it stands as a word of its own, not inside a path or file name (no letter, digit,
    ``_ - /`` or ``\\`` beside it, nor a ``.`` that joins it to another word).
    """
    try:
        yield
    except NeurinoError as e:
        if not flags:
            raise
        names = "|".join(map(re.escape, sorted(flags, key=len, reverse=True)))
        pattern = re.compile(rf"(?<![\w./\\-])({names})(?![\w/\\-]|\.\w)")
        raise NeurinoError(pattern.sub(lambda m: flags[m.group(1)], str(e))) from None
