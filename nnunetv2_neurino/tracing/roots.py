"""Where each traced tree is rooted: the rules of :func:`nnunetv2_neurino.tracing.trace.trace_mask`.

``radius`` (the default)
    the component's node with the largest radius (distance to the background): the soma when the stack
    holds one (whole neurons: BigNeuron, CWMBS).
``boundary``
    for fibres whose soma lies outside the stack, such as the DIADEM olfactory projection fibres
    (Jefferis et al. 2007; DIADEM: Brown et al. 2011, whose gold standards are rooted where the axon
    enters the volume). Per component:

    1. *boundary terminals* are its terminal nodes (at most one neighbour) whose cross-section reaches
       the volume's outermost voxel layer: along some axis, the physical distance from the node to the
       first / last voxel layer is at most ``radius * min(spacing) + max(spacing)`` (the node's radius
       plus one voxel of the coarsest axis, since thinning shortens a cut fibre by about its radius);
    2. if there are any, the root is the one with the longest path through the tree (its eccentricity:
       the entering axon reaches the farthest arbor), ties: larger radius, then first in C order;
    3. otherwise (the fibre's entry is not cut by the boundary) the root is one of the two ends of the
       component's longest path: the one whose unbranched terminal chain (up to its first branch point)
       is longer — an entering axon runs unbranched to its first branch while arbor tips are short
       twigs; ties: larger radius, then first in C order.

A seed point (``trace_mask(root=...)``) overrides either rule for its component.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components, dijkstra

from nnunetv2_neurino.errors import NeurinoError
from nnunetv2_neurino.swc import SWCTree
from nnunetv2_neurino.tracing.skeleton_graph import orient_forest

__all__ = ["ROOT_RULES", "check_root_rule", "largest_per_label", "component_roots", "boundary_distance",
           "reroot_near"]

#: Root rules of the built-in tracer (see the module docstring).
ROOT_RULES = ("radius", "boundary")


def check_root_rule(rule: str) -> str:
    """``rule`` if it is one of :data:`ROOT_RULES`, else NeurinoError naming the choices."""
    if rule not in ROOT_RULES:
        raise NeurinoError(f"unknown root rule {rule!r}: use one of {', '.join(ROOT_RULES)}")
    return rule


def largest_per_label(values: np.ndarray, labels: np.ndarray, n_labels: int,
                      second: np.ndarray | None = None) -> np.ndarray:
    """Index of the largest ``values`` within each label 0..n_labels-1 (ties: larger ``second``, then the
    lowest index). Every label must occur."""
    idx = np.arange(values.shape[0])
    keys = (idx, -values, labels) if second is None else (idx, -second, -values, labels)
    order = np.lexsort(keys)
    first = np.searchsorted(labels[order], np.arange(n_labels))
    return order[first]


def boundary_distance(zyx: np.ndarray, lo: np.ndarray, hi: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Physical distance from voxels ``zyx`` to the nearest outermost voxel layer of the box [lo, hi]
    (inclusive voxel indices, same frame as ``zyx``); 0 on the first / last layer of any axis."""
    steps = np.minimum(zyx - np.asarray(lo), np.asarray(hi) - zyx)
    return np.min(np.maximum(steps, 0) * spacing, axis=1)


def _chain_lengths(forest: sp.csr_matrix, degree: np.ndarray) -> np.ndarray:
    """Per node of degree <= 2: summed edge length of its unbranched chain (the maximal path of degree
    <= 2 nodes through it, the edges to branch points not counted); 0 for branch points."""
    coo = forest.tocoo()
    inner = (degree[coo.row] <= 2) & (degree[coo.col] <= 2)
    n = degree.shape[0]
    sub = sp.csr_matrix((coo.data[inner], (coo.row[inner], coo.col[inner])), shape=(n, n))
    _, chain = connected_components(sub, directed=False)
    rows = coo.row[inner]
    length = np.bincount(chain[rows], weights=coo.data[inner], minlength=chain.max() + 1) / 2.0  # both ways
    return np.where(degree <= 2, length[chain], 0.0)


