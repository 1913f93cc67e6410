"""ESA / DSA / PDS in bounded memory (issue 11 §3): chunked == unchunked, bounded peak memory, refusals.

The unchunked reference below restates the computation before chunking: every sample at once (Vaa3D's
``N = int(1 + |c - p| + 0.5)`` points, float32 step), its float32 distance to *every* segment of the
other tree, one float64 sum. The chunked code must give the same counts and the same sums up to the
rounding of adding chunk sums (1e-12 relative), with chunks and an index tiny enough that chunking,
coarse index spacing and the all-segments fallback really happen.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import nnunetv2_neurino.metrics.segment_index as segment_index
from nnunetv2_neurino.errors import NeurinoError
from nnunetv2_neurino.metrics.neuron_distance import (
    SegmentIndex,
    Segments,
    iter_samples,
    neuron_distance,
    neuron_distance_segments,
    point_segment_distance,
    sample_segments,
    segments_from_arrays,
)
from nnunetv2_neurino.swc import SWCTree, read_swc

F32 = np.float32
KEYS_FLOAT = ("ESA12", "ESA21", "ESA", "DSA12", "DSA21", "DSA", "PDS12", "PDS21", "PDS")
KEYS_INT = ("n12", "n21", "n12big", "n21big")


def _all_samples(seg: Segments) -> np.ndarray:
    """All samples at once: per segment N = int(1 + |c - p| + 0.5) points c + j * f32(1/(N-1)) * (p - c)."""
    diff = seg.parent - seg.child
    length = np.sqrt((diff[:, 0] * diff[:, 0] + diff[:, 1] * diff[:, 1]) + diff[:, 2] * diff[:, 2])
    out = []
    for c, dv, ln in zip(seg.child, diff, length.astype(np.float64)):
        n = max(int(1.0 + ln + 0.5), 1)
        step = (F32(1.0 / (n - 1)) if n > 1 else F32(0)) * dv
        out.append(c[None] + step[None] * np.arange(n, dtype=F32)[:, None])
    return np.concatenate(out)


def _min_to_all(points: np.ndarray, seg: Segments, rows: int = 256) -> np.ndarray:
    return np.concatenate([point_segment_distance(points[i:i + rows, None], seg.child[None], seg.parent[None])
                           .min(axis=1) for i in range(0, len(points), rows)])


def _unchunked(seg_1: Segments, seg_2: Segments, threshold: float) -> dict:
    def direction(a, b):
        d = _min_to_all(_all_samples(a), b)
        big = d >= F32(threshold)
        total, big_total = float(np.sum(d, dtype=np.float64)), float(np.sum(d[big], dtype=np.float64))
        return total, d.size, big_total, int(big.sum())

    s12, n12, b12, nb12 = direction(seg_1, seg_2)
    s21, n21, b21, nb21 = direction(seg_2, seg_1)
    dsa = [b / nb for b, nb in ((b12, nb12), (b21, nb21)) if nb]
    return {"ESA12": s12 / n12, "ESA21": s21 / n21, "ESA": (s12 / n12 + s21 / n21) / 2,
            "DSA12": b12 / nb12 if nb12 else 0.0, "DSA21": b21 / nb21 if nb21 else 0.0,
            "DSA": float(np.mean(dsa)) if dsa else 0.0, "PDS12": nb12 / n12, "PDS21": nb21 / n21,
            "PDS": (nb12 / n12 + nb21 / n21) / 2, "n12": n12, "n21": n21, "n12big": nb12, "n21big": nb21}


def _assert_same(got: dict, ref: dict) -> None:
    for k in KEYS_INT:
        assert got[k] == ref[k], k
    for k in KEYS_FLOAT:
        assert got[k] == pytest.approx(ref[k], rel=1e-12, abs=1e-12), k


def _tiny(seg_1, seg_2, threshold=2.0):
    """Chunks of 7 samples, an index of ~5 points per segment's worth: chunking and coarse spacing."""
    return neuron_distance_segments(seg_1, seg_2, threshold, chunk_points=7, max_index_points=len(seg_2) + 5)


def _tree(text: str) -> Segments:
    t = read_swc(text)
    return segments_from_arrays(t.xyz, t.parent_index)


