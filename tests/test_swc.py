"""SWC reading / writing: hand-written cases with known answers, real CWMBS files, MorphIO as an oracle."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from nnunetv2_neurino.errors import NeurinoError
from nnunetv2_neurino.swc import SWCTree, format_swc, read_swc, vaa3d_parent_index, write_swc

morphio = pytest.importorskip("morphio")
morphio.set_maximum_warnings(0)

MESSY = """# a comment line
#  n type x y z r parent

3\t3\t2.0\t0\t0\t0.5\t2   # trailing comment
0 1 0 0 0 3 -1
2 3 1 0 0 1.0 0
  10 2 0 5 0 1 0
11 2 0 6 1e0 1 10 extra_column_ignored
"""


def _segments(tree: SWCTree) -> set[frozenset]:
    """Undirected parent-child segments as sets of coordinate tuples (an order-free representation)."""
    child, parent = tree.edges()
    return {frozenset((tuple(tree.xyz[c]), tuple(tree.xyz[p]))) for c, p in zip(child, parent)}


def test_messy_text_parses_to_known_arrays():
    t = read_swc(MESSY)
    assert t.n == 5
    np.testing.assert_array_equal(t.ids, [3, 0, 2, 10, 11])
    np.testing.assert_array_equal(t.types, [3, 1, 3, 2, 2])
    np.testing.assert_array_equal(t.parent, [2, -1, 0, 0, 10])
    np.testing.assert_allclose(t.xyz[4], [0, 6, 1])
    np.testing.assert_allclose(t.radius, [0.5, 3, 1, 1, 1])
    np.testing.assert_array_equal(t.parent_index, [2, -1, 1, 1, 3])
    np.testing.assert_array_equal(t.roots, [1])
    child, parent = t.edges()
    assert set(zip(child.tolist(), parent.tolist())) == {(0, 2), (2, 1), (3, 1), (4, 3)}
    np.testing.assert_allclose(t.to_zyx()[4], [1, 6, 0])
    np.testing.assert_array_equal(t.children_counts(), [0, 2, 1, 1, 0])
    assert t.cable_length() == pytest.approx(1 + 1 + 5 + np.sqrt(2))


def test_large_ids_several_roots_and_file_path(tmp_path):
    text = "1000000000001 3 0 0 0 1 -1\n1000000000002 3 1 0 0 1 1000000000001\n7 3 9 9 9 1 -1\n"
    p = tmp_path / "big.swc"
    p.write_text(text)
    t = read_swc(p)
    assert t.source == str(p)
    assert t.ids.dtype == np.int64 and t.ids[1] == 1000000000002
    np.testing.assert_array_equal(t.roots, [0, 2])
    np.testing.assert_array_equal(t.component_labels(), [0, 0, 1])


def test_missing_parent_becomes_root_with_warning_naming_file_and_ids(tmp_path):
    p = tmp_path / "cut.swc"
    p.write_text("5 3 0 0 0 1 4\n6 3 1 0 0 1 5\n8 3 3 0 0 1 7\n9 3 4 0 0 1 8\n")
    with pytest.warns(UserWarning, match=r"cut\.swc.*node ids \[5, 8\].*parent ids \[4, 7\]"):
        t = read_swc(p)
    np.testing.assert_array_equal(t.parent, [-1, 5, -1, 8])
    with pytest.warns(UserWarning, match="first row"):
        v = read_swc(p, missing_parent="first_row")
    # node 8 is linked to the first row (node 5); the first row itself cannot link to itself
    np.testing.assert_array_equal(v.parent, [-1, 5, 5, 8])
    assert len(v.roots) == 1


def test_vaa3d_parent_index_defaults_missing_parents_to_row_0():
    """Vaa3D's hash lookup gives row 0 for any missing parent id, even where that closes a loop."""
    text = "5 3 0 0 0 1 4\n6 3 1 0 0 1 5\n8 3 3 0 0 1 7\n9 3 4 0 0 1 8\n"
    with pytest.warns(UserWarning, match=r"node ids \[5, 8\].*hangs them from the first row's node 5"):
        tree, pidx = vaa3d_parent_index(text)
    np.testing.assert_array_equal(tree.parent, [-1, 5, -1, 8])          # the tree: missing -> roots
    np.testing.assert_array_equal(pidx, [0, 0, 0, 2])                   # Vaa3D: row 0 (itself too)
    # the first row's own root has a missing parent: Vaa3D links it back to row 0 (a loop)
    with pytest.warns(UserWarning):
        _, pidx = vaa3d_parent_index("2 3 1 0 0 1 1\n1 3 0 0 0 1 99\n3 3 5 5 5 1 -1\n")
    np.testing.assert_array_equal(pidx, [1, 0, -1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")                                  # nothing missing: no warning
        _, pidx = vaa3d_parent_index("1 3 0 0 0 1 -1\n2 3 1 0 0 1 1\n")
    np.testing.assert_array_equal(pidx, [-1, 0])


@pytest.mark.parametrize("text, pattern", [
    ("1 3 0 0 0 1 -1\n2 3 0 0 0 1 3\n3 3 0 0 0 1 2\n", r"<text>:[23]: node [23] lies on a parent cycle"),
    ("1 3 0 0 0 1 1\n", r"<text>:1: node 1 lies on a parent cycle"),
    ("1 3 0 0 0 1 -1\n2 3 nan 0 0 1 1\n", r"<text>:2: column 'x' is not finite"),
    ("1 3 0 0 0 1 -1\n1 3 1 0 0 1 -1\n", r"<text>:2: duplicate node id 1 \(first defined at <text>:1\)"),
    ("1 3 0 0 0 1 -1\n2 3 0 abc 0 1 1\n", r"<text>:2: column 'y' is not a number"),
    ("1 3 0 0 0 1\n", r"<text>:1: expected 7 columns"),
    ("1 3.5 0 0 0 1 -1\n", r"<text>:1: column 'type' must be an integer"),
])
def test_broken_files_raise_with_line_numbers(text, pattern):
    with pytest.raises(NeurinoError, match=pattern):
        read_swc(text)


def test_missing_file_raises(tmp_path):
    with pytest.raises(NeurinoError, match="not found"):
        read_swc(tmp_path / "nope.swc")


def test_write_read_round_trip_sorted_and_loadable(tmp_path):
    t = read_swc(MESSY)
    out = write_swc(t, tmp_path / "o.swc")
    back = read_swc(out)
    # rows come back parents-first, ids and links unchanged
    pos = {int(i): k for k, i in enumerate(back.ids)}
    assert all(p == -1 or pos[int(p)] < k for k, p in enumerate(back.parent))
    order = np.argsort(back.ids)
    ref = np.argsort(t.ids)
    np.testing.assert_array_equal(back.ids[order], t.ids[ref])
    np.testing.assert_array_equal(back.parent[order], t.parent[ref])
    np.testing.assert_allclose(back.xyz[order], t.xyz[ref], atol=1e-6)
    morphio.Morphology(str(out))
    with pytest.raises(NeurinoError, match="exists"):
        write_swc(t, out, force=False)


def test_writer_keeps_one_soma_and_makes_it_a_root(tmp_path):
    # chain 1-2-3-4 rooted at 1; somata at 2 and 4 (neither a root): MorphIO rejects both situations
    t = read_swc("1 3 0 0 0 1 -1\n2 1 1 0 0 2 1\n3 3 2 0 0 1 2\n4 1 3 0 0 2 3\n")
    with pytest.warns(UserWarning, match=r"extra soma.*ids \[4\]"):
        out = write_swc(t, tmp_path / "s.swc")
    back = read_swc(out)
    assert (back.types == 1).sum() == 1
    soma = int(np.flatnonzero(back.types == 1)[0])
    assert back.parent[soma] == -1 and back.ids[soma] == 2
    assert _segments(back) == _segments(t)          # re-rooting keeps the geometry
    m = morphio.Morphology(str(out))
    assert m.soma.points.shape[0] == 1


def test_rerooted_and_topological_order_properties():
    rng = np.random.default_rng(0)
    n = 200
    pidx = np.array([-1] + [int(rng.integers(0, i)) for i in range(1, n)])
    perm = rng.permutation(n)                       # shuffle rows: parents no longer come first
    inv = np.argsort(perm)
    t = SWCTree.from_parent_index(rng.normal(size=(n, 3)), pidx).take(perm)
    expected = np.where(pidx[perm] >= 0, inv[np.maximum(pidx[perm], 0)], -1)
    np.testing.assert_array_equal(t.parent_index, expected)
    order = t.topological_order()
    rank = np.empty(n, int)
    rank[order] = np.arange(n)
    pi = t.parent_index
    assert np.all(rank[pi[pi >= 0]] < rank[pi >= 0])
    r = t.rerooted(17)
    assert r.parent_index[17] == -1 and len(r.roots) == 1
    assert _segments(r) == _segments(t)
    assert r.find_cycle_node() is None


def test_concatenate_renumbers_and_keeps_structure():
    a = read_swc("1 3 0 0 0 1 -1\n2 3 1 0 0 1 1\n")
    b = read_swc("1 3 5 5 5 1 -1\n2 3 6 5 5 1 1\n3 3 7 5 5 1 2\n")
    c = SWCTree.concatenate([a, b])
    np.testing.assert_array_equal(c.ids, [1, 2, 3, 4, 5])
    np.testing.assert_array_equal(c.parent, [-1, 1, -1, 3, 4])
    assert _segments(c) == _segments(a) | _segments(b)


def test_cwmbs_files_read_write_and_load_in_morphio(cwmbs_swc_files, tmp_path):
    for f in cwmbs_swc_files:
        raw = np.loadtxt(f, comments="#", ndmin=2)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t = read_swc(f)
            v = read_swc(f, missing_parent="first_row")
        assert t.n == raw.shape[0]
        np.testing.assert_allclose(t.xyz, raw[:, 2:5])
        n_missing = int(np.sum((raw[:, 6] != -1) & ~np.isin(raw[:, 6], raw[:, 0])))
        n_file_roots = int(np.sum(raw[:, 6] == -1))
        assert len(t.roots) == n_missing + n_file_roots
        # Vaa3D mode: every missing parent but the first row's links to the first row
        assert len(v.roots) == n_file_roots + int(raw[0, 6] != -1 and raw[0, 6] not in raw[:, 0])
        out = write_swc(t, tmp_path / f.name)
        # real tracings change type (axon/dendrite) inside unbranched stretches: MorphIO needs the option
        m = morphio.Morphology(str(out), options=morphio.Option.allow_unifurcated_section_change)
        # MorphIO's points (sections repeat their first point) + soma cover exactly our node positions
        pts = np.concatenate([m.points, m.soma.points]) if m.soma.points.size else m.points
        # (a root without children is no section: MorphIO drops such isolated single nodes)
        isolated = (t.parent_index < 0) & (t.children_counts() == 0) & (t.types != 1)
        ours = {tuple(p) for p in np.round(t.xyz[~isolated].astype(np.float32), 3)}
        theirs = {tuple(p) for p in np.round(pts, 3)}
        assert ours == theirs, f.name
        back = read_swc(out)
        assert _segments(back) == _segments(t)
        assert format_swc(back) == format_swc(t)


def test_crlf_streams_and_empty_files(tmp_path):
    p = tmp_path / "crlf.swc"
    p.write_bytes(b"# windows\r\n1 3 0 0 0 1 -1\r\n2 3 1 2 3 1 1\r\n")
    t = read_swc(p)
    np.testing.assert_allclose(t.xyz[1], [1, 2, 3])
    with open(p, "rb") as fh:
        assert read_swc(fh).n == 2
    empty = read_swc("# only a comment\n\n")
    assert empty.n == 0 and empty.roots.size == 0 and empty.edges()[0].size == 0
    out = write_swc(empty, tmp_path / "empty.swc")
    assert read_swc(out).n == 0
    with pytest.raises(NeurinoError, match="not found"):
        read_swc(tmp_path)                                       # a folder is not an SWC file
