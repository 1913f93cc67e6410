"""clDice (optional comparison): soft skeletons by iterated min/max pooling.

soft_erode = min over the face-connected cross (three 1-D min-pools), soft_dilate = 3³ max-pool,
soft_open = dilate(erode(x)); the soft skeleton accumulates relu(x − open(x)) over ``iterations``
successive erosions. With S_p, S_g the soft skeletons of prediction p and label g (per sample):

    Tprec = (Σ S_p·g + ε)/(Σ S_p + ε),  Tsens = (Σ S_g·p + ε)/(Σ S_g + ε),
    clDice loss = 1 − 2·Tprec·Tsens/(Tprec + Tsens),

averaged over the batch (ε = 1e-5; a sample with empty label and prediction gives 0). float32.

Public API: ``soft_skeleton(x, iterations)``, ``cldice_loss(prob_fg, target_fg, iterations) -> Tensor[B]``,
``ClDiceLoss``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nnunetv2_neurino.errors import NeurinoError


def _check(x: torch.Tensor) -> None:
    if x.ndim not in (4, 5):
        raise NeurinoError(f"clDice expects (B, C, Y, X) or (B, C, Z, Y, X) tensors, got {tuple(x.shape)}")


def soft_erode(x: torch.Tensor) -> torch.Tensor:
    """Soft erosion: minimum over the face-connected cross. x: (B, C, [Z,] Y, X)."""
    _check(x)
    nd = x.ndim - 2
    pool = F.max_pool3d if nd == 3 else F.max_pool2d
    outs = []
    for axis in range(nd):
        k = [1] * nd
        p = [0] * nd
        k[axis], p[axis] = 3, 1
        outs.append(-pool(-x, tuple(k), stride=1, padding=tuple(p)))
    return torch.stack(outs).amin(0)


def soft_dilate(x: torch.Tensor) -> torch.Tensor:
    """Soft dilation: 3-wide max-pool. x: (B, C, [Z,] Y, X)."""
    _check(x)
    pool = F.max_pool3d if x.ndim == 5 else F.max_pool2d
    return pool(x, 3, stride=1, padding=1)


def soft_skeleton(x: torch.Tensor, iterations: int = 3) -> torch.Tensor:
    """Soft skeleton of a probability map x (B, C, [Z,] Y, X) with values in [0, 1]; same shape."""
    skel = F.relu(x - soft_dilate(soft_erode(x)))
    for _ in range(iterations):
        x = soft_erode(x)
        delta = F.relu(x - soft_dilate(soft_erode(x)))
        skel = skel + F.relu(delta - skel * delta)
    return skel


def cldice_loss(prob_fg: torch.Tensor, target_fg: torch.Tensor, iterations: int = 3,
                smooth: float = 1e-5) -> torch.Tensor:
    """Per-sample clDice loss.

    Parameters
    ----------
    prob_fg : Tensor (B, Z, Y, X) (or (B, Y, X)) float in [0, 1].
    target_fg : Tensor of the same shape, binary (non-zero = foreground).
    iterations : int — soft-skeleton iterations (≥ the largest tube radius in voxels).
    smooth : float — ε.

    Returns
    -------
    Tensor (B,) in [0, 1].
    """
    if prob_fg.shape != target_fg.shape:
        raise NeurinoError(f"clDice: prob_fg {tuple(prob_fg.shape)} and target {tuple(target_fg.shape)} "
                           "differ")
    p = prob_fg[:, None]
    g = (target_fg != 0).to(prob_fg.dtype)[:, None]
    sp, sg = soft_skeleton(p, iterations), soft_skeleton(g, iterations)
    b = p.shape[0]
    dims = 1
    tprec = ((sp * g).reshape(b, -1).sum(dims) + smooth) / (sp.reshape(b, -1).sum(dims) + smooth)
    tsens = ((sg * p).reshape(b, -1).sum(dims) + smooth) / (sg.reshape(b, -1).sum(dims) + smooth)
    return 1.0 - 2.0 * tprec * tsens / (tprec + tsens)


class ClDiceLoss(torch.nn.Module):
    """Batch mean of :func:`cldice_loss` in float32 (autocast off).

    Class attributes: ``weight = 1.0`` (of the term added to Dice + CE),
    ``iterations = 3``, ``smooth = 1e-5``. ``forward(prob_fg, target_fg) -> Tensor[]``.
    """

    weight: float = 1.0
    iterations: int = 3
    smooth: float = 1e-5

    def forward(self, prob_fg: torch.Tensor, target_fg: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=prob_fg.device.type, enabled=False):
            p = prob_fg if prob_fg.dtype == torch.float64 else prob_fg.float()
            return cldice_loss(p, target_fg, self.iterations, self.smooth).mean()
