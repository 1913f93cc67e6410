"""Skeleton helpers shared by the TASL losses and the data-pipeline transforms (CPU, numpy).

Public functions
----------------
``foreground_from_label(label, ignore_label=None) -> bool array``
    Binary foreground of an integer label map: ``label > 0`` and not the ignore label. nnU-Net's padding
    value ``-1`` and the ignore label count as background for skeletons.
``skeletonize_robust(mask) -> bool array``
    ``skimage.morphology.skeletonize`` plus a fix for scikit-image issue #3757 (objects with an even,
    axis-aligned cross-section, e.g. a 4x4 bar, thin to nothing): every connected component that lost its
    whole skeleton is skeletonized again after a one-voxel corner dilation and the result is masked by the
    component (falling back to its deepest voxel), so a non-empty object always keeps a skeleton.
``skeletonize_keep_branches(mask) -> bool array``
    Stronger variant used by the tracer: also keeps even-width branches of a component (a 2-voxel T).
``skeleton_graph_maps(skeleton) -> (node_ids, branch_ids)``
    Node map (endpoints and junctions of the 26-connected skeleton, one id per node cluster) and
    branch-id map (the chains of skeleton voxels between nodes, ids 1..K; 0 = none).
``skeleton_tube(label, ignore_label=None) -> bool array``
    Skeleton Recall tube: skeleton dilated twice with the face-connected cross, masked by the label.

Arrays are indexed ``[z, y, x]`` (2D ``[y, x]`` also works); all functions are pure.
"""

from __future__ import annotations

import cc3d
import edt
import numpy as np
from scipy import ndimage
from skimage.morphology import skeletonize


def foreground_from_label(label: np.ndarray, ignore_label: int | None = None) -> np.ndarray:
    """Binary foreground of an integer label map.

    Parameters
    ----------
    label : ndarray of int, shape (Z, Y, X) or (Y, X)
        Label map; values ``<= 0`` (background, nnU-Net padding ``-1``) and ``ignore_label`` are background.
    ignore_label : int, optional
        nnU-Net ignore label (unknown voxels), treated as background.

    Returns
    -------
    ndarray of bool, same shape as ``label``.
    """
    fg = np.asarray(label) > 0
    if ignore_label is not None:
        fg &= np.asarray(label) != ignore_label
    return fg


def _connectivity(ndim: int) -> int:
    return 26 if ndim == 3 else 8


def _corner_grown(mask: np.ndarray) -> np.ndarray:
    """``mask`` dilated by a one-voxel shift along every axis (even widths become odd)."""
    grown = mask.copy()
    for axis in range(mask.ndim):
        shifted = np.zeros_like(grown)
        src = [slice(None)] * mask.ndim
        dst = [slice(None)] * mask.ndim
        src[axis], dst[axis] = slice(0, -1), slice(1, None)
        shifted[tuple(dst)] = grown[tuple(src)]
        grown |= shifted
    return grown


def _restore_lost_components(mask: np.ndarray, skel: np.ndarray) -> np.ndarray:
    """Give every component of ``mask`` without a skeleton voxel the skeleton of its corner-grown copy
    masked by the component, or its deepest voxel."""
    labels = cc3d.connected_components(mask, connectivity=_connectivity(mask.ndim))
    n = int(labels.max())
    kept = np.zeros(n + 1, dtype=bool)
    kept[np.unique(labels[skel])] = True
    kept[0] = True
    lost = np.flatnonzero(~kept)
    for comp_id in lost:  # rare: only components that thinned to nothing
        comp = labels == comp_id
        sub = skeletonize(_corner_grown(comp)).astype(bool) & comp
        if not sub.any():
            depth = edt.edt(comp, black_border=True)   # outside counts as background: centre of a full block
            sub = np.zeros_like(comp)
            sub[np.unravel_index(int(np.argmax(depth)), comp.shape)] = True
        skel |= sub
    return skel


def skeletonize_robust(mask: np.ndarray) -> np.ndarray:
    """Skeleton of a binary 2D/3D mask that never loses a whole connected component.

    Parameters
    ----------
    mask : ndarray of bool, shape (Z, Y, X) or (Y, X)

    Returns
    -------
    ndarray of bool, same shape: ``skimage.morphology.skeletonize(mask)``, where components whose
    skeleton vanished (scikit-image issue #3757) get a skeleton of their one-voxel corner dilation masked
    by the component, or their deepest voxel (largest Euclidean distance to the background).
    """
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return np.zeros_like(mask)
    return _restore_lost_components(mask, skeletonize(mask).astype(bool))


