"""Deep supervision driven by the network's own strides, and losses computed in fp32.

nnU-Net derives the deep-supervision scales from the plan's ``pool_op_kernel_sizes`` and gives the lowest
output weight 0. A network with its own strides (NeurINO, MedNeXt) exposes ``output_strides`` (per output,
per axis total stride, full resolution first); the scales and the released weights 1, ½, ¼, ⅛, 1/16
(normalised) come from there (nnU-Net v2 and the paper, supplement §9).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from nnunetv2.training.loss.compound_losses import DC_and_BCE_loss, DC_and_CE_loss
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss
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


class NetworkStridesDeepSupervisionMixin:
    """Deep supervision from ``network.output_strides``; ``ds_weights=None`` means halving weights."""

    ds_weights: Sequence[float] | None = None

    def _plain_network(self) -> nn.Module:
        return unwrap_network(self.network)

    def _get_deep_supervision_scales(self):
        if not self.enable_deep_supervision:
            return None
        return scales_from_output_strides(self._plain_network().output_strides)

    def _deep_supervision_weights(self, n_outputs: int) -> np.ndarray:
        if self.ds_weights is None:
            return halving_weights(n_outputs)
        weights = np.asarray(self.ds_weights, dtype=np.float64)[:n_outputs]
        if len(weights) != n_outputs:
            raise ValueError(f"{type(self).__name__}.ds_weights has {len(self.ds_weights)} entries for "
                             f"{n_outputs} network outputs")
        return weights / weights.sum()

    def _build_segmentation_loss(self) -> nn.Module:
        """Dice + CE (Dice + BCE for regions) per output, as nnU-Net builds it; override for other losses."""
        if self.label_manager.has_regions:
            return DC_and_BCE_loss({}, {"batch_dice": self.configuration_manager.batch_dice, "do_bg": True,
                                        "smooth": 1e-5, "ddp": self.is_ddp},
                                   use_ignore_label=self.label_manager.ignore_label is not None,
                                   dice_class=MemoryEfficientSoftDiceLoss)
        return DC_and_CE_loss({"batch_dice": self.configuration_manager.batch_dice, "smooth": 1e-5,
                               "do_bg": False, "ddp": self.is_ddp}, {}, weight_ce=1, weight_dice=1,
                              ignore_label=self.label_manager.ignore_label,
                              dice_class=MemoryEfficientSoftDiceLoss)

    def _build_loss(self):
        loss = self._build_segmentation_loss()
        if self.enable_deep_supervision:
            n_outputs = len(self._get_deep_supervision_scales())
            loss = DeepSupervisionWrapper(loss, self._deep_supervision_weights(n_outputs))
        return Float32Loss(loss)

    def set_deep_supervision_enabled(self, enabled: bool):
        network = self._plain_network()
        decoder = getattr(network, "decoder", network)
        decoder.deep_supervision = enabled
