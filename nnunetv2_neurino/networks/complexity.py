"""Parameter and FLOP counts of the package's networks (the paper's table 11; ``neurino model-info``).

Convention (the paper's and fvcore's): one multiply-add = one FLOP, counted for a batch of one volume of
``patch`` = (Z, Y, X) voxels in eval mode with deep supervision on.

Two counters are used:

* :func:`conv_linear_gflops` — table 11's implementation-independent count: the multiply-adds of every
  convolution (plain, depthwise, transposed) and every linear layer (``aten.convolution``, ``aten.addmm``,
  ``aten.mm``, ``aten.bmm``). It runs :class:`torch.utils.flop_counter.FlopCounterMode` on *meta* tensors
  (shapes only, no arithmetic), so a 64³ count takes well under a second. FlopCounterMode counts
  2 FLOPs per multiply-add; the value is halved.
* :func:`fvcore_gflops` — fvcore's ``FlopCountAnalysis`` (a traced real forward, seconds per model at 64³).
  Its ``by_operator()`` keys that are conv / linear work (``conv``, ``linear``, ``addmm``, ``mm``,
  ``matmul``, ``bmm``, ``einsum``) give the same conv + linear figure; its total also counts norms
  (``layer_norm``, ``batch_norm``, ``group_norm``: how much depends on how a norm is written).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch import nn
from torch.func import functional_call
from torch.utils.flop_counter import FlopCounterMode

from nnunetv2_neurino.errors import NeurinoError

#: fvcore ``by_operator()`` keys counted as conv + linear multiply-adds.
FVCORE_CONV_LINEAR_OPS = ("conv", "linear", "addmm", "mm", "matmul", "bmm", "einsum")


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (trainable or not) of ``model``; buffers (BatchNorm statistics) excluded."""
    return sum(p.numel() for p in model.parameters())


def _check_patch(patch: Sequence[int]) -> tuple[int, int, int]:
    p = tuple(int(v) for v in patch)
    if len(p) != 3 or any(v < 1 for v in p):
        raise NeurinoError(f"patch {list(patch)!r}: expected 3 positive sizes (z, y, x)")
    return p  # type: ignore[return-value]


def _in_channels(model: nn.Module) -> int:
    first = next(m for m in model.modules() if isinstance(m, nn.Conv3d))
    return first.in_channels


def conv_linear_gflops(model: nn.Module, patch: Sequence[int] = (64, 64, 64)) -> float:
    """Conv + linear multiply-adds (GFLOPs, fvcore convention) of one forward pass on ``(1, C, *patch)``.

    Runs on meta tensors (no memory for activations, no arithmetic); ``model`` itself is not modified
    (its parameters and buffers are replaced by meta copies for the call only). Eval mode is used.
    """
    p = _check_patch(patch)
    state = {k: torch.empty_like(v, device="meta") for k, v in model.state_dict(keep_vars=True).items()}
    x = torch.empty((1, _in_channels(model), *p), device="meta")
    was_training = model.training
    model.eval()
    try:
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            functional_call(model, state, (x,))
    finally:
        model.train(was_training)
    return counter.get_total_flops() / 2 / 1e9


def fvcore_gflops(model: nn.Module, patch: Sequence[int] = (64, 64, 64)) -> dict[str, object]:
    """fvcore ``FlopCountAnalysis`` of one real forward pass on ``(1, C, *patch)`` zeros in eval mode.

    Returns
    -------
    dict with ``conv_linear`` (GFLOPs of the :data:`FVCORE_CONV_LINEAR_OPS` operators), ``total`` (fvcore's
    total, norms included), ``by_operator`` (operator name → GFLOPs) and ``by_module_operator`` (module
    name → operator name → GFLOPs; "" is the whole model).
    """
    p = _check_patch(patch)
    x = torch.zeros((1, _in_channels(model), *p))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit deprecation (at fvcore's import) and tracer warnings
            from fvcore.nn import FlopCountAnalysis

            fca = FlopCountAnalysis(model, x)
            fca.unsupported_ops_warnings(False)
            fca.uncalled_modules_warnings(False)
            fca.tracer_warnings("none")
            by_op = {k: v / 1e9 for k, v in fca.by_operator().items()}
            total = fca.total() / 1e9
            by_mod = {m: {k: v / 1e9 for k, v in ops.items()}
                      for m, ops in fca.by_module_and_operator().items()}
    finally:
        model.train(was_training)
    conv_linear = sum(v for k, v in by_op.items() if k in FVCORE_CONV_LINEAR_OPS)
    return {"conv_linear": conv_linear, "total": total, "by_operator": by_op, "by_module_operator": by_mod}