def skeletonize_keep_branches(mask: np.ndarray) -> np.ndarray:
    """Skeleton that also keeps even-width *branches* of a component (the tracer's skeleton).

    :func:`skeletonize_robust` repairs components that lose their whole skeleton; a 2-voxel-thick branch
    of a T still thins away while the rest of the component keeps its skeleton (scikit-image #3757).
    Here the skeleton of ``mask`` and that of each component's corner-grown copy (masked by the
    component; even widths become odd there, odd ones even) are joined and thinned again, so each branch
    survives in at least one of them; components still without a skeleton are then repaired as in
    :func:`skeletonize_robust`.
    About three times the cost of one ``skeletonize``; a component's skeleton depends on that component
    only, and every step looks at a bounded neighbourhood, so
    block-wise tracing with a halo reproduces it.

    Parameters
    ----------
    mask : ndarray of bool, shape (Z, Y, X) or (Y, X)

    Returns
    -------
    ndarray of bool, same shape, one voxel thick, inside ``mask``.
    """
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return np.zeros_like(mask)
    joined = skeletonize(mask).astype(bool)
    labels = cc3d.connected_components(mask, connectivity=_connectivity(mask.ndim))
    # grown per component, so components one voxel apart never merge (each keeps its own skeleton)
    for comp_id, box in enumerate(ndimage.find_objects(labels), start=1):
        box = tuple(slice(max(b.start - 1, 0), b.stop + 1) for b in box)
        comp = labels[box] == comp_id
        joined[box] |= skeletonize(_corner_grown(comp)).astype(bool) & comp
    return _restore_lost_components(mask, skeletonize(joined).astype(bool))


def neighbour_count(skeleton: np.ndarray) -> np.ndarray:
    """Number of skeleton neighbours (26-connected in 3D, 8 in 2D) of every voxel.

    Parameters
    ----------
    skeleton : ndarray of bool, shape (Z, Y, X) or (Y, X)

    Returns
    -------
    ndarray of int32, same shape (the count at background voxels is meaningless but computed).
    """
    s = np.asarray(skeleton, dtype=np.int32)
    full = ndimage.convolve(s, np.ones((3,) * s.ndim, dtype=np.int32), mode="constant", cval=0)
    return full - s


def skeleton_graph_maps(skeleton: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Node and branch maps of a thin skeleton.

    Nodes are skeleton voxels whose number of 26-neighbours (8 in 2D) is not 2: endpoints (1), isolated
    voxels (0) and junctions (>= 3). Touching node voxels form one node (one id). Branches are the
    26-connected components of the remaining skeleton voxels (chains between nodes, or closed loops).

    Parameters
    ----------
    skeleton : ndarray of bool, shape (Z, Y, X) or (Y, X)

    Returns
    -------
    node_ids : ndarray of int32, same shape; 0 = not a node, 1..N = node cluster id.
    branch_ids : ndarray of int32, same shape; 0 = not on a branch, 1..K = branch id.
        ``node_ids > 0`` and ``branch_ids > 0`` are disjoint and their union is the skeleton.
    """
    skel = np.asarray(skeleton, dtype=bool)
    conn = _connectivity(skel.ndim)
    nb = neighbour_count(skel)
    nodes = skel & (nb != 2)
    node_ids = cc3d.connected_components(nodes, connectivity=conn).astype(np.int32)
    branch_ids = cc3d.connected_components(skel & ~nodes, connectivity=conn).astype(np.int32)
    return node_ids, branch_ids


def skeleton_tube(label: np.ndarray, ignore_label: int | None = None) -> np.ndarray:
    """Skeleton Recall tube of a label map.

    Skeletonize the foreground, dilate twice with the face-connected cross (6-neighbourhood in 3D,
    4 in 2D; together an L1 ball of radius 2), and mask by the foreground.

    Parameters
    ----------
    label : ndarray of int, shape (Z, Y, X) or (Y, X)
    ignore_label : int, optional
        Ignore-label voxels are outside the tube.

    Returns
    -------
    ndarray of bool, same shape.
    """
    fg = foreground_from_label(label, ignore_label)
    if not fg.any():
        return fg
    skel = skeletonize_robust(fg)
    cross = ndimage.generate_binary_structure(fg.ndim, 1)
    return ndimage.binary_dilation(skel, structure=cross, iterations=2) & fg