HAND = {
    "line": "1 3 0 0 0 1 -1\n2 3 10 0 0 1 1\n",
    "fork": "1 3 0 0 0 1 -1\n2 3 5 0 0 1 1\n3 3 10 0 0 1 2\n4 3 5 6 0 1 2\n",
    "shift2": "1 3 0 2 0 1 -1\n2 3 10 2 0 1 1\n",
    "oblique": "1 3 0 1.2 1.6 1 -1\n2 3 10 1.2 1.6 1 1\n3 3 30.5 -7 2 1 2\n4 3 30.5 -7 2.3 1 3\n",
}


@pytest.mark.parametrize("a,b", [("line", "fork"), ("fork", "line"), ("line", "shift2"), ("line", "oblique"),
                                 ("oblique", "fork")])
@pytest.mark.parametrize("threshold", [2.0, 0.5])
def test_hand_cases_chunked_equal_unchunked(a, b, threshold):
    sa, sb = _tree(HAND[a]), _tree(HAND[b])
    ref = _unchunked(sa, sb, threshold)
    _assert_same(_tiny(sa, sb, threshold), ref)
    _assert_same(neuron_distance_segments(sa, sb, threshold, chunk_points=1 << 40), ref)


def _random_tree(n, rng, step):
    xyz = np.zeros((n, 3))
    par = np.full(n, -1)
    for i in range(1, n):
        par[i] = rng.integers(max(0, i - 10), i)
        xyz[i] = xyz[par[i]] + rng.normal(size=3) * step * (20 if rng.random() < 0.05 else 1)
    return xyz, par


@pytest.mark.parametrize("seed", range(4))
def test_random_trees_chunked_equal_unchunked(seed):
    rng = np.random.default_rng(seed)
    xa, pa = _random_tree(90, rng, 2.5)
    xb, pb = _random_tree(70, rng, 2.5)
    sa, sb = segments_from_arrays(xa, pa), segments_from_arrays(xb + rng.normal(size=3) * 2, pb)
    ref = _unchunked(sa, sb, 2.0)
    _assert_same(_tiny(sa, sb), ref)
    _assert_same(neuron_distance_segments(sa, sb, chunk_points=1), ref)
    # the samples themselves, bit for bit, in chunks of every size
    all_a = _all_samples(sa)
    np.testing.assert_array_equal(sample_segments(sa), all_a)
    for chunk in (1, 7, 64, 10 ** 6):
        parts = list(iter_samples(sa, chunk))
        assert all(len(p) <= chunk for p in parts) and len(parts) == -(-len(all_a) // chunk)
        np.testing.assert_array_equal(np.concatenate(parts), all_a)


def test_index_coarse_spacing_and_all_segments_fallback_are_exact(monkeypatch):
    # 1500 spokes at radius 5 around the origin: a query at the centre has ~every segment as candidate,
    # which exceeds the candidate limit and takes the all-segments path; tiny pair budget forces batches
    ang = np.linspace(0, 2 * np.pi, 1500, endpoint=False)
    ring = np.stack([5 * np.cos(ang), 5 * np.sin(ang), np.zeros_like(ang)], 1)
    child = np.concatenate([ring, ring[:1] * 0 + [60, 0, 0]]).astype(F32)
    parent = np.concatenate([ring * 1.4, [[400, 0, 0]]]).astype(F32)
    seg = Segments(child, parent)
    rng = np.random.default_rng(3)
    pts = np.concatenate([np.zeros((3, 3)), rng.uniform(-20, 420, (400, 3))]).astype(F32)
    expected = _min_to_all(pts, seg)
    monkeypatch.setattr(segment_index, "_PAIR_BUDGET", 256)
    calls = []
    all_segments = SegmentIndex._all_segments
    monkeypatch.setattr(SegmentIndex, "_all_segments",
                        lambda self, p: calls.append(len(p)) or all_segments(self, p))
    for max_points in (10 ** 6, 1600):
        index = SegmentIndex(seg, max_points=max_points)
        assert (index.spacing > 1) == (max_points == 1600)
        np.testing.assert_array_equal(index.min_distance(pts), expected)
    assert len(calls) == 2 and all(n >= 3 for n in calls)  # the centre queries took the fallback


def test_real_reconstructions_chunked_equal_unchunked(cwmbs_swc_files):
    trees = []
    for p in cwmbs_swc_files:
        with pytest.warns(UserWarning):
            t = read_swc(p)
        trees.append(segments_from_arrays(t.xyz, t.parent_index, str(p), t.ids))
    rng = np.random.default_rng(0)
    smallest = sorted(range(len(trees)), key=lambda i: len(trees[i]))[:2]
    for i, sa in enumerate(trees):
        sb = trees[(i + 1) % len(trees)]
        jitter = Segments(sa.child + rng.normal(size=sa.child.shape).astype(F32),
                          sa.parent + rng.normal(size=sa.parent.shape).astype(F32))
        for other in (sb, jitter):
            whole = neuron_distance_segments(sa, other, chunk_points=1 << 40)
            chunked = neuron_distance_segments(sa, other, chunk_points=997, max_index_points=len(other) + 50)
            _assert_same(chunked, whole)
            if i in smallest:  # the all-segments reference on the two smallest (the others: more time)
                _assert_same(chunked, _unchunked(sa, other, 2.0))


def test_long_segment_memory_is_bounded():
    """10^6-voxel segment: the unchunked code grew its resident set by ~1100 MB here, the chunked ~120 MB."""
    code = textwrap.dedent("""
        import json, resource
        import numpy as np
        from nnunetv2_neurino.metrics.neuron_distance import neuron_distance_segments, segments_from_arrays
        L = 1e6
        a = segments_from_arrays(np.array([[0, 0, 0], [L, 0, 0]]), np.array([-1, 0]))
        b = segments_from_arrays(np.array([[0, 1, 0], [L / 2, 1, 0], [L, 1, 0]]), np.array([-1, 0, 1]))
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        r = neuron_distance_segments(a, b)
        grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
        print(json.dumps({"mb": grown, "ESA": r["ESA"], "n12": r["n12"], "n21": r["n21"]}))
    """)
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=root, env={**__import__("os").environ, "PYTHONPATH": str(root)})
    r = __import__("json").loads(out.stdout.strip().splitlines()[-1])
    assert r["n12"] == 10 ** 6 + 1 and r["n21"] == 10 ** 6 + 2
    assert r["ESA"] == pytest.approx(1.0, abs=1e-3)   # float32 samples at x ~ 1e6 round by 1/16
    assert r["mb"] < 400, f"peak resident set grew by {r['mb']:.0f} MB"


