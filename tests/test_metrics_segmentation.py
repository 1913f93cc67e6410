"""F1 / precision / recall / HD95: analytic cubes, a brute-force pairwise reference, empty masks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from nnunetv2_neurino.errors import NeurinoError
from nnunetv2_neurino.metrics.segmentation import segmentation_metrics, surface_voxels


def _cube(shape, lo, size):
    m = np.zeros(shape, bool)
    m[tuple(slice(lo_i, lo_i + size) for lo_i in lo)] = True
    return m


@pytest.mark.parametrize("axis,k", [(0, 1), (1, 3), (2, 4)])
def test_offset_cubes_hd95_equals_offset(axis, k):
    gt = _cube((40, 40, 40), (10, 10, 10), 12)
    shift = [0, 0, 0]
    shift[axis] = k
    pred = _cube((40, 40, 40), tuple(10 + s for s in shift), 12)
    r = segmentation_metrics(pred, gt)
    assert r["hd95"] == pytest.approx(k)
    overlap = 12 * 12 * (12 - k)
    assert r["f1"] == pytest.approx(overlap / 12**3)
    assert r["precision"] == pytest.approx(overlap / 12**3) and r["recall"] == pytest.approx(overlap / 12**3)
    assert (r["tp"], r["fp"], r["fn"]) == (overlap, 12**3 - overlap, 12**3 - overlap)


def test_spacing_scales_distance_along_its_axis():
    gt = _cube((40, 40, 40), (10, 10, 10), 12)
    pred = _cube((40, 40, 40), (13, 10, 10), 12)
    assert segmentation_metrics(pred, gt, spacing=(2.5, 1, 1))["hd95"] == pytest.approx(7.5)
    assert segmentation_metrics(pred, gt, spacing=(1, 0.5, 9))["hd95"] == pytest.approx(3)


def _brute_hd95(pred, gt, spacing):
    def surf(m):  # independent: a mask voxel with any 6-neighbour outside (outside the array = outside)
        p = np.pad(m, 1)
        inner = np.ones_like(m)
        for ax in range(3):
            for s in (-1, 1):
                inner &= np.roll(p, s, axis=ax)[1:-1, 1:-1, 1:-1]
        return m & ~inner

    a = np.argwhere(surf(pred)) * np.asarray(spacing)
    b = np.argwhere(surf(gt)) * np.asarray(spacing)
    d = cdist(a, b)
    return max(np.percentile(d.min(1), 95), np.percentile(d.min(0), 95))


@pytest.mark.parametrize("seed", [0, 1])
def test_random_blobs_match_pairwise_reference(seed):
    rng = np.random.default_rng(seed)
    from scipy import ndimage

    shape = (18, 20, 22)
    pred = ndimage.binary_dilation(rng.random(shape) > 0.985, iterations=2)
    gt = ndimage.binary_dilation(rng.random(shape) > 0.985, iterations=2)
    pred[0, 5:9, 5:9] = True  # touch the array border: those voxels are surface
    spacing = (1.5, 1.0, 0.7)
    r = segmentation_metrics(pred, gt, spacing)
    assert r["hd95"] == pytest.approx(_brute_hd95(pred, gt, spacing), rel=1e-6)
    assert r["f1"] == pytest.approx(2 * (pred & gt).sum() / (pred.sum() + gt.sum()))


def test_border_voxels_count_as_surface():
    full = np.ones((6, 7, 8), bool)
    s = surface_voxels(full)
    assert s.sum() == full.size - 4 * 5 * 6  # all voxels but the interior box
    r = segmentation_metrics(full, full)
    assert r["f1"] == 1 and r["hd95"] == 0


def test_empty_masks():
    gt = _cube((10, 10, 10), (2, 2, 2), 3)
    empty = np.zeros_like(gt)
    with np.errstate(all="raise"):
        r = segmentation_metrics(empty, gt)
    assert r["f1"] == 0 and r["precision"] == 0 and r["recall"] == 0
    assert math.isnan(r["hd95"]) and "prediction empty" in r["flag"]
    r = segmentation_metrics(gt, empty)
    assert r["f1"] == 0 and math.isnan(r["hd95"]) and "ground truth empty" in r["flag"]
    r = segmentation_metrics(empty, empty)
    assert r["f1"] == 1 and math.isnan(r["hd95"]) and "prediction and ground truth" in r["flag"]


def test_shape_and_spacing_errors():
    with pytest.raises(NeurinoError, match="shape"):
        segmentation_metrics(np.zeros((4, 4, 4)), np.zeros((4, 4, 5)))
    with pytest.raises(NeurinoError, match="spacing"):
        segmentation_metrics(np.zeros((4, 4, 4)), np.zeros((4, 4, 4)), spacing=(1, 0, 1))


def test_all_foreground_prediction():
    """An all-foreground prediction: recall 1, precision = |GT| / volume, and HD95 set by the array border
    (its surface) against a central cube, checked against the pairwise reference."""
    shape = (16, 18, 20)
    gt = _cube(shape, (5, 6, 7), 6)
    full = np.ones(shape, bool)
    r = segmentation_metrics(full, gt, spacing=(2.0, 1.0, 1.0))
    n = full.size
    assert r["recall"] == 1 and r["precision"] == pytest.approx(216 / n)
    assert r["f1"] == pytest.approx(2 * 216 / (n + 216)) and r["flag"] == ""
    assert r["hd95"] == pytest.approx(_brute_hd95(full, gt, (2.0, 1.0, 1.0)), rel=1e-9)
    assert r["hd95"] > 5                                   # the border is far from the cube
    both = segmentation_metrics(full, full)
    assert (both["f1"], both["hd95"]) == (1.0, 0.0)
