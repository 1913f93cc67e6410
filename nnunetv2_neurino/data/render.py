"""Render an SWC tree into a binary volume: a ball at every node and a tapered cylinder along every edge.

The shape drawn for an edge a-b is the union of the balls centred on the segment with linearly
interpolated radius (a "swept sphere": a cone frustum closed by the two end balls). A voxel with centre
v is inside when ``min_t ||v - x(t)|| - r(t) <= 0``, which has a closed form (the function is convex in
t). Distances are physical (voxel index differences times ``spacing``), so anisotropic volumes get
round tubes. Work is vectorised over edges: long edges are cut into short pieces (exact: a union of
swept spheres), and the pieces are tested in batches over small per-piece bounding boxes.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from nnunetv2_neurino.data.volumes import check_spacing
from nnunetv2_neurino.errors import NeurinoError
from nnunetv2_neurino.swc import SWCTree

__all__ = ["render_swc", "swept_sphere_distance"]

_PIECE = 4.0            # longest piece of an edge, in voxels along any axis
_BATCH_VOXELS = 500_000     # candidate voxels per batch (bounds peak memory to ~60 MB)


def swept_sphere_distance(v: np.ndarray, a: np.ndarray, b: np.ndarray, ra: np.ndarray,
                          rb: np.ndarray) -> np.ndarray:
    """Signed distance-like value ``min_t ||v - x(t)|| - r(t)`` for tapered segments (<= 0: inside).

    Parameters
    ----------
    v : (..., 3) query points; a, b : (..., 3) segment ends; ra, rb : (...) radii at a and b.
        All in the same (physical) unit and broadcastable against each other.

    Returns
    -------
    (...) float64; ``x(t) = a + t (b - a)``, ``r(t) = ra + t (rb - ra)``, t in [0, 1].
    """
    d = b - a
    length = np.sqrt(np.sum(d * d, axis=-1))
    w = v - a
    f_a = np.sqrt(np.sum(w * w, axis=-1)) - ra
    f_b = np.sqrt(np.sum((v - b) ** 2, axis=-1)) - rb
    f = np.minimum(f_a, f_b)
    safe_len = np.where(length > 1e-12, length, 1.0)
    k = (rb - ra) / safe_len                        # radius slope per unit length
    s = np.sum(w * d, axis=-1) / safe_len            # position along the axis
    h = np.sqrt(np.maximum(np.sum(w * w, axis=-1) - s * s, 0.0))
    ok = (length > 1e-12) & (np.abs(k) < 1.0)
    k_ok = np.where(ok, k, 0.0)
    tau = np.clip(s + k_ok * h / np.sqrt(1.0 - k_ok * k_ok), 0.0, safe_len)
    f_int = np.sqrt((s - tau) ** 2 + h * h) - ra - k_ok * tau
    return np.where(ok, np.minimum(f, f_int), f)


def _pieces(p: np.ndarray, r: np.ndarray, a_idx: np.ndarray, b_idx: np.ndarray):
    """Cut segments a-b (voxel coords p, radii r) into pieces at most _PIECE voxels long per axis."""
    pa, pb, ra, rb = p[a_idx], p[b_idx], r[a_idx], r[b_idx]
    n_cut = np.maximum(1, np.ceil(np.max(np.abs(pb - pa), axis=1) / _PIECE)).astype(np.int64)
    seg = np.repeat(np.arange(n_cut.shape[0]), n_cut)
    first = np.cumsum(n_cut) - n_cut
    k = np.arange(seg.shape[0]) - first[seg]
    t0 = (k / n_cut[seg])[:, None]
    t1 = ((k + 1) / n_cut[seg])[:, None]
    d, dr = pb[seg] - pa[seg], rb[seg] - ra[seg]
    return (pa[seg] + t0 * d, pa[seg] + t1 * d, ra[seg] + t0[:, 0] * dr, ra[seg] + t1[:, 0] * dr)


def render_swc(tree: SWCTree, shape: tuple[int, int, int], spacing=(1.0, 1.0, 1.0), offset=(0, 0, 0),
               radius_floor: float = 1.0, radius_scale: float = 1.0,
               coords: Literal["voxel", "physical"] = "voxel") -> np.ndarray:
    """Binary mask of ``tree``: balls at nodes, tapered cylinders along parent-child edges.

    Parameters
    ----------
    tree : the reconstruction; ``xyz`` columns are x, y, z with x = last array axis.
    shape : output shape (Z, Y, X).
    spacing : voxel size (z, y, x), e.g. micrometres; distances are measured physically.
    offset : (z, y, x) voxel index, in the full image, of the output's first voxel (for crops): a node at
        full-image voxel position q lands at ``q - offset``.
    radius_floor : smallest radius drawn, in voxels of the finest axis (``min(spacing)``).
    radius_scale : factor applied to the SWC radii before the floor.
    coords : ``"voxel"``: SWC positions are 0-based voxel coordinates of the full image and radii are in
        voxels of the finest axis; ``"physical"``: positions are ``index * spacing`` and radii use the
        same unit as spacing.

    Returns
    -------
    bool array of ``shape``, indexed [z, y, x]; everything outside the volume is clipped away.
    """
    shape = tuple(int(s) for s in shape)
    spacing = np.asarray(check_spacing(spacing, "render_swc: spacing"), dtype=np.float64)
    offset = np.asarray(offset, dtype=np.float64).reshape(3)
    if len(shape) != 3 or min(shape) < 0:
        raise NeurinoError(f"render_swc: shape must be 3 non-negative sizes (z, y, x), got {shape}")
    if coords not in ("voxel", "physical"):
        raise NeurinoError(f"render_swc: coords must be 'voxel' or 'physical', got {coords!r}")
    mask = np.zeros(shape, dtype=bool)
    if tree.n == 0 or mask.size == 0:
        return mask

    unit = float(spacing.min())
    zyx = tree.to_zyx()
    if coords == "physical":
        p = zyx / spacing - offset
        r = tree.radius * radius_scale
    else:
        p = zyx - offset
        r = tree.radius * radius_scale * unit
    r = np.maximum(r, radius_floor * unit)          # physical radii

    child, parent = tree.edges()
    lonely = np.setdiff1d(np.arange(tree.n), np.concatenate([child, parent]))
    a_idx = np.concatenate([child, lonely])
    b_idx = np.concatenate([parent, lonely])
    pa, pb, ra, rb = _pieces(p, r, a_idx, b_idx)

    # per-piece bounding boxes in voxel indices, clipped to the volume
    reach = np.maximum(ra, rb)[:, None] / spacing[None, :]
    lo = np.floor(np.minimum(pa, pb) - reach).astype(np.int64)
    hi = np.ceil(np.maximum(pa, pb) + reach).astype(np.int64)
    lo = np.maximum(lo, 0)
    hi = np.minimum(hi, np.asarray(shape) - 1)
    visible = np.all(hi >= lo, axis=1)
    pa, pb, ra, rb, lo, hi = pa[visible], pb[visible], ra[visible], rb[visible], lo[visible], hi[visible]
    if pa.shape[0] == 0:
        return mask
    # group pieces by box size (rounded up to a multiple of 4 per axis) and test each group in batches
    size = ((hi - lo + 1 + 3) // 4) * 4
    groups, inverse = np.unique(size, axis=0, return_inverse=True)
    flat = mask.reshape(-1)
    strides = np.array([shape[1] * shape[2], shape[2], 1], dtype=np.int64)
    for g, box in enumerate(groups):
        members = np.flatnonzero(inverse.reshape(-1) == g)
        grid = np.stack(np.meshgrid(*[np.arange(n) for n in box], indexing="ij"), -1).reshape(-1, 3)
        per_batch = max(1, _BATCH_VOXELS // grid.shape[0])
        for start in range(0, members.shape[0], per_batch):
            m = members[start:start + per_batch]
            idx = lo[m][:, None, :] + grid[None, :, :]                       # (E, V, 3) voxel indices
            inside_box = np.all(idx <= hi[m][:, None, :], axis=-1)
            f = swept_sphere_distance(idx * spacing, (pa[m] * spacing)[:, None, :],
                                      (pb[m] * spacing)[:, None, :], ra[m][:, None], rb[m][:, None])
            hit = inside_box & (f <= 1e-9 * max(1.0, float(r.max())))
            flat[idx[hit] @ strides] = True
    return mask
