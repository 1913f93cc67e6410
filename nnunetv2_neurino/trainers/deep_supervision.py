"""Deep supervision driven by the network's own strides, and losses computed in fp32 (pure helpers).

nnU-Net derives the deep-supervision scales from the plan's ``pool_op_kernel_sizes`` and gives the lowest
output weight 0. A network with its own strides (NeurINO, MedNeXt) exposes ``output_strides`` (per output,
per axis total stride, full resolution first); the scales and the released weights 1, ½, ¼, ⅛, 1/16
(normalised) come from there (nnU-Net v2 and the paper, supplement §9). Used by
:class:`~nnunetv2_neurino.trainers.base.OwnNetworkTrainer`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch._dynamo import OptimizedModule
from torch.nn.parallel import DistributedDataParallel


def unwrap_network(network: nn.Module) -> nn.Module:
    """The plain module inside DDP and/or ``torch.compile`` wrappers."""
    if isinstance(network, DistributedDataParallel):
        network = network.module
    if isinstance(network, OptimizedModule):
        network = network._orig_mod
    return network


def scales_from_output_strides(output_strides: Sequence[Sequence[int]]) -> list[list[float]]:
    """nnU-Net deep-supervision scales (fraction of the full size per axis) from per-output total strides.

    Parameters
    ----------
    output_strides : one (z, y, x) total stride per network output, full resolution first.

    Returns
    -------
    list of [1/sz, 1/sy, 1/sx] per output.
    """
    return [[1.0 / float(s) for s in strides] for strides in output_strides]


def halving_weights(n_outputs: int) -> np.ndarray:
    """Weights 1, ½, ¼, … for ``n_outputs`` outputs, normalised to sum 1 (the released NeurINO weights)."""
    weights = 0.5 ** np.arange(n_outputs, dtype=np.float64)
    return weights / weights.sum()


class Float32Loss(nn.Module):
    """Run a loss in fp32 with autocast off, whatever precision the network's outputs have."""

    def __init__(self, loss: nn.Module):
        super().__init__()
        self.loss = loss

    def forward(self, output, target):
        outputs = [o.float() for o in output] if isinstance(output, (list, tuple)) else output.float()
        device_type = (outputs[0] if isinstance(outputs, list) else outputs).device.type
        with torch.autocast(device_type=device_type, enabled=False):
            return self.loss(outputs, target)
