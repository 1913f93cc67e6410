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

Coordinates are SWC order ``(x, y, z)`` in whatever unit the trees use (voxels for image-space SWCs);
non-finite coordinates and coordinates beyond ``±MAX_COORDINATE`` (1e9, as :mod:`nnunetv2_neurino.swc`)
are refused with a :class:`~nnunetv2_neurino.errors.NeurinoError`.

Memory is bounded whatever the segment lengths: samples are generated and scored ``chunk_points`` at a
time (sums and counts accumulated), and the nearest-segment index holds at most about
``MAX_INDEX_POINTS`` points plus two per segment (a coarser spacing on long trees, still exact). The
numbers are those of the unchunked computation (the same float32 samples and distances; only the
float64 sums are added chunk by chunk).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from nnunetv2_neurino.errors import NeurinoError
from nnunetv2_neurino.metrics.segment_index import (
    MAX_INDEX_POINTS,
    SegmentIndex,
    _norm,
    point_segment_distance,
)
from nnunetv2_neurino.swc import MAX_COORDINATE

__all__ = [
    "METRIC_KEYS",
    "CHUNK_POINTS",
    "MAX_INDEX_POINTS",
    "Segments",
    "SegmentIndex",
    "segments_from_arrays",
    "sample_segments",
    "iter_samples",
    "point_segment_distance",
    "neuron_distance_segments",
    "neuron_distance",
]

#: Numeric keys of the dictionary returned by :func:`neuron_distance`.
METRIC_KEYS = ("ESA12", "ESA21", "ESA", "DSA12", "DSA21", "DSA", "PDS12", "PDS21", "PDS",
               "n12", "n21", "n12big", "n21big")

_F32 = np.float32

#: Sample points generated and scored at a time (the default ``chunk_points``).
CHUNK_POINTS = 1 << 16


def _check_xyz(xyz: np.ndarray, name: str, ids: np.ndarray | None = None, what: str = "node") -> None:
    """Raise NeurinoError naming ``name`` and the first row whose coordinates are non-finite or too large."""
    with np.errstate(invalid="ignore"):
        bad = ~(np.abs(xyz) <= MAX_COORDINATE).all(axis=1)  # NaN compares False
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        label = f"{what} {int(ids[i])}" if ids is not None else f"{what} row {i}"
        kind = "non-finite coordinate" if not np.isfinite(xyz[i]).all() else "coordinate beyond the limit"
        raise NeurinoError(f"{name}: {label} has a {kind}: {tuple(float(v) for v in xyz[i])} "
                           f"(coordinates must be finite and within ±{MAX_COORDINATE:g})")


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

    def __post_init__(self) -> None:
        for what in ("child", "parent"):
            a = getattr(self, what)
            if a.ndim != 2 or a.shape[1] != 3 or a.shape != self.child.shape:
                raise ValueError(f"Segments.{what} must be (S, 3) like child, got shape {a.shape}")
            _check_xyz(a, "Segments", what=f"{what} of segment")

    def __len__(self) -> int:
        return int(self.child.shape[0])


def segments_from_arrays(xyz: np.ndarray, parent_index: np.ndarray, name: str = "tree",
                         ids: np.ndarray | None = None) -> Segments:
    """Collect the parent-child segments of a tree given as node arrays.

    Parameters
    ----------
    xyz : array (N, 3)
        Node coordinates, columns x, y, z; finite and within ``±MAX_COORDINATE``.
    parent_index : int array (N,)
        Row index of each node's parent, negative for roots.
    name : str
        The tree's name (e.g. its file) for error messages.
    ids : optional int array (N,)
        Node ids for error messages (default: row numbers).

    Returns
    -------
    Segments with one entry per non-root node, in row order, coordinates cast to float32.

    Raises
    ------
    NeurinoError : a non-finite or too large coordinate, or a parent index beyond the rows (naming
        ``name`` and the node).
    """
    xyz = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
    parent_index = np.asarray(parent_index, dtype=np.int64).reshape(-1)
    if parent_index.shape[0] != xyz.shape[0]:
        raise ValueError(f"parent_index has {parent_index.shape[0]} rows, xyz has {xyz.shape[0]}")
    _check_xyz(xyz, name, ids)
    beyond = np.flatnonzero(parent_index >= xyz.shape[0])
    if beyond.size:
        i = int(beyond[0])
        raise NeurinoError(f"{name}: node {int(ids[i]) if ids is not None else f'row {i}'} has parent row "
                           f"{int(parent_index[i])}, beyond the {xyz.shape[0]} rows")
    xyz = xyz.astype(_F32)
    has_parent = parent_index >= 0
    return Segments(child=xyz[has_parent], parent=xyz[parent_index[has_parent]])


