"""Built-in tracer: binary mask or probability map -> SWC forest.

Pipeline: remove small components (cc3d) -> 3D skeleton (scikit-image, Lee's method, made robust to
even cross-sections by :func:`nnunetv2_neurino.losses.skeleton_utils.skeletonize_keep_branches`: the
TASL losses' ``skeletonize_robust`` repair plus even-width branches, scikit-image#3757) ->
26-connected skeleton graph -> minimum spanning forest (breaks cycles) -> one tree per component,
radius from the Euclidean distance transform (edt, spacing-aware) -> root at the largest-radius node
(``root_rule="radius"``) or where the fibre enters the volume (``"boundary"``, see
:mod:`nnunetv2_neurino.tracing.roots`), or, for the component nearest a given soma/seed point, at its
skeleton voxel nearest that point (type 1).
Coordinates are 0-based voxel positions, SWC x = last array axis.
"""

from __future__ import annotations

from collections.abc import Sequence

import cc3d
import numpy as np
from scipy.spatial import cKDTree

from nnunetv2_neurino.data.volumes import check_spacing
from nnunetv2_neurino.errors import NeurinoError
from nnunetv2_neurino.losses.skeleton_utils import skeletonize_keep_branches
from nnunetv2_neurino.swc import BASAL_DENDRITE, SOMA, SWCTree
from nnunetv2_neurino.tracing.registry import MIN_COMPONENT_SIZE
from nnunetv2_neurino.tracing.roots import check_root_rule, component_roots
from nnunetv2_neurino.tracing.skeleton_graph import neighbour_graph, orient_forest, spanning_forest

__all__ = ["trace_mask", "trace_mask_and_largest_component", "keep_largest_component", "trace_probabilities",
           "prune_short_branches", "resample_chains", "distance_to_background", "skeleton_points",
           "forest_from_skeleton", "foreground_box"]


def _check_spacing(spacing) -> np.ndarray:
    return np.asarray(check_spacing(spacing), dtype=np.float64)


def distance_to_background(fg: np.ndarray, points: np.ndarray, spacing=(1.0, 1.0, 1.0)) -> np.ndarray:
    """Euclidean distance from voxels ``points`` to the nearest background voxel centre of ``fg``.

    Same values as a full distance transform (``edt.edt(fg, anisotropy=spacing)`` read at ``points``;
    outside the array counts as foreground) but computed sparsely: the nearest background voxel of any
    foreground voxel is a 6-neighbour of the foreground (a step from it toward the query point along an
    axis where they differ gets closer, so lands in the foreground), so a k-d tree over that shell is enough.

    Parameters
    ----------
    fg : bool (Z, Y, X) foreground.
    points : int (K, 3) foreground voxel indices (z, y, x).
    spacing : (z, y, x) voxel size; distances in the same unit.

    Returns
    -------
    float64 (K,). When the array holds no background voxel at all, the distance to the first voxel
    outside the array is returned instead (so radii stay finite).
    """
    spacing = np.asarray(spacing, dtype=np.float64)
    shape = np.asarray(fg.shape)
    coords = np.argwhere(fg)
    strides = np.array([shape[1] * shape[2], shape[2], 1])
    fg_keys = np.sort(coords @ strides)
    six = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]])
    cand = (coords[:, None, :] + six[None]).reshape(-1, 3)
    cand = cand[np.all((cand >= 0) & (cand < shape), axis=1)]
    keys = np.unique(cand @ strides)
    pos = np.clip(np.searchsorted(fg_keys, keys), 0, max(fg_keys.shape[0] - 1, 0))
    shell_keys = keys[fg_keys[pos] != keys] if fg_keys.size else keys
    if shell_keys.size == 0:
        pts = np.asarray(points)
        return np.min(np.minimum(pts + 1, shape - pts) * spacing, axis=1).astype(np.float64)
    shell = np.stack(np.unravel_index(shell_keys, fg.shape), axis=1)
    dist, _ = cKDTree(shell * spacing).query(np.asarray(points) * spacing)
    return dist


