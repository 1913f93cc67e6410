"""SWC -> mask rendering against analytic volumes, brute-force oracles and real CWMBS trees."""

from __future__ import annotations

import warnings

import cc3d
import numpy as np
import pytest

from nnunetv2_neurino.data.render import render_swc, swept_sphere_distance
from nnunetv2_neurino.swc import SWCTree, read_swc


def _tree(xyz, radius, parent_index):
    return SWCTree.from_parent_index(np.asarray(xyz, float), parent_index, radius=radius)


def _grid(shape):
    return np.stack(np.indices(shape), -1).astype(float)          # (..., 3) voxel centres (z, y, x)


def _disc_count(r: float) -> int:
    """Lattice points with i^2 + j^2 <= r^2 (counted directly)."""
    k = int(np.floor(r))
    i, j = np.meshgrid(np.arange(-k, k + 1), np.arange(-k, k + 1))
    return int(np.sum(i * i + j * j <= r * r + 1e-9))


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (2.0, 0.5, 1.0)])
def test_single_ball_exact_membership_and_volume(spacing):
    x, y, z, r = 15.3, 12.7, 9.5, 3.2
    shape = (24, 28, 32)
    t = _tree([[x, y, z]], r, [-1])
    got = render_swc(t, shape, spacing=spacing)
    unit = min(spacing)
    d = np.linalg.norm((_grid(shape) - [z, y, x]) * spacing, axis=-1)
    np.testing.assert_array_equal(got, d <= r * unit)
    ball = 4 / 3 * np.pi * (r * unit) ** 3 / np.prod(spacing)     # expected voxel count
    assert got.sum() == pytest.approx(ball, rel=0.1)


def test_axis_aligned_cylinder_voxel_count():
    r, x0, x1 = 3.0, 5, 25
    t = _tree([[x0, 16, 16], [x1, 16, 16]], r, [-1, 0])
    got = render_swc(t, (32, 32, 40))
    caps = sum(_disc_count(np.sqrt(r * r - dx * dx)) for dx in range(1, int(r) + 1))
    expected = _disc_count(r) * (x1 - x0 + 1) + 2 * caps
    assert got.sum() == expected
    # and close to the continuous volume pi r^2 L + 4/3 pi r^3
    assert got.sum() == pytest.approx(np.pi * r * r * (x1 - x0) + 4 / 3 * np.pi * r ** 3, rel=0.1)


def test_tapered_cylinder_monotone_and_end_sections():
    t = _tree([[4, 20, 20], [36, 20, 20]], [1.0, 6.0], [-1, 0])
    got = render_swc(t, (40, 40, 44))
    area = got.sum(axis=(0, 1))                       # voxels per x slice
    body = area[4:37]
    assert np.all(np.diff(body) >= 0) and body[-1] > body[0]
    assert area[36] == _disc_count(6.0)               # the end section is the big ball's equator
    # every voxel of the narrow end's ball and on the axis is inside
    assert got[20, 20, 4:37].all()


def test_swept_sphere_distance_matches_dense_sampling():
    rng = np.random.default_rng(1)
    v = rng.uniform(-5, 15, size=(200, 3))
    a, b = np.array([0.0, 1.0, 2.0]), np.array([9.0, 4.0, 1.0])
    for ra, rb in [(1.0, 1.0), (0.5, 4.0), (3.0, 0.2), (0.5, 30.0)]:   # last: one end ball swallows all
        ts = np.linspace(0, 1, 10001)[:, None]
        pts = a + ts * (b - a)
        rad = ra + ts[:, 0] * (rb - ra)
        brute = np.min(np.linalg.norm(v[:, None, :] - pts[None], axis=-1) - rad[None], axis=1)
        got = swept_sphere_distance(v, a, b, np.float64(ra), np.float64(rb))
        np.testing.assert_allclose(got, brute, atol=3e-3)