@pytest.mark.parametrize("bad,kind", [(np.nan, "non-finite"), (np.inf, "non-finite"),
                                      (2e9, "coordinate beyond"), (-1e200, "coordinate beyond")])
def test_library_refuses_bad_coordinates_naming_tree_and_node(bad, kind):
    xyz = np.array([[0, 0, 0], [1, 0, 0], [2, 0, 0]], dtype=np.float64)
    xyz[2, 1] = bad
    with pytest.raises(NeurinoError, match=rf"mytree.swc: node 7 has a {kind}"):
        segments_from_arrays(xyz, np.array([-1, 0, 1]), "mytree.swc", np.array([5, 6, 7]))
    tree = SWCTree(np.array([5, 6, 7]), 3, np.nan_to_num(xyz, nan=1e300, posinf=1e300), np.ones(3),
                   np.array([-1, 5, 6]), "mem.swc")
    with pytest.raises(NeurinoError, match=r"mem.swc: node 7 has a coordinate beyond"):
        neuron_distance(tree, tree)
    with np.errstate(over="ignore"):
        child, parent = xyz[:2].astype(F32), xyz[1:].astype(F32)
    with pytest.raises(NeurinoError, match=r"Segments: parent of segment row 1 has a"):
        Segments(child, parent)
    with pytest.raises(NeurinoError, match=r"node row 2 has parent row 9"):
        segments_from_arrays(np.zeros((3, 3)), np.array([-1, 0, 9]))


def test_cli_refuses_huge_coordinates_naming_file_and_line(tmp_path):
    good = tmp_path / "good.swc"
    good.write_text("1 3 0 0 0 1 -1\n2 3 10 0 0 1 1\n")
    huge = tmp_path / "huge.swc"
    huge.write_text("1 3 0 0 0 1 -1\n2 3 1e200 0 0 1 1\n")
    cli = Path(sys.executable).parent / "neurino"
    p = subprocess.run([str(cli), "swc-distance", str(good), str(huge)], capture_output=True, text=True)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert f"{huge}:2" in p.stderr and "beyond" in p.stderr
