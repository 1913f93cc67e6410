"""Tracer registry for evaluation: a name → function ``(mask[z, y, x] bool, spacing_zyx) -> SWCTree``.

``builtin`` is :func:`nnunetv2_neurino.tracing.trace_mask`. ``vaa3d-<method>`` names use the Vaa3D
adapter of :mod:`nnunetv2_neurino.tracing` (needs a Vaa3D installation). Traced coordinates are 0-based
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


def _vaa3d(method: str) -> Tracer:
    def run(mask: np.ndarray, spacing: Sequence[float]):
        try:
            from nnunetv2_neurino.tracing import vaa3d
        except ImportError as e:
            raise NeurinoError(f"tracer 'vaa3d-{method}': the Vaa3D adapter is not available ({e})") from None
        trace = getattr(vaa3d, "trace_with_vaa3d", None)
        if trace is None:
            raise NeurinoError(f"tracer 'vaa3d-{method}': nnunetv2_neurino.tracing.vaa3d has no "
                               "trace_with_vaa3d function")
        return trace(mask, method=method)

    return run


def get_tracer(name: str) -> Tracer:
    """The tracing function for ``name`` (``builtin`` or ``vaa3d-app2`` / ``vaa3d-neutube`` / ...).

    Raises
    ------
    NeurinoError : unknown name.
    """
    if name == "builtin":
        return _builtin
    if name.startswith("vaa3d-") and len(name) > len("vaa3d-"):
        return _vaa3d(name[len("vaa3d-"):])
    raise NeurinoError(f"unknown tracer {name!r}: use 'builtin' or 'vaa3d-<method>' (e.g. vaa3d-app2)")
