"""ESA / DSA / PDS between two neuron reconstructions with Vaa3D ``neuron_distance`` semantics.

Definitions (Vaa3D's ``neuron_distance`` plugin; the paper's supplement §8 gives simplified one-directional
forms of them):

* every node ``c`` with a parent ``p`` (roots skipped) is sampled at ``N = int(1 + |c - p| + 0.5)``
  evenly spaced points from ``c`` to ``p``, both ends included (``N <= 1``: only ``c``);
* the distance of a sample is the minimum point-to-segment distance to the *other* tree's
  parent-child segments;
* ``ESA12`` = mean sample distance of tree 1 to tree 2; samples with ``d >= threshold`` are
  "different"; ``DSA12`` = their mean distance (0 if none); ``PDS12`` = their fraction;
* ``ESA = (ESA12 + ESA21) / 2``; ``DSA`` = mean of the directions that have different samples (0 if
  none); ``PDS = (PDS12 + PDS21) / 2``.

Arithmetic follows Vaa3D: coordinates, sample positions and distances are float32 (so samples lying
exactly on the threshold classify as Vaa3D classifies them), sums are accumulated in float64.

Coordinates are SWC order ``(x, y, z)`` in whatever unit the trees use (voxels for image-space SWCs).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

__all__ = [
    "METRIC_KEYS",
    "Segments",
    "SegmentIndex",
    "segments_from_arrays",
    "sample_segments",
    "point_segment_distance",
    "neuron_distance_segments",
    "neuron_distance",
]

#: Numeric keys of the dictionary returned by :func:`neuron_distance`.
METRIC_KEYS = ("ESA12", "ESA21", "ESA", "DSA12", "DSA21", "DSA", "PDS12", "PDS21", "PDS",
               "n12", "n21", "n12big", "n21big")

_F32 = np.float32


@dataclass(frozen=True)
class Segments:
    """Parent-child segments of one tree.

    Attributes
    ----------
    child : float32 array (S, 3)
        Child node coordinates (x, y, z).
    parent : float32 array (S, 3)
        Parent node coordinates (x, y, z).
    """

    child: np.ndarray
    parent: np.ndarray

    def __len__(self) -> int:
        return int(self.child.shape[0])


def segments_from_arrays(xyz: np.ndarray, parent_index: np.ndarray) -> Segments:
    """Collect the parent-child segments of a tree given as node arrays.

    Parameters
    ----------
    xyz : array (N, 3)
        Node coordinates, columns x, y, z.
    parent_index : int array (N,)
        Row index of each node's parent, negative for roots.

    Returns
    -------
    Segments with one entry per non-root node, in row order, coordinates cast to float32.
    """
    xyz = np.asarray(xyz, dtype=_F32).reshape(-1, 3)
    parent_index = np.asarray(parent_index, dtype=np.int64).reshape(-1)
    if parent_index.shape[0] != xyz.shape[0]:
        raise ValueError(f"parent_index has {parent_index.shape[0]} rows, xyz has {xyz.shape[0]}")
    has_parent = parent_index >= 0
    return Segments(child=xyz[has_parent], parent=xyz[parent_index[has_parent]])


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Float32 dot product along the last axis, summed x + y then + z (Vaa3D's order)."""
    return (a[..., 0] * b[..., 0] + a[..., 1] * b[..., 1]) + a[..., 2] * b[..., 2]


def _norm(a: np.ndarray) -> np.ndarray:
    return np.sqrt(_dot(a, a))


def sample_segments(segments: Segments) -> np.ndarray:
    """Sample points along every segment, from child to parent, both ends included.

    Parameters
    ----------
    segments : Segments of one tree.

    Returns
    -------
    float32 array (M, 3) of sample coordinates (x, y, z); segment ``i`` contributes
    ``N_i = int(1 + |c_i - p_i| + 0.5)`` points (one point, the child, when ``N_i <= 1``).
    """
    if len(segments) == 0:
        return np.zeros((0, 3), dtype=_F32)
    diff = segments.parent - segments.child  # float32
    length = _norm(diff).astype(np.float64)
    n = (1.0 + length + 0.5).astype(np.int64)
    n = np.maximum(n, 1)
    inv = np.zeros(n.shape, dtype=np.float64)
    many = n > 1
    inv[many] = 1.0 / (n[many] - 1)
    step = inv.astype(_F32)[:, None] * diff  # float32 step vector per segment
    seg = np.repeat(np.arange(n.size), n)
    starts = np.cumsum(n) - n
    j = (np.arange(seg.size) - starts[seg]).astype(_F32)
    return segments.child[seg] + step[seg] * j[:, None]