def trace_mask(mask: np.ndarray, spacing: Sequence[float] = (1.0, 1.0, 1.0),
               min_component_size: int = MIN_COMPONENT_SIZE, root: Sequence[float] | None = None,
               offset: Sequence[int] = (0, 0, 0),
               prune_length: float = 0.0, resample_step: int = 1, root_rule: str = "radius") -> SWCTree:
    """Trace a binary mask into an SWC forest (one tree per 26-connected component).

    Parameters
    ----------
    mask : (Z, Y, X) array, non-zero = foreground.
    spacing : (z, y, x) voxel size; used for the distance transform (radii), edge lengths and the
        nearest-voxel search for ``root``. The skeleton itself is computed on the voxel grid.
    min_component_size : components with fewer voxels (26-connectivity) are removed first.
    root : optional soma / seed point (x, y, z) in SWC voxel coordinates (same frame as the output, i.e.
        including ``offset``). The component whose skeleton comes nearest is rooted at that skeleton voxel,
        which gets type 1 (soma); every other node has type 3.
    offset : (z, y, x) position of ``mask[0, 0, 0]`` in the full image (for crops); added to coordinates.
    prune_length : remove terminal branches (tip to branch point) shorter than this, in physical units;
        0 keeps everything (default, voxel-resolution output).
    resample_step : keep every ``resample_step``-th node along unbranched chains (roots, tips and branch
        points are always kept); 1 keeps every skeleton voxel (default).
    root_rule : where each tree is rooted (:mod:`nnunetv2_neurino.tracing.roots`): ``"radius"`` (default)
        its largest-radius node, the soma of a whole neuron; ``"boundary"`` the terminal where the fibre
        enters the volume (the volume is ``mask``, i.e. voxels ``offset .. offset + mask.shape - 1``),
        for fibres whose soma lies outside the stack. ``root`` overrides the rule for its component.

    Returns
    -------
    SWCTree, ids 1..N in depth-first order (parents first); ``xyz`` = (x, y, z) voxel coordinates,
    ``radius`` = distance from the skeleton voxel to the nearest background voxel, in voxels of the finest
    axis (``min(spacing)``); type 3, the seeded root type 1.
    """
    spacing = _check_spacing(spacing)
    check_root_rule(root_rule)
    fg, crop_offset = _clean_crop(mask, min_component_size, offset)
    if fg is None:
        return SWCTree.empty()
    return _trace_clean(fg, spacing, crop_offset, root, prune_length, resample_step, root_rule,
                        _volume_bounds(mask, offset))


