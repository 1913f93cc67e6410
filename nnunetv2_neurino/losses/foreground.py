"""Foreground probability and foreground label of a binary (background + one class) segmentation.

The one place where every topology loss (official and differentiable TASL, Skeleton Recall, clDice) turns
network logits and nnU-Net labels into what it compares: the softmax probability of class 1 and the
label's foreground with the ignore label counted as background.
"""

from __future__ import annotations

import torch

from nnunetv2_neurino.errors import NeurinoError


def foreground_probability(logits: torch.Tensor) -> torch.Tensor:
    """Softmax probability of the foreground class, (B, 2, Z, Y, X) logits → (B, Z, Y, X).

    Computed in float32 (float64 inputs stay float64) and differentiable: detach it where no gradient is
    wanted.

    Raises
    ------
    NeurinoError
        When the logits do not have exactly 2 channels (background + foreground): topology losses are
        defined for one foreground structure.
    """
    if logits.ndim < 3 or logits.shape[1] != 2:
        raise NeurinoError(
            f"topology losses support 2-class (background + foreground) outputs only; the network predicts "
            f"{logits.shape[1] if logits.ndim > 1 else '?'} classes (logits shape {tuple(logits.shape)})")
    dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
    return torch.softmax(logits.to(dtype), dim=1)[:, 1]


def label_foreground(label: torch.Tensor, ignore_label: int | None = None) -> torch.Tensor:
    """Boolean foreground of an integer label map: ``label > 0`` and not the ignore label (same shape)."""
    foreground = label > 0
    if ignore_label is not None:
        foreground &= label != ignore_label
    return foreground


def label_valid(label: torch.Tensor, ignore_label: int | None = None) -> torch.Tensor | None:
    """Boolean map of the voxels that are not the ignore label (None when there is no ignore label)."""
    return None if ignore_label is None else label != ignore_label