def point_segment_distance(points: np.ndarray, p1: np.ndarray, p2: np.ndarray) -> np.ndarray:
    """Float32 distance from points to segments, elementwise (Vaa3D's ``dist_pt_to_line_seg``).

    Parameters
    ----------
    points, p1, p2 : float32 arrays (..., 3), broadcastable
        Query points and the two segment ends (x, y, z).

    Returns
    -------
    float32 array (...) of Euclidean distances: to the perpendicular foot when it lies on the segment,
    else to the nearer end; exactly 0 when the point coincides with an end.
    """
    p0 = np.asarray(points, dtype=_F32)
    p1 = np.asarray(p1, dtype=_F32)
    p2 = np.asarray(p2, dtype=_F32)
    d12 = p2 - p1
    d01 = p1 - p0
    v12 = _dot(d12, d12)
    d012 = _dot(d12, d01)
    degenerate = v12 == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        t = -d012 / np.where(degenerate, _F32(1), v12)
    dist_1 = _norm(p0 - p1)
    dist_2 = _norm(p0 - p2)
    ends = np.minimum(dist_1, dist_2)
    foot = p1 + d12 * t[..., None]
    perp = _norm(foot - p0)
    inside = (t >= 0) & (t <= 1)
    out = np.where(inside, perp, ends)
    out = np.where(degenerate, dist_1, out)
    on_end = np.all(p0 == p1, axis=-1) | np.all(p0 == p2, axis=-1)
    return np.where(on_end & ~degenerate, _F32(0), out).astype(_F32)


class SegmentIndex:
    """Nearest-segment queries against one tree's segments.

    A k-d tree over points sampled along every segment at most 1 unit apart (half-gap ``h <= 0.5``)
    finds candidates; exact float32 point-to-segment distances decide. Exactness: the true nearest
    segment has an index point within ``d* + h`` of the query, and ``d* <= U`` (the best candidate
    distance found), so every segment with an index point within ``U + h`` is checked.

    Parameters
    ----------
    segments : Segments, at least one.
    k : int
        Candidates fetched per query in the first, vectorised pass.
    """

    def __init__(self, segments: Segments, k: int = 8):
        if len(segments) == 0:
            raise ValueError("SegmentIndex needs at least one segment")
        self.segments = segments
        c = segments.child.astype(np.float64)
        p = segments.parent.astype(np.float64)
        length = np.linalg.norm(p - c, axis=1)
        m = np.ceil(length).astype(np.int64) + 1  # points per segment, gaps <= 1
        seg = np.repeat(np.arange(len(segments)), m)
        starts = np.cumsum(m) - m
        frac = (np.arange(seg.size) - starts[seg]) / np.maximum(m[seg] - 1, 1)
        self._point_seg = seg
        self._tree = cKDTree(c[seg] + (p - c)[seg] * frac[:, None])
        self._half_gap = float(np.max(length / np.maximum(m - 1, 1)) / 2.0)
        self._k = int(min(k, seg.size))

    def _exact(self, points: np.ndarray, seg_ids: np.ndarray) -> np.ndarray:
        s = self.segments
        return point_segment_distance(points[:, None, :], s.child[seg_ids], s.parent[seg_ids])

    def min_distance(self, points: np.ndarray) -> np.ndarray:
        """Minimum float32 distance of each point (M, 3) to any segment; returns float32 (M,)."""
        points = np.asarray(points, dtype=_F32).reshape(-1, 3)
        best = np.full(points.shape[0], np.inf, dtype=_F32)
        rows = np.arange(points.shape[0])
        n_points = self._point_seg.size
        k = self._k
        while rows.size:
            kd, ki = self._tree.query(points[rows].astype(np.float64), k=k)
            kd = kd.reshape(rows.size, -1)
            ki = ki.reshape(rows.size, -1)
            d = self._exact(points[rows], self._point_seg[ki]).min(axis=1)
            best[rows] = np.minimum(best[rows], d)
            if k >= n_points:
                break
            # rows whose k-th index point is still within reach of a closer segment need more candidates
            rows = rows[kd[:, -1] <= best[rows].astype(np.float64) + self._half_gap + 1e-3]
            k = min(4 * k, n_points)
        return best


def _directional(samples: np.ndarray, index: SegmentIndex, threshold: float) -> tuple[float, int, float, int]:
    d = index.min_distance(samples)
    big = d >= _F32(threshold)
    total = float(np.sum(d, dtype=np.float64))
    return total, int(d.size), float(np.sum(d[big], dtype=np.float64)), int(big.sum())