def _volume_bounds(mask: np.ndarray, offset) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) inclusive voxel indices of ``mask`` in the output frame (``offset`` = its first voxel)."""
    lo = np.rint(np.asarray(offset, dtype=np.float64).reshape(3)).astype(np.int64)
    return lo, lo + np.asarray(np.shape(mask)[-3:], dtype=np.int64) - 1


def trace_mask_and_largest_component(mask: np.ndarray, spacing: Sequence[float] = (1.0, 1.0, 1.0),
                                     min_component_size: int = MIN_COMPONENT_SIZE,
                                     offset: Sequence[int] = (0, 0, 0),
                                     root_rule: str = "radius") -> tuple[SWCTree, SWCTree]:
    """Trace a mask once and also give the tree of its largest component (for keep-largest-component).

    The second tree has the nodes, radii and segments of
    ``trace_mask(keep_largest_component(mask), ...)`` (largest 26-connected component; ties: the one
    cc3d labels first, i.e. whose first voxel in C order comes first) at about half the cost of tracing
    twice: thinning, the distance to the background and the spanning forest only look at a voxel's own
    component (two 26-connected components never share a 26-neighbourhood, and the nearest background
    voxel of a component is never another component's voxel), so the largest component's tree is a
    tree of the full trace.

    Parameters
    ----------
    mask, spacing, min_component_size, offset, root_rule : as for :func:`trace_mask` (the rule looks at
        each component alone, so the largest component's root is the same in both trees).

    Returns
    -------
    (tree of the whole mask, tree of the largest component), ids 1..N each; both empty when the mask is
    empty or its largest component has fewer than ``min_component_size`` voxels.
    """
    spacing = _check_spacing(spacing)
    check_root_rule(root_rule)
    fg, crop_offset = _clean_crop(mask, 1, offset)
    if fg is None:
        return SWCTree.empty(), SWCTree.empty()
    labels = cc3d.connected_components(fg, connectivity=26)
    counts = np.bincount(labels.reshape(-1))
    counts[0] = 0
    largest = int(np.argmax(counts))
    if counts[largest] < min_component_size:
        return SWCTree.empty(), SWCTree.empty()
    if min_component_size > 1:
        fg = (counts >= min_component_size)[labels]
    tree = _trace_clean(fg, spacing, crop_offset, None, 0.0, 1, root_rule, _volume_bounds(mask, offset))
    zyx = np.rint(tree.to_zyx() - crop_offset).astype(np.int64)
    in_largest = labels[zyx[:, 0], zyx[:, 1], zyx[:, 2]] == largest
    return tree, tree.take(in_largest).renumbered()


def keep_largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 26-connected foreground component of a bool mask (z, y, x); empty stays empty.

    Ties: the component cc3d labels first (its first voxel in C order comes first), the same choice as
    :func:`trace_mask_and_largest_component`.
    """
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return mask
    labels = cc3d.connected_components(mask, connectivity=26)
    counts = np.bincount(labels.reshape(-1))
    counts[0] = 0
    return labels == int(np.argmax(counts))


def foreground_box(fg: np.ndarray, margin: int = 1) -> tuple[np.ndarray, np.ndarray] | None:
    """(lo, hi) of the foreground's bounding box grown by ``margin`` (clipped to the array); None if empty.

    Cheap axis projections instead of a full coordinate scan.
    """
    ext = [np.flatnonzero(fg.any(axis=ax)) for ax in ((1, 2), (0, 2), (0, 1))]
    if ext[0].size == 0:
        return None
    lo = np.array([max(e[0] - margin, 0) for e in ext])
    hi = np.array([min(e[-1] + 1 + margin, s) for e, s in zip(ext, fg.shape)])
    return lo, hi


def _clean_crop(mask: np.ndarray, min_component_size: int, offset) -> tuple[np.ndarray | None, np.ndarray]:
    """Foreground of ``mask`` cropped to its bounding box + 1 voxel, components < min size removed.

    The 1-voxel margin keeps the background just outside the box, so distances to the background are
    those of the uncropped volume. Returns (bool crop or None when nothing is left, offset of the crop).
    """
    mask = np.asarray(mask)
    if mask.ndim != 3:
        raise NeurinoError(f"trace_mask: expected a 3D (z, y, x) mask, got shape {mask.shape}")
    offset = np.asarray(offset, dtype=np.float64).reshape(3)
    fg = mask != 0
    box = foreground_box(fg)
    if box is None:
        return None, offset
    lo, hi = box
    fg = np.ascontiguousarray(fg[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]])
    if min_component_size > 1:
        fg = cc3d.dust(fg, threshold=int(min_component_size), connectivity=26)
        if not fg.any():
            return None, offset
    return fg, offset + lo


def _trace_clean(fg: np.ndarray, spacing: np.ndarray, offset: np.ndarray, root, prune_length: float,
                 resample_step: int, root_rule: str = "radius", bounds=None) -> SWCTree:
    """:func:`trace_mask` after cleaning: ``fg`` is a non-empty bool crop starting at ``offset``."""
    zyx, radius = skeleton_points(fg, spacing)
    return forest_from_skeleton(zyx + np.rint(offset).astype(np.int64), radius, spacing, root, prune_length,
                                resample_step, root_rule, bounds)


def skeleton_points(fg: np.ndarray, spacing: Sequence[float] = (1.0, 1.0, 1.0)
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Stage 1 of the tracer: skeleton voxels of a foreground and their radii.

    Parameters
    ----------
    fg : bool (Z, Y, X) foreground (already cleaned of small components).
    spacing : (z, y, x) voxel size.

    Returns
    -------
    zyx : int64 (K, 3) skeleton voxel indices in C order (``np.argwhere`` order).
    radius : float64 (K,) distance to the nearest background voxel, in voxels of the finest axis
        (``min(spacing)``); outside the array counts as foreground.
    """
    spacing = _check_spacing(spacing)
    zyx = np.argwhere(skeletonize_keep_branches(fg)).astype(np.int64)
    return zyx, distance_to_background(fg, zyx, spacing) / spacing.min()


def forest_from_skeleton(zyx: np.ndarray, radius: np.ndarray, spacing: Sequence[float] = (1.0, 1.0, 1.0),
                         root: Sequence[float] | None = None, prune_length: float = 0.0,
                         resample_step: int = 1, root_rule: str = "radius",
                         bounds: tuple[np.ndarray, np.ndarray] | None = None) -> SWCTree:
    """Stage 2 of the tracer: skeleton voxels -> SWC forest (graph -> spanning forest -> root -> pruning ->
    resampling). :func:`trace_mask` and the block-wise ``large.trace.trace_large`` both end here.

    Parameters
    ----------
    zyx : int (K, 3) skeleton voxels (z, y, x) in the output frame, unique, in C order (the order decides
        ties: equal-radius roots and equal-weight spanning-tree edges).
    radius : float (K,) radii (see :func:`skeleton_points`).
    spacing, root, prune_length, resample_step, root_rule : as for :func:`trace_mask` (``root`` in the frame
        of ``zyx``).
    bounds : (lo, hi) inclusive voxel indices of the traced volume in the frame of ``zyx``; needed by
        ``root_rule="boundary"``.

    Returns
    -------
    SWCTree, ids 1..N in depth-first order; empty when ``zyx`` is empty.
    """
    spacing = _check_spacing(spacing)
    zyx = np.asarray(zyx, dtype=np.int64).reshape(-1, 3)
    radius = np.asarray(radius, dtype=np.float64).reshape(-1)
    if zyx.shape[0] == 0:
        return SWCTree.empty()
    forest, labels = spanning_forest(neighbour_graph(zyx, spacing))
    roots = component_roots(zyx, radius, forest, labels, spacing, root_rule, bounds)
    soma = -1
    if root is not None:
        seed = np.asarray(root, dtype=np.float64).reshape(3)[::-1]       # (z, y, x)
        soma = int(np.argmin(np.sum(((zyx - seed) * spacing) ** 2, axis=1)))
        roots[labels[soma]] = soma
    parent, order = orient_forest(forest, roots)
    types = np.full(zyx.shape[0], BASAL_DENDRITE, dtype=np.int64)
    if soma >= 0:
        types[soma] = SOMA
    # rows in breadth-first order, parents before children
    rank = np.empty_like(order)
    rank[order] = np.arange(order.shape[0])
    pidx = np.where(parent[order] >= 0, rank[np.maximum(parent[order], 0)], -1)
    tree = SWCTree.from_zyx(zyx[order], pidx, radius=radius[order], types=types[order])
    if prune_length > 0:
        tree = prune_short_branches(tree, prune_length, spacing)
    if resample_step > 1:
        tree = resample_chains(tree, resample_step)
    return tree.sorted().renumbered()


def trace_probabilities(prob: np.ndarray, threshold: float = 0.5,
                        spacing: Sequence[float] = (1.0, 1.0, 1.0),
                        min_component_size: int = MIN_COMPONENT_SIZE, root: Sequence[float] | None = None,
                        **kwargs) -> SWCTree:
    """Trace a foreground probability map: ``prob > threshold`` then :func:`trace_mask`.

    Parameters
    ----------
    prob : (Z, Y, X) foreground probabilities in [0, 1].
    threshold : voxels strictly above it are foreground.
    spacing, min_component_size, root, kwargs : as for :func:`trace_mask`.
    """
    prob = np.asarray(prob)
    if prob.ndim != 3:
        raise NeurinoError(f"trace_probabilities: expected a 3D (z, y, x) map, got shape {prob.shape}")
    return trace_mask(prob > threshold, spacing=spacing, min_component_size=min_component_size, root=root,
                      **kwargs)


def _chain_rank(is_interior: np.ndarray, pidx: np.ndarray) -> np.ndarray:
    """For each node: number of parent steps up to the nearest ancestor that is not interior (list ranking
    by pointer doubling). Non-interior nodes get 0."""
    step_up = np.where(is_interior, 1, 0)
    nxt = np.where(is_interior & (pidx >= 0), pidx, -1)
    nxt = np.where((nxt >= 0) & is_interior[np.maximum(nxt, 0)], nxt, -1)
    rank = step_up.copy()
    while np.any(nxt >= 0):
        has = nxt >= 0
        rank = np.where(has, rank + rank[np.maximum(nxt, 0)], rank)
        nxt = np.where(has, nxt[np.maximum(nxt, 0)], -1)
    return rank


def _reattach(tree: SWCTree, keep: np.ndarray) -> SWCTree:
    """Drop nodes not in ``keep``; each kept node hangs from its nearest kept ancestor."""
    pidx = tree.parent_index
    anc = pidx.copy()
    while True:
        bad = (anc >= 0) & ~keep[np.maximum(anc, 0)]
        if not bad.any():
            break
        anc[bad] = pidx[anc[bad]]
    idx = np.flatnonzero(keep)
    new_pos = np.cumsum(keep) - 1
    new_parent = np.where(anc[idx] >= 0, new_pos[np.maximum(anc[idx], 0)], -1)
    return SWCTree.from_parent_index(tree.xyz[idx], new_parent, tree.radius[idx], tree.types[idx],
                                     source=tree.source)


def resample_chains(tree: SWCTree, step: int) -> SWCTree:
    """Keep roots, tips, branch points, soma nodes and every ``step``-th node along unbranched chains."""
    pidx = tree.parent_index
    n_child = tree.children_counts()
    interior = (pidx >= 0) & (n_child == 1) & (tree.types != SOMA)
    keep = ~interior | (_chain_rank(interior, pidx) % int(step) == 0)
    return _reattach(tree, keep)


def prune_short_branches(tree: SWCTree, min_length: float,
                         spacing: Sequence[float] = (1.0, 1.0, 1.0)) -> SWCTree:
    """Remove terminal branches (from a tip up to, excluding, the first branch point) shorter than
    ``min_length`` (physical units: coordinates times ``spacing``). One pass; a root chain without a branch
    point (a whole unbranched tree) is never removed."""
    spacing = _check_spacing(spacing)
    pidx = tree.parent_index
    n_child = tree.children_counts()
    seg = np.zeros(tree.n)
    has = pidx >= 0
    seg[has] = np.linalg.norm((tree.xyz[has] - tree.xyz[pidx[has]]) * spacing[::-1], axis=1)
    # chain nodes: not a branch point, not a root; a tip's chain climbs while parents have one child
    chain = (pidx >= 0) & (n_child <= 1)
    # length from each chain node up to its first non-chain ancestor (pointer doubling on lengths)
    length = np.where(chain, seg, 0.0)
    top = np.where(chain, pidx, -1)
    top = np.where((top >= 0) & chain[np.maximum(top, 0)], top, -1)
    end = np.where(chain, pidx, -1)                 # first non-chain ancestor, once the jumps finish
    while np.any(top >= 0):
        h = top >= 0
        t = np.maximum(top, 0)
        length = np.where(h, length + length[t], length)
        end = np.where(h, end[t], end)
        top = np.where(h, top[t], -1)
    tips = np.flatnonzero((n_child == 0) & chain)
    attached = (end[tips] >= 0) & (n_child[np.maximum(end[tips], 0)] >= 2)
    drop_tips = tips[attached & (length[tips] < min_length)]
    if drop_tips.size == 0:
        return tree
    # a node is dropped when it is a chain node whose chain's tip is dropped: mark by climbing from tips
    drop = np.zeros(tree.n, bool)
    cur = drop_tips.copy()
    while cur.size:
        drop[cur] = True
        nxt = pidx[cur]
        cur = nxt[(nxt >= 0) & chain[np.maximum(nxt, 0)] & ~drop[np.maximum(nxt, 0)]]
    return tree.take(~drop).renumbered()