def _sample_plan(segments: Segments) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Samples per segment ``N_i``, their cumulative ends, and the float32 step vector of each segment."""
    diff = segments.parent - segments.child  # float32
    length = _norm(diff).astype(np.float64)
    n = np.maximum((1.0 + length + 0.5).astype(np.int64), 1)
    inv = np.zeros(n.shape, dtype=np.float64)
    many = n > 1
    inv[many] = 1.0 / (n[many] - 1)
    return n, np.cumsum(n), inv.astype(_F32)[:, None] * diff


def iter_samples(segments: Segments, chunk_points: int = CHUNK_POINTS):
    """Yield the samples of :func:`sample_segments` in order, at most ``chunk_points`` at a time.

    Parameters
    ----------
    segments : Segments of one tree.
    chunk_points : int >= 1
        Largest number of sample points per yielded array.

    Yields
    ------
    float32 arrays (<= chunk_points, 3); concatenated they equal :func:`sample_segments` bit for bit.
    """
    if chunk_points < 1:
        raise ValueError(f"chunk_points must be >= 1, got {chunk_points}")
    if len(segments) == 0:
        return
    n, ends, step = _sample_plan(segments)
    total = int(ends[-1])
    for a in range(0, total, int(chunk_points)):
        idx = np.arange(a, min(a + int(chunk_points), total), dtype=np.int64)
        seg = np.searchsorted(ends, idx, side="right")
        j = (idx - (ends[seg] - n[seg])).astype(_F32)  # sample number within its segment
        yield segments.child[seg] + step[seg] * j[:, None]


def sample_segments(segments: Segments) -> np.ndarray:
    """Sample points along every segment, from child to parent, both ends included.

    Parameters
    ----------
    segments : Segments of one tree.

    Returns
    -------
    float32 array (M, 3) of sample coordinates (x, y, z); segment ``i`` contributes
    ``N_i = int(1 + |c_i - p_i| + 0.5)`` points (one point, the child, when ``N_i <= 1``); point ``j``
    is ``c_i + j * (p_i - c_i) / (N_i - 1)`` with the step vector rounded to float32 first. All ``M``
    points at once: :func:`iter_samples` gives them in bounded chunks.
    """
    chunks = list(iter_samples(segments, chunk_points=1 << 62))
    return chunks[0] if chunks else np.zeros((0, 3), dtype=_F32)


def _directional(seg_from: Segments, index: SegmentIndex, threshold: float,
                 chunk_points: int) -> tuple[float, int, float, int]:
    """Sums and counts of the sample distances of ``seg_from`` to ``index``, chunk by chunk."""
    total = big_total = 0.0
    count = big_count = 0
    thr = _F32(threshold)
    for samples in iter_samples(seg_from, chunk_points):
        d = index.min_distance(samples)
        big = d >= thr
        total += float(np.sum(d, dtype=np.float64))
        big_total += float(np.sum(d[big], dtype=np.float64))
        count += int(d.size)
        big_count += int(big.sum())
    return total, count, big_total, big_count


def _nan_result(empty_1: bool, empty_2: bool) -> dict:
    out: dict = {k: math.nan for k in METRIC_KEYS}
    out.update(n12=0, n21=0, n12big=0, n21big=0)
    which = [name for name, e in (("tree 1", empty_1), ("tree 2", empty_2)) if e]
    out.update(valid=False, empty_1=empty_1, empty_2=empty_2,
               flag=f"{' and '.join(which)} has no parent-child segment (empty or a single node)")
    return out


def neuron_distance_segments(seg_1: Segments, seg_2: Segments, threshold: float = 2.0,
                             chunk_points: int = CHUNK_POINTS,
                             max_index_points: int = MAX_INDEX_POINTS) -> dict:
    """ESA / DSA / PDS between two trees given as segment sets (see module docstring).

    Parameters
    ----------
    seg_1, seg_2 : Segments of tree 1 and tree 2.
    threshold : float
        Distance at or above which a sample counts as "different" (same unit as the coordinates).
    chunk_points : int
        Samples generated and scored at a time (bounds memory; only the float64 sums' rounding depends
        on it).
    max_index_points : int
        Target size of each tree's nearest-segment index (see :class:`SegmentIndex`; results unchanged).

    Returns
    -------
    dict with the float keys ``ESA12 ESA21 ESA DSA12 DSA21 DSA PDS12 PDS21 PDS``, the integer sample
    counts ``n12 n21 n12big n21big``, and ``valid`` / ``empty_1`` / ``empty_2`` / ``flag``. When a tree
    has no segment all scores are NaN, ``valid`` is False and ``flag`` names the empty tree.
    """
    empty_1, empty_2 = len(seg_1) == 0, len(seg_2) == 0
    if empty_1 or empty_2:
        return _nan_result(empty_1, empty_2)
    s12, n12, b12, nb12 = _directional(seg_1, SegmentIndex(seg_2, max_points=max_index_points), threshold,
                                       chunk_points)
    s21, n21, b21, nb21 = _directional(seg_2, SegmentIndex(seg_1, max_points=max_index_points), threshold,
                                       chunk_points)
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
            return segments_from_arrays(np.asarray(tree.xyz), pidx, str(tree.source), tree.ids)
        tree = read_swc(tree)
    return segments_from_arrays(np.asarray(tree.xyz), np.asarray(tree.parent_index), str(tree.source),
                                tree.ids)


def neuron_distance(tree_1, tree_2, threshold: float = 2.0, vaa3d_compat: bool = False,
                    chunk_points: int = CHUNK_POINTS, max_index_points: int = MAX_INDEX_POINTS) -> dict:
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
    chunk_points, max_index_points : int
        Memory bounds, see :func:`neuron_distance_segments` (the numbers do not depend on them).

    Returns
    -------
    dict, see :func:`neuron_distance_segments`. Directional keys ``*12`` measure tree 1 against tree 2.
    """
    if not threshold >= 0:
        raise ValueError(f"threshold must be >= 0, got {threshold}")
    return neuron_distance_segments(_tree_segments(tree_1, vaa3d_compat),
                                    _tree_segments(tree_2, vaa3d_compat), threshold,
                                    chunk_points=chunk_points, max_index_points=max_index_points)
