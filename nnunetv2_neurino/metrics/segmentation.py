"""Voxel segmentation metrics: F1 (= Dice), precision, recall and HD95 of the foreground.

HD95 convention (MONAI's ``compute_hausdorff_distance(percentile=95)``, supplement §8): surface voxels are the
voxels of a mask that have a 6-neighbour outside it (mask XOR its erosion with the 6-connected cross;
voxels on the array border count as surface). For every surface voxel of one mask, the Euclidean
distance (spacing-aware) to the nearest surface voxel of the other is taken; HD95 is the maximum of the
two directed 95th percentiles (linear interpolation). medpy's ``hd95`` pools both directions into one
percentile and gives a different number.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import edt
import numpy as np
from scipy.spatial import cKDTree

from nnunetv2_neurino.data.volumes import check_spacing
from nnunetv2_neurino.errors import NeurinoError

__all__ = ["surface_coords", "surface_voxels", "directed_surface_distances", "hd95", "segmentation_metrics"]

def _check_spacing(spacing: Sequence[float] | None) -> tuple[float, float, float]:
    return (1.0, 1.0, 1.0) if spacing is None else check_spacing(spacing)


_NEIGHBOURS = np.array([[-1, 0, 0], [1, 0, 0], [0, -1, 0], [0, 1, 0], [0, 0, -1], [0, 0, 1]])


def surface_coords(mask: np.ndarray) -> np.ndarray:
    """Indices of the surface voxels of a binary mask.

    Works on the foreground voxels only (sparse neurons: far cheaper than a dense erosion).

    Parameters
    ----------
    mask : bool array (z, y, x)

    Returns
    -------
    int64 array (n, 3) of (z, y, x) indices, C order: mask voxels with at least one 6-neighbour outside
    the mask; voxels on the array border count as surface.
    """
    mask = np.asarray(mask, dtype=bool)
    zyx = np.stack(np.nonzero(mask), axis=1)
    inner = np.ones(len(zyx), dtype=bool)
    upper = np.asarray(mask.shape) - 1
    for step in _NEIGHBOURS:
        nb = zyx + step
        inside = np.all((nb >= 0) & (nb <= upper), axis=1)
        ok = inner & inside
        inner &= inside
        inner[ok] = mask[nb[ok, 0], nb[ok, 1], nb[ok, 2]]
    return zyx[~inner]


def surface_voxels(mask: np.ndarray) -> np.ndarray:
    """Surface of a binary mask as a bool array (z, y, x); see :func:`surface_coords`.

    Equals ``mask & ~binary_erosion(mask, 6-connected cross, border_value=0)``.
    """
    mask = np.asarray(mask, dtype=bool)
    out = np.zeros(mask.shape, dtype=bool)
    c = surface_coords(mask)
    out[c[:, 0], c[:, 1], c[:, 2]] = True
    return out


def _crop_box(*masks: np.ndarray) -> tuple[slice, ...]:
    union = np.logical_or.reduce(masks)
    idx = [np.flatnonzero(union.any(axis=tuple(a for a in range(union.ndim) if a != ax)))
           for ax in range(union.ndim)]
    return tuple(slice(int(i[0]), int(i[-1]) + 1) for i in idx)


def directed_surface_distances(src_surface: np.ndarray, dst_surface: np.ndarray,
                               spacing: Sequence[float] | None = None) -> np.ndarray:
    """Distance from every ``src`` surface voxel to the nearest ``dst`` surface voxel (dense EDT).

    Parameters
    ----------
    src_surface, dst_surface : bool arrays (z, y, x), same shape, ``dst_surface`` not empty.
    spacing : (z, y, x) voxel size; distances come out in its unit (voxels when None).

    Returns
    -------
    float64 array (n_src,) in C order of the ``src`` voxels.
    """
    sp = _check_spacing(spacing)
    box = _crop_box(src_surface, dst_surface)  # every point of both sets lies inside: exact
    src, dst = src_surface[box], dst_surface[box]
    field = edt.edt(np.ascontiguousarray(~dst, dtype=np.uint8), anisotropy=sp, black_border=False,
                    parallel=1)
    return field[src].astype(np.float64)


def _directed_kdtree(src: np.ndarray, dst: np.ndarray, sp: tuple[float, float, float]) -> np.ndarray:
    """Exact nearest-neighbour distances from index set ``src`` (n, 3) to ``dst`` (m, 3), scaled by
    spacing."""
    scale = np.asarray(sp)
    d, _ = cKDTree(dst * scale).query(src * scale, k=1)
    return np.asarray(d, dtype=np.float64)


def hd95(pred: np.ndarray, gt: np.ndarray,
         spacing: Sequence[float] | None = None) -> tuple[float, float, float]:
    """Symmetric 95th-percentile Hausdorff distance of two non-empty masks.

    Parameters
    ----------
    pred, gt : bool arrays (z, y, x), same shape, both with foreground.
    spacing : (z, y, x) voxel size.

    Returns
    -------
    (hd95, p95 pred→gt, p95 gt→pred), in the unit of ``spacing``.
    """
    sp = _check_spacing(spacing)
    s_pred, s_gt = surface_coords(pred), surface_coords(gt)
    if s_pred.size == 0 or s_gt.size == 0:
        raise NeurinoError("hd95 needs two non-empty masks")
    d_pg = _directed_kdtree(s_pred, s_gt, sp)
    d_gp = _directed_kdtree(s_gt, s_pred, sp)
    p_pg = float(np.percentile(d_pg, 95))
    p_gp = float(np.percentile(d_gp, 95))
    return max(p_pg, p_gp), p_pg, p_gp


def segmentation_metrics(pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float] | None = None) -> dict:
    """F1 (Dice), precision, recall and HD95 of a binary prediction against ground truth.

    Parameters
    ----------
    pred, gt : arrays (z, y, x) of the same shape; nonzero = foreground.
    spacing : (z, y, x) voxel size for HD95 (voxels when None).

    Returns
    -------
    dict with ``f1, precision, recall`` (fractions in [0, 1]), ``hd95``, ``hd95_pred_to_gt``,
    ``hd95_gt_to_pred``, ``tp, fp, fn`` (voxel counts) and ``flag`` ('' when all values are defined).
    Empty masks: both empty → F1 = precision = recall = 1; one empty → 0 for all three. HD95 is NaN
    when either mask is empty, and ``flag`` says which.

    Raises
    ------
    NeurinoError : shapes differ or the spacing is not three positive numbers.
    """
    pred = np.asarray(pred)
    gt = np.asarray(gt)
    if pred.shape != gt.shape:
        raise NeurinoError(f"prediction shape {pred.shape} differs from ground-truth shape {gt.shape}")
    if pred.ndim != 3:
        raise NeurinoError(f"expected 3D arrays (z, y, x), got shape {pred.shape}")
    sp = _check_spacing(spacing)
    p, g = pred != 0, gt != 0
    # work inside the union's bounding box grown by one voxel (clipped to the array): the voxels of the
    # margin are background or the array border, so surfaces and distances are those of the full arrays
    union = p | g
    ext = [np.flatnonzero(union.any(axis=ax)) for ax in ((1, 2), (0, 2), (0, 1))]
    if ext[0].size:
        box = tuple(slice(max(int(e[0]) - 1, 0), min(int(e[-1]) + 2, s)) for e, s in zip(ext, p.shape))
        p, g = p[box], g[box]
    tp = int(np.count_nonzero(p & g))
    n_p, n_g = int(np.count_nonzero(p)), int(np.count_nonzero(g))
    fp, fn = n_p - tp, n_g - tp
    out = {"tp": tp, "fp": fp, "fn": fn}
    if n_p == 0 and n_g == 0:
        out.update(f1=1.0, precision=1.0, recall=1.0)
    else:
        out.update(f1=2 * tp / (n_p + n_g), precision=tp / n_p if n_p else 0.0,
                   recall=tp / n_g if n_g else 0.0)
    if n_p == 0 or n_g == 0:
        which = " and ".join(n for n, c in (("prediction", n_p), ("ground truth", n_g)) if c == 0)
        out.update(hd95=math.nan, hd95_pred_to_gt=math.nan, hd95_gt_to_pred=math.nan,
                   flag=f"HD95 undefined: {which} empty")
    else:
        h, a, b = hd95(p, g, sp)
        out.update(hd95=h, hd95_pred_to_gt=a, hd95_gt_to_pred=b, flag="")
    return out


def foreground(arr: np.ndarray, path: str | os.PathLike, threshold: float | None = None,
               label: int | None = None) -> np.ndarray:
    """The boolean foreground of a volume to be scored, refusing what would be scored silently wrong.

    Parameters
    ----------
    arr : (z, y, x) mask, label map or probability map as read by
        :func:`~nnunetv2_neurino.data.volumes.read_label_volume`.
    path : its file, named in the messages.
    threshold : float volumes: foreground = value > ``threshold``. Required when the volume holds
        non-integer values (a probability map), which would otherwise count every non-zero voxel.
    label : foreground = value == ``label`` (label maps); default every non-zero value.

    Returns
    -------
    bool array (z, y, x).

    Raises
    ------
    NeurinoError : NaN or infinite values; non-integer values without ``threshold``.
    """
    if np.issubdtype(arr.dtype, np.floating):
        bad = ~np.isfinite(arr)
        if bad.any():
            raise NeurinoError(f"{path}: {int(bad.sum())} voxel(s) are NaN or infinite; a mask to score must "
                               "hold finite values")
        if threshold is not None:
            return arr > threshold
        if not np.array_equal(arr, np.round(arr)):
            raise NeurinoError(f"{path}: holds non-integer values ({float(arr.min()):g} .. "
                               f"{float(arr.max()):g}), like a probability map; pass threshold T to score "
                               "value > T as foreground")
    if label is not None:
        return arr == label
    return arr != 0
