"""Make the planned patch size divisible by a network's total stride, and record it in the plans.

nnU-Net plans a patch for its own U-Net; a network with other strides (NeurINO: total stride 16, or 32
with the stride-4 stem) needs every patch axis to be a multiple of its total stride on that axis.
:class:`~nnunetv2_neurino.trainers.base.OwnNetworkTrainer` changes the patch in ``initialize()`` and writes
it into ``plans_manager.plans`` before ``on_train_start`` saves ``plans.json``, so the predictor uses the
same patch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def patch_divisible_by(patch_size: Sequence[int], total_stride: Sequence[int]) -> list[int]:
    """Round each patch axis DOWN to a multiple of the total stride on that axis (at least one multiple).

    Rounding down keeps the patch within nnU-Net's memory-based plan; a patch smaller than the stride is
    raised to one stride.

    Parameters
    ----------
    patch_size : patch size per axis, array order (z, y, x), in voxels.
    total_stride : the network's total downsampling factor per axis, same order.

    Returns
    -------
    list of int, the adjusted patch size.
    """
    patch = np.asarray(patch_size, dtype=int)
    stride = np.asarray(total_stride, dtype=int)
    if patch.shape != stride.shape or (stride < 1).any():
        raise ValueError(f"patch {list(patch_size)} and total stride {list(total_stride)} must have the same "
                         f"length and positive strides")
    return [int(v) for v in np.maximum(patch // stride, 1) * stride]


def fit_patch_to_network(patch_size: Sequence[int],
                         total_stride_for: Callable[[list[int]], Sequence[int]],
                         max_rounds: int = 8) -> list[int]:
    """Adjust a patch until it is divisible by the total stride of the network built for that patch.

    The strides of a network may themselves depend on the patch (an axis too short to halve gets stride 1),
    so the adjustment is repeated until the patch is a fixed point: ``total_stride_for(p)`` then divides
    ``p`` and a network built for the saved patch has exactly the strides used in training.

    Parameters
    ----------
    patch_size : planned patch, (z, y, x) voxels.
    total_stride_for : maps a patch to the network's total stride per axis for that patch.

    Returns
    -------
    list of int, the fixed-point patch.
    """
    patch = [int(p) for p in patch_size]
    for _ in range(max_rounds):
        adjusted = patch_divisible_by(patch, total_stride_for(patch))
        if adjusted == patch:
            return patch
        patch = adjusted
    raise RuntimeError(f"patch size did not settle after {max_rounds} adjustments (last {patch})")


def write_patch_size(trainer, patch_size: Sequence[int]) -> None:
    """Set ``patch_size`` in the trainer's configuration manager AND in its plans dict (saved as plans.json).

    ``PlansManager.get_configuration`` returns a cached deep copy, so both places are written explicitly.
    """
    patch = [int(p) for p in patch_size]
    trainer.plans_manager.plans["configurations"][trainer.configuration_name]["patch_size"] = patch
    trainer.configuration_manager.configuration["patch_size"] = patch
