"""batchgeneratorsv2 transforms that append integer channels to ``data_dict['segmentation']``.

nnU-Net's loader keeps only ``image`` and ``segmentation``, so everything a topology loss needs
from the label travels as extra channels of ``segmentation``. Insert these transforms in
``get_training_transforms`` **after the spatial augmentation and ``RemoveLabelTansform(-1, 0)``, before
``DownsampleSegForDSTransform``** (which then downsamples the extra channels with the label). Each
transform reads channel 0 (the label) and appends its channels at the end, in this order:

- :class:`SkeletonRecallTubeTransform` → 1 channel: the Skeleton Recall tube (0/1).
- :class:`TopologyGraphTransform` → 2 channels: GT node ids (endpoints and junctions of the 26-connected
  skeleton, 0 = none, 1..N) and branch ids (voxel chains between nodes, 0 = none, 1..K).

So with ``TopologyGraphTransform`` alone the target is ``[label, node_ids, branch_ids]`` (channels 0, 1,
2); with ``SkeletonRecallTubeTransform`` alone ``[label, tube]``. Pass the channel indices to
:class:`compound.TopologyCompoundLoss` (its defaults match these two layouts).

Input per sample: ``segmentation`` of shape (C, Z, Y, X) (or (C, Y, X)), any integer dtype (nnU-Net uses
int16). Foreground = label > 0 and != ``ignore_label``: nnU-Net's padding value −1 and the ignore label
are background for the skeleton (ignored voxels are never skeleton/tube voxels). Ids that do not fit the
segmentation dtype raise :class:`~nnunetv2_neurino.errors.NeurinoError`.
"""

from __future__ import annotations

import numpy as np
import torch
from batchgeneratorsv2.transforms.base.basic_transform import SegOnlyTransform

from nnunetv2_neurino.errors import NeurinoError
from nnunetv2_neurino.losses.skeleton_utils import (
    foreground_from_label,
    skeleton_graph_maps,
    skeleton_tube,
    skeletonize_robust,
)


def _label_numpy(segmentation: torch.Tensor, name: str) -> np.ndarray:
    if segmentation.ndim not in (3, 4):
        raise NeurinoError(
            f"{name}: segmentation must be (C, Z, Y, X) or (C, Y, X) per sample, "
            f"got {tuple(segmentation.shape)}")
    return segmentation[0].cpu().numpy()


def _append(segmentation: torch.Tensor, channels: list[np.ndarray], name: str) -> torch.Tensor:
    dtype = segmentation.dtype
    if dtype.is_floating_point:
        limit = float("inf")
    else:
        limit = torch.iinfo(dtype).max
    for ch in channels:
        if ch.size and ch.max() > limit:
            raise NeurinoError(
                f"{name}: {int(ch.max())} ids do not fit the segmentation dtype {dtype}; use a smaller patch")
    extra = torch.from_numpy(np.stack(channels)).to(device=segmentation.device, dtype=dtype)
    return torch.cat([segmentation, extra], dim=0)


def graph_channels(label: np.ndarray, ignore_label: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Node-id and branch-id maps of a label map's skeleton (pure function behind the transform).

    Parameters
    ----------
    label : ndarray of int, shape (Z, Y, X) or (Y, X)
    ignore_label : int, optional

    Returns
    -------
    (node_ids, branch_ids) : int32 arrays of the same shape (see
    :func:`skeleton_utils.skeleton_graph_maps`); both all-zero for an empty foreground.
    """
    fg = foreground_from_label(label, ignore_label)
    if not fg.any():
        zeros = np.zeros(fg.shape, dtype=np.int32)
        return zeros, zeros.copy()
    return skeleton_graph_maps(skeletonize_robust(fg))


class TopologyGraphTransform(SegOnlyTransform):
    """Append the GT skeleton graph (node ids, branch ids) as 2 integer channels of ``segmentation``.

    Parameters
    ----------
    ignore_label : int, optional
        nnU-Net ignore label; its voxels are background for the skeleton.
    """

    n_channels = 2

    def __init__(self, ignore_label: int | None = None) -> None:
        super().__init__()
        self.ignore_label = ignore_label

    def _apply_to_segmentation(self, segmentation: torch.Tensor, **params) -> torch.Tensor:
        label = _label_numpy(segmentation, type(self).__name__)
        nodes, branches = graph_channels(label, self.ignore_label)
        return _append(segmentation, [nodes, branches], type(self).__name__)


class SkeletonRecallTubeTransform(SegOnlyTransform):
    """Append the Skeleton Recall tube (skeleton ⊕ 2-step cross, masked by the label) as 1 channel (0/1).

    Parameters
    ----------
    ignore_label : int, optional
        nnU-Net ignore label; its voxels are outside the tube.
    """

    n_channels = 1

    def __init__(self, ignore_label: int | None = None) -> None:
        super().__init__()
        self.ignore_label = ignore_label

    def _apply_to_segmentation(self, segmentation: torch.Tensor, **params) -> torch.Tensor:
        label = _label_numpy(segmentation, type(self).__name__)
        tube = skeleton_tube(label, self.ignore_label).astype(np.int32)
        return _append(segmentation, [tube], type(self).__name__)