def component_roots(zyx: np.ndarray, radius: np.ndarray, forest: sp.csr_matrix, labels: np.ndarray,
                    spacing: np.ndarray, rule: str = "radius",
                    bounds: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Root node of every component of a skeleton forest under ``rule``.

    Parameters
    ----------
    zyx : int (K, 3) skeleton voxels (z, y, x), in C order.
    radius : float (K,) radii (voxels of the finest axis).
    forest : symmetric (K, K) spanning forest, weights = physical edge lengths.
    labels : int (K,) component labels 0..C-1.
    spacing : (z, y, x) voxel size.
    rule : one of :data:`ROOT_RULES`.
    bounds : (lo, hi) inclusive voxel indices of the traced volume in the frame of ``zyx``; needed by
        ``boundary``.

    Returns
    -------
    int (C,) node index of each component's root.
    """
    check_root_rule(rule)
    n_comp = int(labels.max()) + 1
    by_radius = largest_per_label(radius, labels, n_comp)
    if rule == "radius":
        return by_radius
    if bounds is None:
        raise NeurinoError("root rule 'boundary' needs the volume's bounds")
    spacing = np.asarray(spacing, dtype=np.float64)
    graph = forest.tocsr()
    degree = np.diff(graph.indptr)
    # longest path per component by two sweeps (in a tree the farthest node from any node is an end of
    # a longest path); the eccentricity of a node is its larger distance to the two ends
    d0 = dijkstra(graph, directed=False, indices=by_radius, min_only=True)
    end_a = largest_per_label(d0, labels, n_comp)
    dist_a = dijkstra(graph, directed=False, indices=end_a, min_only=True)
    end_b = largest_per_label(dist_a, labels, n_comp)
    dist_b = dijkstra(graph, directed=False, indices=end_b, min_only=True)
    ecc = np.maximum(dist_a, dist_b)

    reach = radius * spacing.min() + spacing.max()
    on_boundary = (degree <= 1) & (boundary_distance(zyx, bounds[0], bounds[1], spacing) <= reach)
    has_boundary = np.bincount(labels[on_boundary], minlength=n_comp) > 0
    roots = np.empty(n_comp, dtype=np.int64)
    if has_boundary.any():
        cand = np.flatnonzero(on_boundary)
        # per component with candidates: largest eccentricity, then radius, then index
        order = cand[np.lexsort((cand, -radius[cand], -ecc[cand], labels[cand]))]
        comps, first = np.unique(labels[order], return_index=True)
        roots[comps] = order[first]
    rest = np.flatnonzero(~has_boundary)
    if rest.size:
        chain = _chain_lengths(graph, degree)
        a, b = end_a[rest], end_b[rest]
        key_a = np.stack([chain[a], radius[a], -a], axis=1)
        key_b = np.stack([chain[b], radius[b], -b], axis=1)
        # lexicographic comparison of (chain length, radius, -index): b wins when strictly larger
        diff = key_b - key_a
        nz = diff != 0
        first_nz = np.argmax(nz, axis=1)
        b_wins = nz.any(axis=1) & (diff[np.arange(rest.size), first_nz] > 0)
        roots[rest] = np.where(b_wins, b, a)
    return roots


def reroot_near(tree: SWCTree, point) -> SWCTree:
    """Each tree of a forest re-rooted at its node nearest ``point`` (the DIADEM challenge's seed point).

    Parameters
    ----------
    tree : SWCTree (forest, no cycles).
    point : (x, y, z) in the tree's coordinates; "nearest" is the Euclidean distance in those units
        (voxels for traced trees, the convention of the Vaa3D-style metrics); ties: the first row.

    Returns
    -------
    SWCTree with the same rows (order, ids, positions, radii, types) and segments; only the parent
    directions on the path from each tree's new root to its old root are reversed.
    """
    if tree.n == 0:
        return tree
    p = np.asarray(point, dtype=np.float64).reshape(3)
    dist = np.sum((tree.xyz - p) ** 2, axis=1)
    labels = tree.component_labels()
    new_roots = largest_per_label(-dist, labels, int(labels.max()) + 1)
    child, parent = tree.edges()
    graph = sp.csr_matrix((np.ones(2 * child.shape[0]), (np.r_[child, parent], np.r_[parent, child])),
                          shape=(tree.n, tree.n))
    pidx, _ = orient_forest(graph, new_roots)
    pid = np.where(pidx >= 0, tree.ids[np.maximum(pidx, 0)], -1)
    return SWCTree(tree.ids.copy(), tree.types.copy(), tree.xyz.copy(), tree.radius.copy(), pid, tree.source)
