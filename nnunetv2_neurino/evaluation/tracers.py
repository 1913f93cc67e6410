"""Tracer registry for evaluation: a name → function ``(mask[z, y, x] bool, spacing_zyx) -> SWCTree``.

``builtin`` is :func:`nnunetv2_neurino.tracing.trace_mask`. ``vaa3d-app2`` / ``vaa3d-neutube`` /
``vaa3d-smarttracing`` use the Vaa3D adapter :func:`nnunetv2_neurino.tracing.vaa3d.trace_with_vaa3d`
(needs a Vaa3D installation: ``VAA3D_BIN`` or ``vaa3d`` on PATH). Traced coordinates are 0-based
voxel positions (x = last array axis), the frame of image-space gold-standard SWCs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from nnunetv2_neurino.errors import NeurinoError

Tracer = Callable[[np.ndarray, Sequence[float]], object]

#: Smallest traced component kept by the built-in tracer (voxels, 26-connectivity).
MIN_COMPONENT_SIZE = 10


def _builtin(mask: np.ndarray, spacing: Sequence[float]):
    from nnunetv2_neurino.tracing.trace import trace_mask

    return trace_mask(mask, spacing=spacing, min_component_size=MIN_COMPONENT_SIZE)


def _vaa3d(name: str) -> Tracer:
    def run(mask: np.ndarray, spacing: Sequence[float]):
        from nnunetv2_neurino.tracing.vaa3d import trace_with_vaa3d

        if not mask.any():  # nothing to trace: skip starting Vaa3D on an empty image
            from nnunetv2_neurino.swc import SWCTree

            return SWCTree.empty(f"{name}:<empty mask>")
        return trace_with_vaa3d(mask, name)

    return run


def trace_with_and_without_lcc(name: str, mask: np.ndarray, spacing: Sequence[float]) -> tuple:
    """(tree of ``mask``, tree of its largest 26-connected component) with tracer ``name``.

    The built-in tracer traces once (:func:`~nnunetv2_neurino.tracing.trace.trace_mask_and_largest_component`,
    same trees as tracing the two masks); other tracers run twice.
    """
    if name == "builtin":
        from nnunetv2_neurino.tracing.trace import trace_mask_and_largest_component

        return trace_mask_and_largest_component(mask, spacing=spacing, min_component_size=MIN_COMPONENT_SIZE)
    from nnunetv2_neurino.evaluation.case import keep_largest_component

    trace = get_tracer(name)
    return trace(mask, spacing), trace(keep_largest_component(mask), spacing)


def get_tracer(name: str) -> Tracer:
    """The tracing function for ``name``: ``builtin`` or one of the Vaa3D names (``vaa3d-app2`` ...).

    Raises
    ------
    NeurinoError : unknown name.
    """
    if name == "builtin":
        return _builtin
    from nnunetv2_neurino.tracing.vaa3d import TRACERS

    if name in TRACERS:
        return _vaa3d(name)
    raise NeurinoError(f"unknown tracer {name!r}: use one of builtin, {', '.join(TRACERS)}")
