"""Exact nearest-segment distances with Vaa3D's float32 arithmetic, in bounded memory.

:func:`point_segment_distance` is Vaa3D ``neuron_distance``'s point-to-segment distance;
:class:`SegmentIndex` gives each query point's minimum distance to a tree's parent-child segments (a
k-d tree over points along the segments finds candidates, exact distances decide), used by
:mod:`nnunetv2_neurino.metrics.neuron_distance`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from scipy.spatial import cKDTree

if TYPE_CHECKING:
    from nnunetv2_neurino.metrics.neuron_distance import Segments

__all__ = ["MAX_INDEX_POINTS", "point_segment_distance", "SegmentIndex"]

_F32 = np.float32
_FILL_CHUNK = 1 << 16
#: Target size of a :class:`SegmentIndex` k-d tree; trees longer than this get a coarser index spacing.
MAX_INDEX_POINTS = 1 << 20
#: (query point, candidate segment) pairs whose exact distances are evaluated at once.
_PAIR_BUDGET = 1 << 19
#: Candidates per query beyond which the remaining queries are checked against every segment.
_MAX_K = 1024



def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Float32 dot product along the last axis, summed x + y then + z (Vaa3D's order)."""
    return (a[..., 0] * b[..., 0] + a[..., 1] * b[..., 1]) + a[..., 2] * b[..., 2]


def _norm(a: np.ndarray) -> np.ndarray:
    return np.sqrt(_dot(a, a))


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

    A k-d tree over points sampled along every segment at most ``spacing`` apart (half-gap
    ``h <= spacing / 2``) finds candidates; exact float32 point-to-segment distances decide. Exactness:
    the true nearest segment has an index point within ``d* + h`` of the query, and ``d* <= U`` (the best
    candidate distance found), so every segment with an index point within ``U + h`` is checked. The
    spacing is 1 unless the tree is longer than ``max_points``: then ``total length / max_points``, so
    the index stays bounded (at most ``max_points`` + 2 points per segment) whatever the lengths.
    Queries are evaluated in batches of a bounded number of (point, candidate) pairs; a query that
    would need more than 1024 candidates is checked against every segment, in bounded batches.

    Parameters
    ----------
    segments : ``neuron_distance.Segments`` (float32 ``child`` / ``parent`` (S, 3)), at least one.
    k : int
        Candidates fetched per query in the first, vectorised pass.
    max_points : int
        Target number of index points (see above).
    """

    def __init__(self, segments: Segments, k: int = 8, max_points: int = MAX_INDEX_POINTS):
        if len(segments) == 0:
            raise ValueError("SegmentIndex needs at least one segment")
        self.segments = segments
        c = segments.child.astype(np.float64)
        p = segments.parent.astype(np.float64)
        length = np.linalg.norm(p - c, axis=1)
        self.spacing = max(1.0, float(length.sum()) / max(int(max_points) - len(segments), 1))
        m = np.ceil(length / self.spacing).astype(np.int64) + 1  # points per segment, gaps <= spacing
        seg = np.repeat(np.arange(len(segments)), m)
        starts = np.cumsum(m) - m
        pts = np.empty((seg.size, 3), dtype=np.float64)
        for a in range(0, seg.size, _FILL_CHUNK):  # filled in chunks: no (points, 3) temporaries
            s = seg[a:a + _FILL_CHUNK]
            frac = (np.arange(a, a + s.size) - starts[s]) / np.maximum(m[s] - 1, 1)
            pts[a:a + s.size] = c[s] + (p - c)[s] * frac[:, None]
        self._point_seg = seg
        self._tree = cKDTree(pts)
        self._half_gap = float(np.max(length / np.maximum(m - 1, 1)) / 2.0)
        self._k = int(min(k, seg.size))

    def _exact(self, points: np.ndarray, seg_ids: np.ndarray) -> np.ndarray:
        s = self.segments
        return point_segment_distance(points[:, None, :], s.child[seg_ids], s.parent[seg_ids])

    def _all_segments(self, points: np.ndarray) -> np.ndarray:
        """Minimum distance of each point to every segment, in bounded batches."""
        s = self.segments
        n_seg = len(s)
        rows_per = max(1, _PAIR_BUDGET // n_seg)
        segs_per = max(1, _PAIR_BUDGET // rows_per)
        best = np.full(points.shape[0], np.inf, dtype=_F32)
        for r in range(0, points.shape[0], rows_per):
            q = points[r:r + rows_per, None, :]
            for a in range(0, n_seg, segs_per):
                d = point_segment_distance(q, s.child[None, a:a + segs_per], s.parent[None, a:a + segs_per])
                best[r:r + rows_per] = np.minimum(best[r:r + rows_per], d.min(axis=1))
        return best

    def _candidates(self, points: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact distance to the best of the k nearest index points' segments, and the k-th point distance."""
        kd, ki = self._tree.query(points.astype(np.float64), k=k)
        kd = kd.reshape(points.shape[0], -1)
        ki = ki.reshape(points.shape[0], -1)
        return self._exact(points, self._point_seg[ki]).min(axis=1), kd[:, -1]

    def min_distance(self, points: np.ndarray) -> np.ndarray:
        """Minimum float32 distance of each point (M, 3) to any segment; returns float32 (M,)."""
        points = np.asarray(points, dtype=_F32).reshape(-1, 3)
        best = np.full(points.shape[0], np.inf, dtype=_F32)
        rows = np.arange(points.shape[0])
        n_points = self._point_seg.size
        k = self._k
        while rows.size:
            step = max(1, _PAIR_BUDGET // k)
            far = np.empty(rows.size, dtype=np.float64)
            for a in range(0, rows.size, step):
                r = rows[a:a + step]
                d, far[a:a + step] = self._candidates(points[r], k)
                best[r] = np.minimum(best[r], d)
            if k >= n_points:
                break
            # rows whose k-th index point is still within reach of a closer segment need more candidates
            rows = rows[far <= best[rows].astype(np.float64) + self._half_gap + 1e-3]
            k = min(4 * k, n_points)
            if k > _MAX_K and rows.size:
                best[rows] = np.minimum(best[rows], self._all_segments(points[rows]))
                break
        return best
