"""Skeleton Recall loss (baseline of the paper's table 9).

The tube T (skeleton of the label dilated with a 2-step cross, masked by the label) is computed on the
CPU in the data pipeline by :class:`transforms.SkeletonRecallTubeTransform` and travels as an extra
``segmentation`` channel. The loss is

    L_SR = 1 − (Σ T·p + ε) / (Σ T + ε),   ε = 1e-5,

computed **per sample** (sums over the spatial axes) and averaged over the batch, so a sample without a
tube contributes exactly 0 and DDP gradient averaging over equal half batches equals the single-process
gradient. Added to Dice + CE with weight 1 (``SkeletonRecallLoss.weight``). Computed in float32.

Public API: ``skeleton_recall_loss(prob_fg, tube, smooth=1e-5) -> Tensor[B]``, ``SkeletonRecallLoss``.
"""

from __future__ import annotations

import torch

from nnunetv2_neurino.errors import NeurinoError


def skeleton_recall_loss(prob_fg: torch.Tensor, tube: torch.Tensor, smooth: float = 1e-5) -> torch.Tensor:
    """Per-sample Skeleton Recall loss.

    Parameters
    ----------
    prob_fg : Tensor (B, Z, Y, X) (or (B, Y, X)) float — foreground probability.
    tube : Tensor of the same shape — tube mask (non-zero = inside).
    smooth : float — ε.

    Returns
    -------
    Tensor (B,) in [0, 1].
    """
    if prob_fg.shape != tube.shape:
        raise NeurinoError(f"skeleton recall: prob_fg {tuple(prob_fg.shape)} and tube {tuple(tube.shape)} "
                           "differ")
    b = prob_fg.shape[0]
    t = (tube != 0).to(prob_fg.dtype).reshape(b, -1)
    p = prob_fg.reshape(b, -1)
    return 1.0 - ((t * p).sum(1) + smooth) / (t.sum(1) + smooth)


class SkeletonRecallLoss(torch.nn.Module):
    """Batch mean of :func:`skeleton_recall_loss`, in float32 with autocast off.

    Class attributes: ``weight = 1.0`` (used by :class:`compound.TopologyCompoundLoss`), ``smooth = 1e-5``.
    ``forward(prob_fg, tube) -> Tensor[]`` with shapes (B, Z, Y, X).
    """

    weight: float = 1.0
    smooth: float = 1e-5

    def forward(self, prob_fg: torch.Tensor, tube: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=prob_fg.device.type, enabled=False):
            p = prob_fg if prob_fg.dtype == torch.float64 else prob_fg.float()
            return skeleton_recall_loss(p, tube, self.smooth).mean()
