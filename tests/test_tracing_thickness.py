"""Neurites of every thickness trace (scikit-image#3757: even cross-sections thin to nothing in plain
``skeletonize``; the tracer uses the losses' ``skeletonize_robust``), and degenerate masks never raise."""

from __future__ import annotations

import numpy as np
import pytest

from nnunetv2_neurino.metrics.neuron_distance import neuron_distance
from nnunetv2_neurino.swc import SWCTree
from nnunetv2_neurino.tracing import trace_mask


def _line(*points) -> SWCTree:
    """Polyline through (x, y, z) points."""
    return SWCTree.from_parent_index(np.asarray(points, float), np.arange(len(points)) - 1)


def _tips_and_junctions(t: SWCTree) -> tuple[int, int]:
    child, parent = t.edges()
    deg = np.bincount(np.concatenate([child, parent]), minlength=t.n)
    return int(np.sum(deg == 1)), int(np.sum(deg >= 3))


@pytest.mark.parametrize("thickness", [1, 2, 3, 4, 5, 6])
def test_straight_bar_of_any_thickness_traces_to_its_centre_line(thickness):
    mask = np.zeros((48, 14, 14), bool)
    mask[4:44, 4:4 + thickness, 4:4 + thickness] = True
    t = trace_mask(mask)
    assert len(t.roots) == 1 and _tips_and_junctions(t) == (2, 0)
    c = 4 + (thickness - 1) / 2
    assert neuron_distance(t, _line([c, c, 4], [c, c, 43]))["ESA"] <= 1.0


def test_2x2_bar_beside_3x3_bar_gives_two_trees():
    mask = np.zeros((40, 16, 20), bool)
    mask[4:36, 4:6, 4:6] = True
    mask[4:36, 4:7, 10:13] = True
    t = trace_mask(mask)
    assert len(t.roots) == 2
    labels = t.component_labels()
    for lab in np.unique(labels):
        part = t.take(labels == lab).renumbered()
        assert _tips_and_junctions(part) == (2, 0)
        x = 4.5 if part.xyz[0, 0] < 8 else 11.0
        y = 4.5 if x == 4.5 else 5.0
        assert neuron_distance(part, _line([x, y, 4], [x, y, 35]))["ESA"] <= 1.0


@pytest.mark.parametrize("thickness", [2, 4])
def test_t_of_even_thickness_keeps_all_three_branches(thickness):
    mask = np.zeros((44, 44, 12), bool)
    mask[4:4 + thickness, 4:40, 4:4 + thickness] = True            # bar along y at z = 4
    mask[4:40, 20:20 + thickness, 4:4 + thickness] = True          # stem along z from its middle
    t = trace_mask(mask)
    assert len(t.roots) == 1 and _tips_and_junctions(t) == (3, 1)
    c, m = 4 + (thickness - 1) / 2, 20 + (thickness - 1) / 2
    gold = SWCTree.from_parent_index(np.array([[c, 4, c], [c, m, c], [c, 39, c], [c, m, 39]], float),
                                     [-1, 0, 1, 1])
    assert neuron_distance(t, gold)["ESA"] <= 1.0


def test_all_ones_mask_gives_one_node_at_the_centre():
    t = trace_mask(np.ones((32, 32, 32), bool))
    t.validate()
    assert t.n >= 1 and len(t.roots) == 1
    assert np.all(np.abs(t.xyz.mean(axis=0) - 15.5) <= 1.0)
    assert np.all(t.radius > 0) and np.all(np.isfinite(t.radius))


@pytest.mark.parametrize("thickness", [2, 4])
def test_short_even_bars_and_cubes_never_raise(thickness):
    for length in (thickness, thickness + 1, 10):
        mask = np.zeros((16, 12, 12), bool)
        mask[3:3 + length, 3:3 + thickness, 3:3 + thickness] = True
        t = trace_mask(mask, min_component_size=1)
        assert t.n >= 1 and len(t.roots) == 1
