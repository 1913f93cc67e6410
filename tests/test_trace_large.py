"""Block-wise tracing (large.trace) gives the trees of whole-volume trace_mask; its global component
filter equals cc3d on the whole volume."""

from __future__ import annotations

import cc3d
import numpy as np
import pytest

from nnunetv2_neurino.data.render import render_swc
from nnunetv2_neurino.data.synthetic.morphology import generate_neuron
from nnunetv2_neurino.large.trace import block_grid, label_components, trace_large
from nnunetv2_neurino.metrics.neuron_distance import neuron_distance
from nnunetv2_neurino.swc import SWCTree
from nnunetv2_neurino.tracing import trace_mask


def _neurons(seed: int, shape=(40, 56, 60)) -> np.ndarray:
    """Three random neurons crossing many blocks, a 2x2 and a 4x4 bar, and specks below the size rule."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(shape, bool)
    for _ in range(3):
        mask |= render_swc(generate_neuron(shape, rng=rng), shape) > 0
    mask[3:37, 2:4, 2:4] = True
    mask[3:37, 50:54, 54:58] = True
    for p in rng.integers(0, shape, size=(6, 3)):
        mask[tuple(p)] = True
    return mask


def _nodes_and_edges(t: SWCTree) -> tuple[set, set]:
    p = t.parent_index
    nodes = {tuple(x) for x in t.xyz}
    edges = {(tuple(t.xyz[i]), tuple(t.xyz[p[i]])) for i in range(t.n) if p[i] >= 0}
    return nodes, edges


def test_block_grid_covers_the_volume_once():
    shape = (10, 7, 5)
    hits = np.zeros(shape, int)
    for lo, hi in block_grid(shape, (4, 3, 5)):
        hits[tuple(slice(a, b) for a, b in zip(lo, hi))] += 1
    assert np.all(hits == 1) and len(block_grid(shape, (4, 3, 5))) == 3 * 3 * 1


@pytest.mark.parametrize("seed", [0, 1])
def test_global_component_filter_equals_cc3d_on_whole_volume(seed):
    mask = _neurons(seed)
    rng = np.random.default_rng(seed + 10)
    block = tuple(int(b) for b in rng.integers(5, 23, size=3))
    comps = label_components(mask, block, min_component_size=10, progress=False)
    got = comps.foreground(np.zeros(3, np.int64), np.array(mask.shape))
    np.testing.assert_array_equal(got, cc3d.dust(mask, threshold=10, connectivity=26))
    expected_n = cc3d.connected_components(mask, connectivity=26, return_N=True)[1]
    assert len(np.unique(comps.component[1:])) == expected_n
    # the per-core label ranges say which cores hold kept voxels, as reading the core would
    for task, (lo, hi) in enumerate(block_grid(mask.shape, block)):
        assert comps.block_has_kept(task) == bool(comps.foreground(lo, hi).any())
    assert comps.labels.dtype == np.uint32                      # < 2**32 voxels: 4-byte global ids


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_block_wise_trees_equal_trace_mask(seed):
    mask = _neurons(seed)
    spacing = ((1.0, 1.0, 1.0), (2.0, 1.0, 1.0))[seed % 2]
    ref = trace_mask(mask, spacing, min_component_size=10)
    rng = np.random.default_rng(seed)
    block = tuple(int(b) for b in rng.integers(12, 30, size=3))     # cores that do not divide the volume
    assert len(block_grid(mask.shape, block)) >= 8
    got = trace_large(mask, spacing, block=block, halo=24, min_component_size=10, progress=False)
    assert _nodes_and_edges(got) == _nodes_and_edges(ref)
    radius = dict(zip(map(tuple, ref.xyz), ref.radius))
    np.testing.assert_allclose(got.radius, [radius[tuple(p)] for p in got.xyz], rtol=1e-9)
    assert {tuple(p) for p in got.xyz[got.roots]} == {tuple(p) for p in ref.xyz[ref.roots]}
    d = neuron_distance(got, ref)
    assert d["ESA"] == 0 and d["DSA"] == 0
    # the bars run through several blocks along z and still trace as one tree each
    assert len(got.roots) == len(ref.roots) >= 2


def test_root_pruning_and_resampling_as_trace_mask():
    mask = _neurons(3)
    kwargs = dict(min_component_size=10, root=(30.0, 28.0, 20.0), prune_length=3.0, resample_step=3)
    ref = trace_mask(mask, **kwargs)
    got = trace_large(mask, block=(17, 19, 23), halo=24, progress=False, **kwargs)
    assert _nodes_and_edges(got) == _nodes_and_edges(ref)
    np.testing.assert_array_equal(np.sort(got.types), np.sort(ref.types))


def test_probability_map_with_threshold_and_zarr_input(tmp_path):
    import zarr

    mask = _neurons(4)
    prob = np.where(mask, 0.8, 0.1).astype(np.float32)
    arr = zarr.create_array(store=str(tmp_path / "p.zarr"), shape=prob.shape, chunks=(16, 16, 16),
                            dtype="float32")
    arr[:] = prob
    got = trace_large(zarr.open_array(str(tmp_path / "p.zarr"), mode="r"), block=20, halo=24,
                      threshold=0.5, progress=False)
    assert _nodes_and_edges(got) == _nodes_and_edges(trace_mask(mask))


def test_soma_larger_than_halo_is_traced_without_error():
    """Documented behaviour: with a soma thicker than the halo the tracing still runs; the skeleton
    differs only near the soma (it may break into pieces there); with a halo above it, it is exact."""
    shape = (48, 48, 48)
    zz, yy, xx = np.indices(shape)
    mask = (zz - 24) ** 2 + (yy - 24) ** 2 + (xx - 24) ** 2 <= 12 ** 2                # soma, radius 12
    mask[22:26, 22:26, 2:46] = True                                                   # a neurite through it
    ref = trace_mask(mask)
    got = trace_large(mask, block=16, halo=4, progress=False)
    zyx = got.to_zyx().astype(int)
    assert got.n > 0 and mask[zyx[:, 0], zyx[:, 1], zyx[:, 2]].all()
    far = lambda t: {tuple(p) for p in t.xyz if np.linalg.norm(p - 24) > 12 + 8}     # noqa: E731
    assert far(got) == far(ref)                                # the neurite away from the soma is exact
    exact = trace_large(mask, block=16, halo=32, progress=False)
    assert _nodes_and_edges(exact) == _nodes_and_edges(ref)


def test_empty_and_all_removed_volumes_give_empty_trees():
    assert trace_large(np.zeros((10, 10, 10), np.uint8), block=4, progress=False).n == 0
    speck = np.zeros((10, 10, 10), np.uint8)
    speck[5, 5, 3:6] = 1
    assert trace_large(speck, block=4, min_component_size=10, progress=False).n == 0


def _neurons_zarr(tmp_path):
    """``_neurons(5)`` and a uint8 zarr array of it (16³ chunks) at ``tmp_path/mask.zarr``."""
    import zarr

    mask = _neurons(5)
    src = tmp_path / "mask.zarr"
    zarr.create_array(store=str(src), shape=mask.shape, chunks=(16, 16, 16), dtype="uint8")[:] = mask
    return mask, src


def test_trace_large_command_on_a_small_zarr(tmp_path, capsys):
    import csv

    from nnunetv2_neurino.cli import main
    from nnunetv2_neurino.large.trace_output import MARKER
    from nnunetv2_neurino.swc import read_swc

    mask, src = _neurons_zarr(tmp_path)
    out = tmp_path / "out"
    assert main(["trace-large", "-i", str(src), "-o", str(out), "--block", "20", "--halo", "24",
                 "--min-length", "5"]) == 0
    ref = [t for t in _split(trace_mask(mask)) if t.cable_length() >= 5]
    with open(out / "trees.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(ref) >= 2 and (out / MARKER).is_file()
    combined = read_swc(out / "all_trees.swc")
    assert _nodes_and_edges(combined) == _nodes_and_edges(SWCTree.concatenate(ref))
    for row in rows:
        tree = read_swc(out / row["file"])
        assert tree.n == int(row["nodes"]) and len(tree.roots) == 1
        assert float(row["cable_length"]) == pytest.approx(tree.cable_length(), abs=1e-4)
        zyx = tree.to_zyx()
        assert [int(row[k]) for k in ("z_min", "y_min", "x_min")] == list(zyx.min(axis=0).astype(int))
    # an existing output needs --force; an input inside the output or a foreign folder is never replaced
    assert main(["trace-large", "-i", str(src), "-o", str(out)]) == 2
    assert main(["trace-large", "-i", str(src), "-o", str(out), "--force", "--block", "32"]) == 0
    assert main(["trace-large", "-i", str(src), "-o", str(tmp_path), "--force"]) == 2
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("x")
    assert main(["trace-large", "-i", str(src), "-o", str(foreign), "--force"]) == 2
    assert (foreign / "keep.txt").read_text() == "x" and src.is_dir()
    assert main(["trace-large", "-i", str(tmp_path / "nope.zarr"), "-o", str(tmp_path / "o2")]) == 2
    assert not (tmp_path / "o2").exists()


def _split(t: SWCTree) -> list[SWCTree]:
    labels = t.component_labels()
    return [t.take(labels == k).renumbered() for k in range(len(t.roots))]


def test_trace_large_json_matches_trees_csv(tmp_path, capsys):
    import csv
    import json

    from nnunetv2_neurino.cli import main

    _, src = _neurons_zarr(tmp_path)
    out = tmp_path / "out"
    capsys.readouterr()
    assert main(["trace-large", "-i", str(src), "-o", str(out), "--block", "20", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    with open(out / "trees.csv") as f:
        rows = list(csv.DictReader(f))
    assert doc["output"] == str(out) and doc["trees_written"] == len(rows) >= 2
    assert doc["nodes"] == sum(int(r["nodes"]) for r in rows)
    assert [t["nodes"] for t in doc["trees"]] == [int(r["nodes"]) for r in rows]
