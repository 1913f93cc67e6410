"""Tracer registry: every tracer by name, one dispatch from a volume to its SWC forest.

``builtin`` is :func:`nnunetv2_neurino.tracing.trace.trace_mask` (probability maps through
:func:`~nnunetv2_neurino.tracing.trace.trace_probabilities`); ``vaa3d-app2`` / ``vaa3d-neutube`` /
``vaa3d-smarttracing`` run the Vaa3D plugins through :func:`nnunetv2_neurino.tracing.vaa3d.trace_with_vaa3d`
(needs Vaa3D: ``VAA3D_BIN`` or ``vaa3d`` on PATH). Traced coordinates are 0-based voxel positions
(x = last array axis), the frame of image-space gold-standard SWCs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from nnunetv2_neurino.errors import NeurinoError
from nnunetv2_neurino.swc import SWCTree
from nnunetv2_neurino.tracing.vaa3d import TRACERS as VAA3D_TRACERS

__all__ = ["BUILTIN", "TRACER_NAMES", "MIN_COMPONENT_SIZE", "check_tracer", "trace_volume", "get_tracer",
           "trace_with_and_without_lcc"]

BUILTIN = "builtin"
#: Every tracer name, the built-in one first.
TRACER_NAMES = (BUILTIN, *VAA3D_TRACERS)
#: Smallest traced component the built-in tracer keeps by default (voxels, 26-connectivity).
MIN_COMPONENT_SIZE = 10

Tracer = Callable[[np.ndarray, Sequence[float]], SWCTree]


def check_tracer(name: str) -> str:
    """``name`` when it is a known tracer; NeurinoError listing the known ones otherwise."""
    if name not in TRACER_NAMES:
        raise NeurinoError(f"unknown tracer {name!r}: use one of {', '.join(TRACER_NAMES)}")
    return name


def trace_volume(volume: np.ndarray, spacing: Sequence[float] = (1.0, 1.0, 1.0), tracer: str = BUILTIN, *,
                 threshold: float = 0.5, min_component_size: int = MIN_COMPONENT_SIZE,
                 root: Sequence[float] | None = None, root_rule: str = "radius", prune_length: float = 0.0,
                 resample_step: int = 1, length_threshold: float = 1,
                 background_threshold: float | None = None) -> SWCTree:
    """Trace a (Z, Y, X) mask / label map (non-zero = foreground) or probability map (float) with ``tracer``.

    Parameters
    ----------
    volume : (Z, Y, X); float arrays are probabilities (foreground = p > ``threshold``).
    spacing : (z, y, x) voxel size; radii and ``prune_length`` are in its unit.
    tracer : one of :data:`TRACER_NAMES`.
    threshold : probability threshold.
    min_component_size, root, root_rule : built-in tracer only (see
        :func:`~nnunetv2_neurino.tracing.trace.trace_mask`); a Vaa3D tracer picks its own roots.
    prune_length, resample_step : post-processing of any tracer's forest.
    length_threshold, background_threshold : Vaa3D only (see
        :func:`~nnunetv2_neurino.tracing.vaa3d.trace_with_vaa3d`).
    """
    from nnunetv2_neurino.tracing.trace import (
        prune_short_branches,
        resample_chains,
        trace_mask,
        trace_probabilities,
    )

    check_tracer(tracer)
    is_prob = np.issubdtype(volume.dtype, np.floating)
    if tracer != BUILTIN:
        from nnunetv2_neurino.tracing.vaa3d import trace_with_vaa3d

        for given, name in ((root is not None, "root"), (root_rule != "radius", "root_rule")):
            if given:
                raise NeurinoError(f"{name} is used by the built-in tracer only ({tracer} places the tree "
                                   f"roots itself); drop {name} or use the {BUILTIN} tracer")
        tree = trace_with_vaa3d(volume, tracer, is_probability=is_prob, threshold=threshold,
                                background_threshold=background_threshold, length_threshold=length_threshold)
        if prune_length > 0:
            tree = prune_short_branches(tree, prune_length, spacing)
        return resample_chains(tree, resample_step) if resample_step > 1 else tree
    kwargs = dict(spacing=spacing, min_component_size=min_component_size, root=root,
                  prune_length=prune_length, resample_step=resample_step, root_rule=root_rule)
    if is_prob:
        return trace_probabilities(volume, threshold=threshold, **kwargs)
    return trace_mask(volume != 0, **kwargs)


def get_tracer(name: str) -> Tracer:
    """``(mask[z, y, x] bool, spacing_zyx) -> SWCTree`` for tracer ``name`` with default settings.

    A Vaa3D tracer is not started on an empty mask (the tree is empty).

    Raises
    ------
    NeurinoError : unknown name.
    """
    check_tracer(name)

    def run(mask: np.ndarray, spacing: Sequence[float]) -> SWCTree:
        if name != BUILTIN and not mask.any():
            return SWCTree.empty(f"{name}:<empty mask>")
        return trace_volume(np.asarray(mask, dtype=bool), spacing, name)

    return run


def trace_with_and_without_lcc(name: str, mask: np.ndarray,
                               spacing: Sequence[float]) -> tuple[SWCTree, SWCTree]:
    """(tree of ``mask``, tree of its largest 26-connected component) with tracer ``name``.

    The built-in tracer traces once (:func:`~nnunetv2_neurino.tracing.trace.trace_mask_and_largest_component`,
    same trees as tracing the two masks); other tracers run twice.
    """
    from nnunetv2_neurino.tracing.trace import keep_largest_component, trace_mask_and_largest_component

    if name == BUILTIN:
        return trace_mask_and_largest_component(mask, spacing=spacing, min_component_size=MIN_COMPONENT_SIZE)
    trace = get_tracer(name)
    return trace(mask, spacing), trace(keep_largest_component(mask), spacing)
