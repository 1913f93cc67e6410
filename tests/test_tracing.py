"""Built-in tracer: analytic shapes, properties (no cycles, one tree per component, rooting), and the
round trip SWC -> rendered mask -> traced SWC on the real CWMBS reconstructions."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from nnunetv2_neurino.data.render import render_swc
from nnunetv2_neurino.errors import NeurinoError
from nnunetv2_neurino.metrics.neuron_distance import neuron_distance
from nnunetv2_neurino.swc import SOMA, SWCTree, read_swc, write_swc
from nnunetv2_neurino.tracing import prune_short_branches, resample_chains, trace_mask, trace_probabilities
from nnunetv2_neurino.tracing.skeleton_graph import neighbour_graph
from nnunetv2_neurino.tracing.trace import distance_to_background


def _tree(xyz, radius, parent_index):
    return SWCTree.from_parent_index(np.asarray(xyz, float), parent_index, radius=radius)


def _degrees(t: SWCTree) -> np.ndarray:
    child, parent = t.edges()
    return np.bincount(np.concatenate([child, parent]), minlength=t.n)


def _assert_forest(t: SWCTree) -> None:
    assert t.find_cycle_node() is None
    assert len(t.edges()[0]) == t.n - len(t.roots)
    # every edge joins 26-neighbouring voxels
    child, parent = t.edges()
    assert np.all(np.abs(t.xyz[child] - t.xyz[parent]).max(axis=1) == 1)


def test_neighbour_graph_counts_26_neighbours():
    cube = np.argwhere(np.ones((3, 3, 3), bool))
    g = neighbour_graph(cube)
    deg = np.diff(g.indptr)
    centre = np.flatnonzero((cube == 1).all(axis=1))[0]
    assert deg[centre] == 26 and g.nnz == 2 * 158          # 158 = adjacent pairs in a 3x3x3 cube
    gs = neighbour_graph(np.array([[0, 0, 0], [1, 1, 0]]), spacing=(2.0, 1.0, 1.0))
    assert gs[0, 1] == pytest.approx(np.sqrt(5.0))


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (2.5, 1.0, 0.7)])
def test_sparse_distance_equals_full_distance_transform(spacing):
    import edt
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(3)
    fg = gaussian_filter(rng.normal(size=(30, 34, 38)), 2.0) > 0.05          # blobs touching the borders
    pts = np.argwhere(fg)
    expected = edt.edt(fg, anisotropy=spacing, black_border=False)[fg]
    np.testing.assert_allclose(distance_to_background(fg, pts, spacing), expected, rtol=1e-6)


def test_straight_tube_traces_to_its_axis():
    mask = render_swc(_tree([[5, 10, 10], [25, 10, 10]], 2.0, [-1, 0]), (21, 21, 31))
    t = trace_mask(mask)
    _assert_forest(t)
    assert len(t.roots) == 1 and _degrees(t).max() <= 2       # one unbranched chain
    np.testing.assert_allclose(t.xyz[:, 1:], 10)                # on the axis (y = z = 10)
    assert t.xyz[:, 0].min() <= 7 and t.xyz[:, 0].max() >= 23   # ends retract by at most the radius
    assert np.median(t.radius) == pytest.approx(2.0, abs=1.0)   # distance to background ~ tube radius


def test_y_shape_has_three_tips_and_one_tree():
    xyz = [[20, 20, 20], [20, 5, 20], [8, 32, 20], [32, 32, 20]]
    mask = render_swc(_tree(xyz, 1.5, [-1, 0, 0, 0]), (40, 40, 40))
    t = trace_mask(mask)
    _assert_forest(t)
    deg = _degrees(t)
    assert len(t.roots) == 1 and np.sum(deg == 1) == 3
    # junction(s) near the centre
    junctions = t.xyz[deg >= 3]
    assert junctions.shape[0] >= 1 and np.all(np.linalg.norm(junctions - [20, 20, 20], axis=1) < 4)


def test_ring_cycle_is_broken():
    sq = [[10, 10, 15], [30, 10, 15], [30, 30, 15], [10, 30, 15]]
    ring = SWCTree.concatenate([_tree([sq[i], sq[(i + 1) % 4]], 1.0, [-1, 0]) for i in range(4)])
    mask = render_swc(ring, (30, 40, 40))
    t = trace_mask(mask)
    _assert_forest(t)
    assert len(t.roots) == 1
    # the loop minus one edge: a chain with two tips
    assert np.sum(_degrees(t) == 1) == 2 and _degrees(t).max() == 2


def test_components_small_ones_removed_and_roots():
    a = _tree([[5, 5, 5], [25, 5, 5], [25, 5, 5]], [1.0, 4.0, 4.0], [-1, 0, 1])    # cone: thick at x=25
    b = _tree([[5, 25, 20], [25, 25, 20]], 1.0, [-1, 0])
    mask = render_swc(SWCTree.concatenate([a, b]), (30, 34, 34))
    mask[28, 30, 30] = mask[28, 30, 31] = True                                    # 2-voxel speck
    t = trace_mask(mask, min_component_size=10)
    _assert_forest(t)
    assert len(t.roots) == 2 and (t.types == SOMA).sum() == 0
    root_xyz = t.xyz[t.roots]
    cone_root = root_xyz[np.argmin(root_xyz[:, 1])]
    assert cone_root[0] >= 20                                                   # largest radius end
    assert t.radius[t.roots].max() >= 3.0
    assert len(trace_mask(mask, min_component_size=1).roots) == 3               # speck kept

    seeded = trace_mask(mask, root=(6, 25, 20))
    _assert_forest(seeded)
    soma = np.flatnonzero(seeded.types == SOMA)
    assert soma.size == 1 and seeded.parent[soma[0]] == -1
    assert np.linalg.norm(seeded.xyz[soma[0]] - [6, 25, 20]) <= 3


def test_offset_and_probabilities_and_empty():
    tree = _tree([[8, 8, 8], [20, 14, 10], [12, 22, 16]], 1.5, [-1, 0, 1])
    mask = render_swc(tree, (32, 32, 32))
    full = trace_mask(mask)
    crop = trace_mask(mask[4:28, 3:30, 5:30], offset=(4, 3, 5))
    assert {tuple(p) for p in full.xyz} == {tuple(p) for p in crop.xyz}
    prob = np.where(mask, 0.7, 0.2).astype(np.float32)
    prob[0, 0, 0] = 0.5                                                          # not > 0.5
    assert {tuple(p) for p in trace_probabilities(prob, 0.5).xyz} == {tuple(p) for p in full.xyz}
    assert trace_mask(np.zeros((8, 8, 8), bool)).n == 0
    block = trace_mask(np.ones((5, 7, 9), bool))               # no background anywhere
    assert block.n >= 1 and np.all(np.isfinite(block.radius)) and block.radius.max() <= 3
    with pytest.raises(NeurinoError, match="spacing"):
        trace_mask(mask, spacing=(1, 0, 1))


def test_spacing_aware_radius_round_trip():
    spacing = (1.0, 1.0, 0.5)                      # x finest; radii in units of 0.5
    tree = _tree([[6, 15, 15], [50, 15, 15]], 6.0, [-1, 0])   # physical radius 3 in y and z
    mask = render_swc(tree, (31, 31, 57), spacing=spacing)
    t = trace_mask(mask, spacing=spacing)
    assert np.median(t.radius) == pytest.approx(6.0, abs=1.0)


def test_resample_and_prune():
    xyz = [[20, 20, 20], [20, 4, 20], [20, 36, 20], [23, 20, 20]]                # spur of length 3
    t = trace_mask(render_swc(_tree(xyz, 1.0, [-1, 0, 0, 0]), (40, 40, 40)))
    deg = _degrees(t)
    pruned = prune_short_branches(t, 5.0)
    _assert_forest(pruned)
    assert np.sum(_degrees(pruned) == 1) == 2 and np.sum(deg == 1) == 3
    assert prune_short_branches(t, 1.0).n == t.n
    r = resample_chains(t, 4)
    assert r.find_cycle_node() is None and len(r.roots) == len(t.roots)
    assert np.sum(_degrees(r) == 1) == np.sum(deg == 1)                         # tips kept
    assert t.n / 4 - 6 <= r.n <= t.n / 4 + 8
    assert neuron_distance(t, r)["ESA"] < 0.5                                   # same curve, coarser


def test_cwmbs_round_trip_render_then_trace(cwmbs_swc_files, tmp_path):
    """Render each real tracing (r = 1 voxel) cropped to its bounding box + margin and trace it back.

    Thresholds: voxel quantisation puts a traced centre line up to sqrt(3)/2 = 0.87 voxel from the
    true polyline, ~0.5 on average (observed ESA 0.38-0.49), so ESA < 0.75 in each direction. A
    "different" sample needs d >= 2 voxels: only where nearby branches fuse into one tube or tips
    retract/spur, observed PDS <= 0.008, so PDS < 0.03 in each direction.
    """
    import morphio

    morphio.set_maximum_warnings(0)
    margin = 4
    for f in cwmbs_swc_files:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gt = read_swc(f)
        zyx = gt.to_zyx()
        lo = np.floor(zyx.min(axis=0)).astype(int) - margin
        hi = np.ceil(zyx.max(axis=0)).astype(int) + margin + 1
        mask = render_swc(gt, tuple(hi - lo), offset=lo)
        traced = trace_mask(mask, offset=lo)
        _assert_forest(traced)
        assert 1 <= len(traced.roots) <= len(gt.roots), f.name
        d = neuron_distance(gt, traced)
        assert d["ESA12"] < 0.75 and d["ESA21"] < 0.75, (f.name, d)
        assert d["PDS12"] < 0.03 and d["PDS21"] < 0.03, (f.name, d)
    # a traced tree (with a soma) written to SWC loads in MorphIO
    seeded = trace_mask(mask, offset=lo, root=tuple(gt.xyz[0]))
    out = write_swc(seeded, tmp_path / "traced.swc")
    m = morphio.Morphology(str(out))
    assert m.soma.points.shape[0] == 1 and len(m.root_sections) >= 1


def _blobs(seed: int, shape=(36, 40, 44)) -> np.ndarray:
    """Random smooth blobs: several 26-connected components of different sizes, some touching the border."""
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(np.random.default_rng(seed).normal(size=shape), 1.5) > 0.12


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (2.0, 1.0, 0.7)])
def test_radii_equal_full_volume_distance_transform(spacing):
    """Radii are the distance transform of the whole (dust-free) mask read at the nodes: the tracer's
    internal crop to the foreground's bounding box must not hide the background just outside it."""
    import cc3d
    import edt

    mask = np.zeros((50, 54, 58), bool)
    mask[5:45, 6:48, 7:51] = _blobs(4, (40, 42, 44))          # nothing on the array border
    t = trace_mask(mask, spacing=spacing, min_component_size=10)
    clean = cc3d.dust(mask, threshold=10, connectivity=26)
    field = edt.edt(clean, anisotropy=spacing, black_border=False) / min(spacing)
    zyx = np.rint(t.to_zyx()).astype(int)
    np.testing.assert_allclose(t.radius, field[zyx[:, 0], zyx[:, 1], zyx[:, 2]], rtol=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_trace_once_for_largest_component_equals_tracing_it(seed):
    from nnunetv2_neurino.tracing.trace import keep_largest_component, trace_mask_and_largest_component

    mask = _blobs(seed)
    spacing = ((1.0, 1.0, 1.0), (2.0, 1.0, 0.7))[seed % 2]
    full, largest = trace_mask_and_largest_component(mask, spacing, min_component_size=10, offset=(3, 0, 5))
    for got, expected in ((full, trace_mask(mask, spacing, 10, offset=(3, 0, 5))),
                          (largest, trace_mask(keep_largest_component(mask), spacing, 10, offset=(3, 0, 5)))):
        assert got.n == expected.n and len(got.roots) == len(expected.roots)
        radius = dict(zip(map(tuple, expected.xyz), expected.radius))
        np.testing.assert_allclose(got.radius, [radius[tuple(p)] for p in got.xyz], rtol=1e-9)
        assert _segment_set(got) == _segment_set(expected)
        assert {tuple(p) for p in got.xyz[got.roots]} == {tuple(p) for p in expected.xyz[expected.roots]}
    assert len(largest.roots) == 1 and len(full.roots) > 1
    # a largest component under the size limit leaves nothing, as tracing it would
    speck = np.zeros((10, 10, 10), bool)
    speck[4, 4, 4:7] = True
    assert [t.n for t in trace_mask_and_largest_component(speck, min_component_size=10)] == [0, 0]
    assert [t.n for t in trace_mask_and_largest_component(np.zeros((4, 4, 4)))] == [0, 0]
    # a tie: two equal rods; both functions keep the one whose first voxel comes first in C order
    rods = np.zeros((12, 20, 20), bool)
    rods[8, 3, 2:16] = rods[3, 15, 4:18] = True
    kept = keep_largest_component(rods)
    assert kept.sum() == 14 and kept[3, 15, 4]
    _, largest = trace_mask_and_largest_component(rods, min_component_size=5)
    assert np.all(largest.xyz[:, 2] == 3) and largest.n == 14


def _segment_set(t: SWCTree) -> set:
    child, parent = t.edges()
    return {frozenset((tuple(t.xyz[c]), tuple(t.xyz[p]))) for c, p in zip(child, parent)}
