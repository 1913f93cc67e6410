"""Tracing: mask / probability map -> SWC (built-in skeleton tracer) and the Vaa3D adapter."""

from nnunetv2_neurino.tracing.trace import (
    prune_short_branches,
    resample_chains,
    trace_mask,
    trace_probabilities,
)

__all__ = ["trace_mask", "trace_probabilities", "prune_short_branches", "resample_chains"]