def _nan_result(empty_1: bool, empty_2: bool) -> dict:
    out: dict = {k: math.nan for k in METRIC_KEYS}
    out.update(n12=0, n21=0, n12big=0, n21big=0)
    which = [name for name, e in (("tree 1", empty_1), ("tree 2", empty_2)) if e]
    out.update(valid=False, empty_1=empty_1, empty_2=empty_2,
               flag=f"{' and '.join(which)} has no parent-child segment (empty or a single node)")
    return out


def neuron_distance_segments(seg_1: Segments, seg_2: Segments, threshold: float = 2.0) -> dict:
    """ESA / DSA / PDS between two trees given as segment sets (see module docstring).

    Parameters
    ----------
    seg_1, seg_2 : Segments of tree 1 and tree 2.
    threshold : float
        Distance at or above which a sample counts as "different" (same unit as the coordinates).

    Returns
    -------
    dict with the float keys ``ESA12 ESA21 ESA DSA12 DSA21 DSA PDS12 PDS21 PDS``, the integer sample
    counts ``n12 n21 n12big n21big``, and ``valid`` / ``empty_1`` / ``empty_2`` / ``flag``. When a tree
    has no segment all scores are NaN, ``valid`` is False and ``flag`` names the empty tree.
    """
    empty_1, empty_2 = len(seg_1) == 0, len(seg_2) == 0
    if empty_1 or empty_2:
        return _nan_result(empty_1, empty_2)
    s12, n12, b12, nb12 = _directional(sample_segments(seg_1), SegmentIndex(seg_2), threshold)
    s21, n21, b21, nb21 = _directional(sample_segments(seg_2), SegmentIndex(seg_1), threshold)
    esa12, esa21 = s12 / n12, s21 / n21
    dsa12 = b12 / nb12 if nb12 else 0.0
    dsa21 = b21 / nb21 if nb21 else 0.0
    dirs = [v for v, nb in ((dsa12, nb12), (dsa21, nb21)) if nb]
    return {
        "ESA12": esa12, "ESA21": esa21, "ESA": (esa12 + esa21) / 2,
        "DSA12": dsa12, "DSA21": dsa21, "DSA": float(np.mean(dirs)) if dirs else 0.0,
        "PDS12": nb12 / n12, "PDS21": nb21 / n21, "PDS": (nb12 / n12 + nb21 / n21) / 2,
        "n12": n12, "n21": n21, "n12big": nb12, "n21big": nb21,
        "valid": True, "empty_1": False, "empty_2": False, "flag": "",
    }


def _tree_segments(tree, vaa3d_compat: bool) -> Segments:
    """Segments of an ``SWCTree`` or of an SWC path (Vaa3D's parent lookup when ``vaa3d_compat``)."""
    if isinstance(tree, (str, os.PathLike)):
        from nnunetv2_neurino.swc import read_swc, vaa3d_parent_index

        if vaa3d_compat:
            tree, pidx = vaa3d_parent_index(tree)
            return segments_from_arrays(np.asarray(tree.xyz), pidx)
        tree = read_swc(tree)
    return segments_from_arrays(np.asarray(tree.xyz), np.asarray(tree.parent_index))


def neuron_distance(tree_1, tree_2, threshold: float = 2.0, vaa3d_compat: bool = False) -> dict:
    """ESA / DSA / PDS between two reconstructions (Vaa3D ``neuron_distance`` semantics).

    Parameters
    ----------
    tree_1, tree_2 : SWCTree or path to an SWC file
        Trees with coordinates (x, y, z) in the same space (image-space SWCs: voxels).
    threshold : float
        "Different structure" distance threshold (default 2 voxels), compared as ``d >= threshold``.
    vaa3d_compat : bool
        When a tree is given as a path: a node whose parent id is missing from the file hangs from the
        file's first row, as in Vaa3D (its parent lookup defaults to row 0), loops included: the first
        row with a missing parent adds a zero-length segment (default: such nodes become roots).
        Trees already read are used as they are.

    Returns
    -------
    dict, see :func:`neuron_distance_segments`. Directional keys ``*12`` measure tree 1 against tree 2.
    """
    if not threshold >= 0:
        raise ValueError(f"threshold must be >= 0, got {threshold}")
    return neuron_distance_segments(_tree_segments(tree_1, vaa3d_compat),
                                    _tree_segments(tree_2, vaa3d_compat), threshold)
