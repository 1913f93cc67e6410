"""Data-pipeline transforms appending topology channels to ``segmentation`` (nnU-Net keeps only these two)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from batchgeneratorsv2.transforms.spatial.mirroring import MirrorTransform
from batchgeneratorsv2.transforms.spatial.spatial import SpatialTransform
from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms
from batchgeneratorsv2.transforms.utils.deep_supervision_downsampling import DownsampleSegForDSTransform
from batchgeneratorsv2.transforms.utils.remove_label import RemoveLabelTansform
from scipy import ndimage
from scipy.spatial import cKDTree

from nnunetv2_neurino.errors import NeurinoError
from nnunetv2_neurino.losses.skeleton_utils import neighbour_count, skeleton_tube
from nnunetv2_neurino.losses.transforms import (
    SkeletonRecallTubeTransform,
    TopologyGraphTransform,
    graph_channels,
)
from nnunetv2_neurino.testing.phantoms import y_tube

SHAPE = (40, 40, 40)


def _seg(mask: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(mask.astype(np.int16))[None]


def _check_graph(label: np.ndarray, nodes: np.ndarray, branches: np.ndarray) -> None:
    """Independent checks of a graph map pair against the label it came from."""
    fg = label > 0
    assert not (nodes > 0)[~fg].any() and not (branches > 0)[~fg].any()
    assert not ((nodes > 0) & (branches > 0)).any()
    skel = (nodes > 0) | (branches > 0)
    nb = neighbour_count(skel)
    # every node voxel has != 2 skeleton neighbours, every branch voxel exactly 2
    assert np.all(nb[nodes > 0] != 2) and np.all(nb[branches > 0] == 2)


def test_y_tube_graph_and_channel_counts():
    label = y_tube(SHAPE, 2.0)
    seg = _seg(label)
    out = TopologyGraphTransform()(segmentation=seg.clone())["segmentation"]
    assert out.shape == (3, *SHAPE) and out.dtype == torch.int16
    assert torch.equal(out[0], seg[0])
    nodes, branches = out[1].numpy(), out[2].numpy()
    _check_graph(label, nodes, branches)
    skel = (nodes > 0) | (branches > 0)
    nb = neighbour_count(skel)
    # a Y: 3 endpoints + 1 junction node, 3 branches
    assert nodes.max() == 4 and branches.max() == 3
    assert int((skel & (nb == 1)).sum()) == 3
    both = ComposeTransforms([SkeletonRecallTubeTransform(), TopologyGraphTransform()])
    out2 = both(segmentation=seg.clone())["segmentation"]
    assert out2.shape == (4, *SHAPE)
    tube = out2[1].numpy()
    assert set(np.unique(tube)) == {0, 1} and not tube[~label].any()
    assert torch.equal(out2[2:], out[1:])  # the graph reads channel 0 whatever was appended before


def test_tube_is_skeleton_dilated_by_two_step_cross():
    label = np.zeros((9, 9, 30), dtype=bool)
    label[1:8, 1:8, 2:28] = True  # 7x7 bar: skeleton is the centre line (4, 4, x)
    tube = skeleton_tube(label)
    # centre-line voxels → L1 distance ≤ 2 in the (z, y) cross-section: 13 voxels per slice mid-bar
    assert tube[:, :, 15].sum() == 13
    assert tube[4, 4, 15] and tube[2, 4, 15] and tube[3, 5, 15] and not tube[2, 5, 15]
    thin = np.zeros((9, 9, 30), dtype=bool)
    thin[4, 4:6, 2:28] = True
    assert np.array_equal(skeleton_tube(thin) & ~thin, np.zeros_like(thin))  # masked by the label


def test_alignment_after_spatial_augmentation_and_ds_downsampling():
    torch.manual_seed(0)
    label = y_tube(SHAPE, 2.0)
    pipeline = ComposeTransforms([
        SpatialTransform((32, 32, 32), patch_center_dist_from_border=0, random_crop=False, p_rotation=1.0,
                         rotation=(0.3, 0.6), p_scaling=1.0, scaling=(0.9, 1.1), border_mode_seg="constant",
                         padding_value_seg=-1),
        MirrorTransform(allowed_axes=(0, 1, 2)),
        RemoveLabelTansform(-1, 0),
        SkeletonRecallTubeTransform(),
        TopologyGraphTransform(),
        DownsampleSegForDSTransform(ds_scales=[[1, 1, 1], [0.5, 0.5, 0.5]]),
    ])
    data = pipeline(image=torch.from_numpy(label.astype(np.float32))[None], segmentation=_seg(label))
    segs = data["segmentation"]
    assert isinstance(segs, list) and [tuple(s.shape) for s in segs] == [(4, 32, 32, 32), (4, 16, 16, 16)]
    full = segs[0].numpy()
    aug_label = full[0]
    assert aug_label.min() >= 0 and aug_label.sum() > 100  # augmentation kept the tube in the patch
    # recompute from the augmented label: channels are exactly aligned with it
    nodes, branches = graph_channels(aug_label)
    assert np.array_equal(full[2], nodes) and np.array_equal(full[3], branches)
    assert np.array_equal(full[1], skeleton_tube(aug_label))
    _check_graph(aug_label, full[2], full[3])


def test_flip_equivariance_of_the_skeleton():
    label = y_tube(SHAPE, 2.0)
    _, branches = graph_channels(label)
    nodes_f, branches_f = graph_channels(label[:, ::-1, :].copy())
    assert branches.max() == branches_f.max() == 3 and nodes_f.max() == 4
    skel = np.argwhere(graph_channels(label)[0] + branches > 0)
    skel_f = np.argwhere(nodes_f + branches_f > 0)
    skel_f[:, 1] = SHAPE[1] - 1 - skel_f[:, 1]  # flip back
    d, _ = cKDTree(skel).query(skel_f)
    assert d.max() <= 1.5  # thinning order may move the centre line by one voxel, not more


def test_ignore_label_and_padding_are_background():
    label = y_tube(SHAPE, 2.0).astype(np.int16)
    label[:, :, :6] = -1  # padding left over
    z_stem = np.argwhere(label[:, 20, 20] == 1)[:, 0]
    label[z_stem.min():z_stem.min() + 5] = np.where(label[z_stem.min():z_stem.min() + 5] == 1, 2, 0)
    both = ComposeTransforms([SkeletonRecallTubeTransform(ignore_label=2),
                              TopologyGraphTransform(ignore_label=2)])
    out = both(segmentation=torch.from_numpy(label)[None])["segmentation"].numpy()
    fg = label == 1
    assert not out[1][~fg].any() and not (out[2] > 0)[~fg].any() and not (out[3] > 0)[~fg].any()
    assert np.array_equal(out[2:], np.stack(graph_channels(fg.astype(np.int16))))


def test_empty_label_and_dtype_overflow():
    zeros = torch.zeros((1, 8, 8, 8), dtype=torch.int16)
    empty = TopologyGraphTransform()(segmentation=zeros)["segmentation"]
    assert empty.shape == (3, 8, 8, 8) and not empty.any()
    many = np.zeros((1, 40, 40), dtype=np.int8)
    many[0, ::2, ::2] = 1  # 400 isolated points → 400 nodes, more than int8 holds
    with pytest.raises(NeurinoError, match="dtype"):
        TopologyGraphTransform()(segmentation=torch.from_numpy(many)[None])
    with pytest.raises(NeurinoError, match="per sample"):
        TopologyGraphTransform()(segmentation=torch.zeros((1, 1, 4, 4, 4), dtype=torch.int16))
    assert ndimage.label(many[0])[1] == 400
