"""Evaluation of prediction folders (`evaluate_folders`, `write_topology_summary`) and run comparison
(`compare`, `write_comparison`)."""

from __future__ import annotations

import importlib

_LAZY = {"evaluate_folders": "evaluate", "write_topology_summary": "evaluate", "collect_cases": "evaluate",
         "compare": "comparison", "write_comparison": "comparison"}


def __getattr__(name: str):
    # lazy: importing the package must not pull matplotlib / tracing into every process
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(name)