def test_random_tree_equals_brute_force_union_of_swept_spheres():
    """Long edges are cut into pieces and tested in per-piece boxes: the result must equal the plain
    definition evaluated on every voxel of the grid (anisotropic spacing, varied radii)."""
    rng = np.random.default_rng(5)
    n, spacing, shape = 12, (1.5, 1.0, 0.8), (20, 30, 36)
    xyz = rng.uniform([0, 0, 0], [36, 30, 20], size=(n, 3))
    radius = rng.uniform(0.3, 4.0, n)
    pidx = np.array([-1] + [int(rng.integers(0, i)) for i in range(1, n)])
    t = _tree(xyz, radius, pidx)
    got = render_swc(t, shape, spacing=spacing, radius_floor=1.0)
    s = np.asarray(spacing)
    v = _grid(shape) * s
    zyx = xyz[:, ::-1] * s
    r = np.maximum(radius, 1.0) * min(spacing)
    f = np.full(shape, np.inf)
    for c in range(n):                                   # every node with its parent (roots: own ball)
        p = pidx[c] if pidx[c] >= 0 else c
        f = np.minimum(f, swept_sphere_distance(v, zyx[c], zyx[p], r[c], r[p]))
    np.testing.assert_array_equal(got, f <= 1e-9 * r.max())


def test_offset_crop_and_clipping_equal_the_full_render():
    rng = np.random.default_rng(2)
    n = 40
    xyz = rng.uniform(-5, 69, size=(n, 3))            # some nodes outside the volume
    t = _tree(xyz, rng.uniform(0.5, 3, n), [-1] + list(rng.integers(0, np.arange(1, n))))
    full = render_swc(t, (64, 64, 64))
    crop = render_swc(t, (30, 25, 20), offset=(10, 20, 5))
    np.testing.assert_array_equal(crop, full[10:40, 20:45, 5:25])
    assert full.any() and crop.any()


def test_physical_coordinates_and_floor():
    spacing = (2.0, 1.0, 0.5)
    xyz_vox = np.array([[10.0, 12.0, 8.0], [30.0, 14.0, 9.0], [20.0, 30.0, 12.0]])
    tv = _tree(xyz_vox, 4.0, [-1, 0, 0])                       # radius 4 voxels of the finest axis (0.5)
    tp = _tree(xyz_vox * np.array(spacing)[::-1], 2.0, [-1, 0, 0])  # same thing in physical units
    a = render_swc(tv, (20, 40, 40), spacing=spacing)
    b = render_swc(tp, (20, 40, 40), spacing=spacing, coords="physical")
    np.testing.assert_array_equal(a, b)
    thin = render_swc(_tree(xyz_vox, 0.1, [-1, 0, 0]), (20, 40, 40), radius_floor=1.0)
    one = render_swc(_tree(xyz_vox, 1.0, [-1, 0, 0]), (20, 40, 40))
    np.testing.assert_array_equal(thin, one)
    wide = render_swc(_tree(xyz_vox, 1.0, [-1, 0, 0]), (20, 40, 40), radius_scale=2.0)
    np.testing.assert_array_equal(wide, render_swc(_tree(xyz_vox, 2.0, [-1, 0, 0]), (20, 40, 40)))


def test_cwmbs_render_covers_nodes_and_is_connected(cwmbs_swc_files):
    # (speed: benchmarks/eval_speed.py renders a 1,400-node neuron into 256³)
    for f in cwmbs_swc_files:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t = read_swc(f)
        m = render_swc(t, (256, 256, 256))
        zyx = np.rint(t.to_zyx()).astype(int)
        ok = np.all((zyx >= 0) & (zyx < 256), axis=1)
        assert m[tuple(zyx[ok].T)].all(), f.name
        # each tree renders as one 26-connected piece, so there are at most as many pieces as roots
        assert 1 <= cc3d.connected_components(m, connectivity=26).max() <= len(t.roots), f.name
