"""Evaluation of prediction folders (`evaluate_folders`, `write_topology_summary`) and run comparison."""

from __future__ import annotations


def __getattr__(name: str):
    # lazy: importing the package must not pull matplotlib / tracing into every process
    if name in ("evaluate_folders", "write_topology_summary", "collect_cases"):
        from nnunetv2_neurino.evaluation import evaluate

        return getattr(evaluate, name)
    if name in ("compare", "write_comparison"):
        from nnunetv2_neurino.evaluation import compare

        return getattr(compare, name)
    raise AttributeError(name)
