"""ESA / DSA / PDS: hand cases (Vaa3D neuron_distance), float32 threshold semantics, a brute-force
reference, NaN flags."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nnunetv2_neurino.metrics.neuron_distance import (
    SegmentIndex,
    neuron_distance,
    neuron_distance_segments,
    point_segment_distance,
    segments_from_arrays,
)
from nnunetv2_neurino.swc import read_swc

A_TEXT = "1 3 0 0 0 1 -1\n2 3 10 0 0 1 1\n"
B_FORK = "1 3 0 0 0 1 -1\n2 3 5 0 0 1 1\n3 3 10 0 0 1 2\n4 3 5 6 0 1 2\n"


def test_hand_case_parallel_shift():
    a = read_swc(A_TEXT)
    b = read_swc("1 3 0 3 0 1 -1\n2 3 10 3 0 1 1\n")
    r = neuron_distance(a, b)
    assert r["ESA"] == pytest.approx(3) and r["DSA"] == pytest.approx(3) and r["PDS"] == 1
    assert r["n12"] == r["n21"] == 11 and r["valid"]


def test_hand_case_fork():
    r = neuron_distance(read_swc(A_TEXT), read_swc(B_FORK))
    assert r["ESA12"] == 0 and r["ESA21"] == pytest.approx(21 / 19)
    assert r["ESA"] == pytest.approx(0.552632, abs=1e-6)
    assert r["DSA"] == pytest.approx(4) and r["DSA21"] == pytest.approx(4) and r["DSA12"] == 0
    assert r["PDS12"] == 0 and r["PDS21"] == pytest.approx(5 / 19) and r["PDS"] == pytest.approx(5 / 38)
    assert (r["n12"], r["n21"], r["n12big"], r["n21big"]) == (11, 19, 0, 5)


def test_swapping_trees_swaps_directions():
    r = neuron_distance(read_swc(A_TEXT), read_swc(B_FORK))
    s = neuron_distance(read_swc(B_FORK), read_swc(A_TEXT))
    for k12, k21 in (("ESA12", "ESA21"), ("DSA12", "DSA21"), ("PDS12", "PDS21"), ("n12", "n21")):
        assert r[k12] == s[k21] and r[k21] == s[k12]
    for k in ("ESA", "DSA", "PDS"):
        assert r[k] == s[k]


def test_threshold_is_inclusive_on_integer_grid():
    # every sample sits exactly 2 voxels from the other tree: all are "different" (d >= 2)
    r = neuron_distance(read_swc(A_TEXT), read_swc("1 3 0 2 0 1 -1\n2 3 10 2 0 1 1\n"), threshold=2.0)
    assert r["PDS"] == 1 and r["DSA"] == 2
    r = neuron_distance(read_swc(A_TEXT), read_swc("1 3 0 2 0 1 -1\n2 3 10 2 0 1 1\n"), threshold=2.0001)
    assert r["PDS"] == 0 and r["DSA"] == 0 and r["ESA"] == 2


def test_threshold_uses_float32_distances():
    # shift (0, 1.2, 1.6) has length 2 in real numbers; the classification follows float32 arithmetic
    y, z = np.float32(1.2), np.float32(1.6)
    d32 = np.sqrt(y * y + z * z)
    expected_big = bool(d32 >= np.float32(2.0))
    b = read_swc("1 3 0 1.2 1.6 1 -1\n2 3 10 1.2 1.6 1 1\n")
    r = neuron_distance(read_swc(A_TEXT), b)
    assert r["PDS"] == (1.0 if expected_big else 0.0)
    assert r["ESA"] == pytest.approx(float(d32), rel=0, abs=1e-6)


def test_empty_and_single_node_give_nan_with_flag():
    single = read_swc("1 1 3 3 3 1 -1\n")
    empty = read_swc("# nothing\n")
    a = read_swc(A_TEXT)
    for other, e1, e2 in ((single, False, True), (empty, False, True)):
        with np.errstate(all="raise"):
            r = neuron_distance(a, other)
        assert not r["valid"] and r["empty_1"] is e1 and r["empty_2"] is e2 and "tree 2" in r["flag"]
        assert all(math.isnan(r[k]) for k in ("ESA", "DSA", "PDS", "ESA12", "DSA21", "PDS12"))
    r = neuron_distance(empty, single)
    assert r["empty_1"] and r["empty_2"] and "tree 1 and tree 2" in r["flag"]


def _brute_force(xyz_a, par_a, xyz_b, par_b, thres):
    """Independent float64 reference: linspace samples, clipped projection onto every segment."""
    def segs(xyz, par):
        m = par >= 0
        return xyz[m], xyz[par[m]]

    ca, pa = segs(xyz_a, par_a)
    cb, pb = segs(xyz_b, par_b)

    def direction(c, p, c2, p2):
        ds = []
        for ci, pi in zip(c, p):
            n = int(1 + np.linalg.norm(ci - pi) + 0.5)
            pts = np.linspace(ci, pi, n) if n > 1 else ci[None]
            v = p2 - c2
            w = pts[:, None, :] - c2[None]
            vv = np.maximum((v * v).sum(-1), 1e-300)
            t = np.clip((w * v[None]).sum(-1) / vv, 0, 1)
            ds.append(np.linalg.norm(w - t[..., None] * v[None], axis=-1).min(axis=1))
        d = np.concatenate(ds)
        big = d >= thres
        return d.mean(), (d[big].mean() if big.any() else 0.0), big.mean(), d.size

    return direction(ca, pa, cb, pb), direction(cb, pb, ca, pa)


def _random_tree(n, rng, step=2.5):
    xyz = np.zeros((n, 3))
    par = np.full(n, -1)
    for i in range(1, n):
        par[i] = rng.integers(max(0, i - 10), i)
        xyz[i] = xyz[par[i]] + rng.normal(size=3) * step
    return xyz, par


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_brute_force_on_random_trees(seed):
    rng = np.random.default_rng(seed)
    xa, pa = _random_tree(150, rng)
    xb, pb = _random_tree(120, rng)
    xb = xb + rng.normal(size=3) * 2
    r = neuron_distance_segments(segments_from_arrays(xa, pa), segments_from_arrays(xb, pb), threshold=2.0)
    (e12, d12, p12, n12), (e21, d21, p21, n21) = _brute_force(xa, pa, xb, pb, 2.0)
    assert (r["n12"], r["n21"]) == (n12, n21)
    assert r["ESA12"] == pytest.approx(e12, rel=1e-5) and r["ESA21"] == pytest.approx(e21, rel=1e-5)
    assert r["DSA12"] == pytest.approx(d12, rel=1e-5) and r["DSA21"] == pytest.approx(d21, rel=1e-5)
    assert r["PDS12"] == pytest.approx(p12, abs=2 / n12) and r["PDS21"] == pytest.approx(p21, abs=2 / n21)


def test_segment_index_exact_against_all_segments():
    rng = np.random.default_rng(5)
    xb, pb = _random_tree(400, rng, step=4.0)
    seg = segments_from_arrays(xb, pb)
    pts = rng.uniform(xb.min(0) - 10, xb.max(0) + 10, size=(3000, 3)).astype(np.float32)
    all_d = point_segment_distance(pts[:, None, :], seg.child[None], seg.parent[None]).min(axis=1)
    np.testing.assert_array_equal(SegmentIndex(seg).min_distance(pts), all_d)


def test_point_segment_distance_cases():
    p1, p2 = np.array([0, 0, 0], np.float32), np.array([4, 0, 0], np.float32)
    pts = np.array([[2, 3, 0], [-3, 4, 0], [7, 0, 4], [4, 0, 0], [1, 0, 0]], np.float32)
    np.testing.assert_allclose(point_segment_distance(pts, p1, p2), [3, 5, 5, 0, 0])
    # degenerate segment = distance to the point
    assert point_segment_distance(np.array([3, 4, 0], np.float32), p1, p1) == 5


def test_real_swc_self_distance_zero_and_compat_links(cwmbs_swc_files):
    path = cwmbs_swc_files[0]
    for p in cwmbs_swc_files:
        with pytest.warns(UserWarning):
            t = read_swc(p)
        if (t.parent_index < 0).sum() > 1:
            path = p
            break
    with pytest.warns(UserWarning):
        r = neuron_distance(path, path)
    with pytest.warns(UserWarning):
        c = neuron_distance(path, path, vaa3d_compat=True)
    # samples lie on the tree itself: zero up to float32 rounding of the projections
    assert r["ESA"] < 1e-5 and r["PDS"] == 0 and c["ESA"] < 1e-5 and c["PDS"] == 0
    assert c["n12"] > r["n12"]  # the links to the first row add sampled segments

