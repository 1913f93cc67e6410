"""Tracing: mask / probability map -> SWC (built-in skeleton tracer), the Vaa3D adapter, the tracer
registry (:mod:`~nnunetv2_neurino.tracing.registry`) and file / folder tracing
(:mod:`~nnunetv2_neurino.tracing.folder`)."""

from nnunetv2_neurino.tracing.trace import (
    prune_short_branches,
    resample_chains,
    trace_mask,
    trace_probabilities,
)

__all__ = ["trace_mask", "trace_probabilities", "prune_short_branches", "resample_chains"]
