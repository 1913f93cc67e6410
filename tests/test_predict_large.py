"""Block-wise prediction of large volumes (nnunetv2_neurino.large): lattice, global normalisation,
block-wise == whole-volume equality, resume, empty-block skipping and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nnunetv2_neurino.errors import NeurinoError
from nnunetv2_neurino.large.lattice import (
    block_tiles,
    evaluation_overhead,
    make_lattice,
    read_box,
    tile_origins_1d,
)


# ---------------------------------------------------------------- lattice
@pytest.mark.parametrize("shape,block", [((40, 72, 72), 16), ((37, 50, 61), (8, 24, 12)), ((10, 20, 9), 40)])
def test_lattice_cores_partition_volume_and_tiles_cover_every_voxel(shape, block):
    lat = make_lattice(shape, (16, 24, 24), block)
    assert all(c % s == 0 for c, s in zip(lat.core, lat.step))
    owner = np.zeros(shape, np.int32)
    for idx in lat.blocks():
        a, b = lat.core_box(idx)
        owner[a[0]:b[0], a[1]:b[1], a[2]:b[2]] += 1
    assert (owner == 1).all()  # cores tile the volume exactly once
    cover = np.zeros(shape, np.int32)
    for t in block_tiles(lat, (0, 0, 0), shape):
        cover[t[0]:t[0] + 16, t[1]:t[1] + 24, t[2]:t[2] + 24] += 1
    assert cover.min() >= 1


def _holds(tile, voxel, patch) -> bool:
    return all(tile[d] <= voxel[d] < tile[d] + patch[d] for d in range(3))


def test_block_tiles_of_a_voxel_are_those_of_the_whole_volume():
    shape, patch = (37, 50, 61), (16, 24, 24)
    lat = make_lattice(shape, patch, (8, 12, 24))
    whole = block_tiles(lat, (0, 0, 0), shape)
    rng = np.random.default_rng(0)
    for idx in lat.blocks():
        a, b = lat.core_box(idx)
        tiles = block_tiles(lat, a, b)
        r0, r1 = read_box(lat, a, b)
        for t in tiles:  # the read box holds every tile it evaluates
            assert all(r0[d] <= t[d] and t[d] + patch[d] <= r1[d] for d in range(3))
        for _ in range(5):
            v = tuple(int(rng.integers(a[d], b[d])) for d in range(3))
            assert [t for t in tiles if _holds(t, v, patch)] == [t for t in whole if _holds(t, v, patch)]


def test_overhead_matches_the_analytic_count():
    # P = 128, S = 64, core 256 on a 1024-voxel axis: blocks see 4, 5, 5, 4 tiles of 15 → (18/15)³
    lat = make_lattice((1024,) * 3, (128,) * 3, 256)
    assert len(tile_origins_1d(1024, 128, 64)) == 15
    assert evaluation_overhead(lat) == pytest.approx((18 / 15) ** 3)
    assert make_lattice((100, 100, 100), (16, 24, 24), 20).core == (24, 24, 24)
    with pytest.raises(NeurinoError):
        make_lattice((10, 10, 10), (4, 4, 4), 0)


# ---------------------------------------------------------------- normalisation
def test_sampled_statistics_match_whole_volume_and_nnunet_zscore(tmp_path):
    import zarr
    from nnunetv2.preprocessing.normalization.default_normalization_schemes import ZScoreNormalization

    from nnunetv2_neurino.large.normalization import sample_statistics

    rng = np.random.default_rng(1)
    img = (rng.normal(100, 10, (40, 72, 72)) + 40 * (rng.random((40, 72, 72)) > 0.97)).astype(np.float32)
    arr = zarr.create_array(tmp_path / "v.zarr", shape=img.shape, chunks=(8, 8, 8), dtype="float32")
    arr[:] = img
    st = sample_statistics(arr, max_chunks=64, seed=3)
    assert st.n_chunks == 64 < st.n_chunks_total == 405
    assert abs(st.mean - img.mean()) <= 0.01 * abs(img.mean())
    assert abs(st.std - img.std()) <= 0.01 * img.std()
    full = sample_statistics(arr, max_chunks=1000)  # every chunk: nnU-Net's own per-image z-score
    ref = ZScoreNormalization(use_mask_for_norm=False, intensityproperties={}).run(img.copy())
    np.testing.assert_allclose(full.apply(img), ref, atol=1e-4)
    with pytest.raises(NeurinoError, match="not supported"):
        sample_statistics(arr, scheme="RescaleTo01Normalization")


# ---------------------------------------------------------------- block-wise prediction
SHAPE, BLOCK, SPACING = (40, 60, 60), (16, 24, 24), (2.0, 1.0, 1.0)  # 3×3×3 = 27 blocks, none divides
# (N − P) is a multiple of S on every axis: nnU-Net's fitted tile steps equal the global lattice here


@pytest.fixture(scope="module")
def large_case(tmp_path_factory):
    """A random-weight run, a tube volume as a chunked zarr input, and the whole-volume lattice reference."""
    import zarr
    from _neurino_run_factory import make_run, tube_volume

    from nnunetv2_neurino.inference.model import load_predictor
    from nnunetv2_neurino.inference.run_folder import resolve_run
    from nnunetv2_neurino.large.lattice import make_lattice
    from nnunetv2_neurino.large.normalization import sample_statistics
    from nnunetv2_neurino.large.predict import block_probabilities

    root = tmp_path_factory.mktemp("large")
    run = make_run(root / "results", seed=0)
    img, _ = tube_volume(SHAPE, seed=0)
    arr = zarr.create_array(root / "in.zarr", shape=SHAPE, chunks=(16, 16, 16), dtype="float32")
    arr[:] = img
    predictor = load_predictor(resolve_run(run), use_mirroring=False)
    lattice = make_lattice(SHAPE, (16, 24, 24), BLOCK)
    stats = sample_statistics(arr, max_chunks=64, seed=0)  # all 48 chunks, as predict_large reads them
    whole = block_probabilities(predictor, img, stats, lattice, (0, 0, 0), SHAPE)
    return {"root": root, "run": run, "input": root / "in.zarr", "img": img, "predictor": predictor,
            "lattice": lattice, "stats": stats, "whole": whole}


def test_blockwise_probabilities_equal_whole_volume_lattice(large_case):
    from nnunetv2_neurino.large.predict import block_probabilities

    lat, whole = large_case["lattice"], large_case["whole"]
    assert len(lat.blocks()) == 27
    assembled = np.full(whole.shape, np.nan, np.float32)
    for idx in lat.blocks():
        a, b = lat.core_box(idx)
        sl = (slice(None),) + tuple(slice(i, j) for i, j in zip(a, b))
        assembled[sl] = block_probabilities(large_case["predictor"], large_case["img"], large_case["stats"],
                                            lat, a, b)
    assert np.abs(assembled - whole).max() <= 1e-3
    assert ((assembled[0] < 0.5) == (whole[0] < 0.5)).all()


def test_whole_volume_lattice_agrees_with_nnunet_predictor(large_case):
    from nnunetv2_neurino.inference.predict import mask_from_probabilities, predict_array

    ref = predict_array(large_case["predictor"], large_case["img"], SPACING)
    ours = large_case["whole"]
    # same tiles and statistics here; nnU-Net accumulates in float16, we in float32 (max |Δp| ≈ 0.17 at a
    # few voxels near p = 0.5 with this random network's large logits, mean |Δp| ≈ 2e-4)
    assert np.abs(ours[0] - ref[0]).mean() < 1e-3
    m_ref, m_ours = mask_from_probabilities(ref) > 0, mask_from_probabilities(ours) > 0
    assert m_ref.sum() > 100
    dice = 2 * (m_ref & m_ours).sum() / (m_ref.sum() + m_ours.sum())
    assert dice >= 0.99


def _read(out, path):
    import zarr

    return np.asarray(zarr.open_array(out / path, mode="r")[:])


def test_predict_large_synchronous_and_resume(large_case):
    import shutil

    import zarr

    from nnunetv2_neurino.inference.predict import mask_from_probabilities
    from nnunetv2_neurino.large.output import DONE_DIR
    from nnunetv2_neurino.large.predict import predict_large

    out = large_case["root"] / "sync.ome.zarr"
    kw = {"block": BLOCK, "use_mirroring": False, "save_probabilities": True, "spacing": SPACING}
    res = predict_large(large_case["input"], large_case["run"], out, scheduler="synchronous", **kw)
    assert (res.blocks_done, res.blocks_skipped, res.blocks_total) == (27, 0, 27)
    root = zarr.open_group(out, mode="r")
    assert root.attrs["neurino_complete"] is True
    assert root.attrs["neurino"]["statistics"]["mean"] == pytest.approx(large_case["stats"].mean)
    mask = _read(out, "labels/neurites/0")
    np.testing.assert_array_equal(mask, mask_from_probabilities(large_case["whole"]))
    prob = _read(out, "probabilities/0").astype(int)
    assert np.abs(prob - np.rint((1 - large_case["whole"][0]) * 255)).max() <= 1
    assert root["labels/neurites/0"].chunks == (16, 24, 24)
    lvl1 = _read(out, "labels/neurites/1")  # 2× max-pooled level
    np.testing.assert_array_equal(lvl1, mask.reshape(20, 2, 30, 2, 30, 2).max(axis=(1, 3, 5)))

    # simulated interruption: a copy with 10 blocks' markers and chunks removed, marked incomplete
    cut = large_case["root"] / "cut.ome.zarr"
    shutil.copytree(out, cut)
    zarr.open_group(cut, mode="r+").attrs["neurino_complete"] = False
    lat = large_case["lattice"]
    for idx in lat.blocks()[5:15]:
        (cut / DONE_DIR / ("_".join(map(str, idx)) + ".done")).unlink()
        a, b = lat.core_box(idx)
        for name in ("labels/neurites/0", "probabilities/0"):
            zarr.open_array(cut / name, mode="r+")[tuple(slice(i, j) for i, j in zip(a, b))] = 0
    with pytest.raises(NeurinoError, match="--resume"):
        predict_large(large_case["input"], large_case["run"], cut, scheduler="synchronous", **kw)
    res2 = predict_large(large_case["input"], large_case["run"], cut, scheduler="synchronous", resume=True,
                         **kw)
    assert (res2.blocks_done, res2.blocks_resumed) == (10, 17)
    for name in ("labels/neurites/0", "labels/neurites/1", "probabilities/0"):
        a, b = _read(out, name), _read(cut, name)
        assert a.tobytes() == b.tobytes(), name
    assert zarr.open_group(cut, mode="r").attrs["neurino_complete"] is True


def test_cli_with_a_two_worker_local_cluster_equals_whole_volume(large_case, capsys):
    from nnunetv2_neurino.cli import main
    from nnunetv2_neurino.inference.predict import mask_from_probabilities

    out = large_case["root"] / "cli.ome.zarr"
    argv = ["predict-large", "-i", str(large_case["input"]), "-m", str(large_case["run"]), "-o", str(out),
            "--block", "16", "--device", "cpu", "--disable-tta", "--workers", "2",
            "--spacing", *map(str, SPACING)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "block core 16x24x24" in text and "27 predicted" in text
    # summary: peak RSS of a worker (a process holding torch + the model: well above 50 MiB, below 8 GiB)
    # and torch threads per worker by the rule of large.engine (cores // 2 workers on this host)
    import re

    from nnunetv2_neurino.large.engine import torch_threads_rule, usable_cores

    rss = int(re.search(r"peak memory of a worker \(RSS\): (\d+) MiB", text).group(1))
    assert 50 < rss < 8192
    threads = re.search(r"torch threads per worker: (\S+)", text).group(1)
    assert threads == str(torch_threads_rule(usable_cores(), 2))
    assert re.search(r"[\d.e+]+ voxels/s, (\d+) tiles", text)
    whole_mask = mask_from_probabilities(large_case["whole"])
    np.testing.assert_array_equal(_read(out, "labels/neurites/0"), whole_mask)
    assert main(argv) == 2  # exists: neither --resume nor --force
    assert main(argv[:-4] + ["--spacing", "4", "1", "1", "--force"]) == 2  # spacing off the plan by 100 %


def test_empty_blocks_are_skipped_and_the_rest_unchanged(large_case):
    import zarr

    from nnunetv2_neurino.large.predict import predict_large

    img = large_case["img"][:16, :24, :].copy()
    img[:, :, 36:] = 0  # block 2's core and halo ([36, 60) on x) hold no signal
    src = zarr.create_array(large_case["root"] / "empty.zarr", shape=img.shape, chunks=(16, 24, 24),
                            dtype="float32")
    src[:] = img
    kw = {"block": 24, "use_mirroring": False, "spacing": SPACING, "scheduler": "synchronous"}
    skip = predict_large(src.store.root, large_case["run"], large_case["root"] / "skip.ome.zarr", **kw)
    full = predict_large(src.store.root, large_case["run"], large_case["root"] / "noskip.ome.zarr",
                         skip_empty=False, **kw)
    assert (skip.blocks_done, skip.blocks_skipped) == (2, 1)
    assert (full.blocks_done, full.blocks_skipped) == (3, 0)
    a = _read(large_case["root"] / "skip.ome.zarr", "labels/neurites/0")
    b = _read(large_case["root"] / "noskip.ome.zarr", "labels/neurites/0")
    np.testing.assert_array_equal(a[..., :48], b[..., :48])
    assert not a[..., 48:].any()


def test_summary_fields_of_a_synchronous_run(large_case):
    from nnunetv2_neurino.large.engine import peak_rss_bytes
    from nnunetv2_neurino.large.lattice import block_tiles
    from nnunetv2_neurino.large.predict import predict_large

    out = large_case["root"] / "summary.ome.zarr"
    res = predict_large(large_case["input"], large_case["run"], out, block=BLOCK, use_mirroring=False,
                        spacing=SPACING, scheduler="synchronous")
    lat = res.lattice
    # every block evaluates the lattice tiles touching its core (one evaluation each, nothing skipped)
    assert res.tiles == sum(len(block_tiles(lat, *lat.core_box(i))) for i in lat.blocks())
    assert 0 < res.peak_worker_rss <= peak_rss_bytes()        # this process is the worker here
    assert res.voxels_per_second == pytest.approx(np.prod(lat.shape) / res.seconds)
    assert "27 predicted, 0 skipped" in res.summary() and "peak memory of a worker" in res.summary()
    # the printed lattice overhead: tiles the blocks evaluated / tiles of one whole-volume pass
    whole_pass = int(np.prod([len(o) for o in lat.origins]))
    assert res.tiles > whole_pass
    assert f"{res.tiles / whole_pass:.2f}x the tiles of one whole-volume pass" in res.summary()


def test_engine_thread_rule_and_host_counts():
    from nnunetv2_neurino.large.engine import torch_threads_rule, workers_per_host

    assert [torch_threads_rule(16, w) for w in (1, 2, 4, 5, 32)] == [16, 8, 4, 3, 1]
    counts = workers_per_host(["tcp://10.0.0.1:4001", "tcp://10.0.0.1:4002", "tcp://10.0.0.2:4001"])
    assert counts == {"tcp://10.0.0.1:4001": 2, "tcp://10.0.0.1:4002": 2, "tcp://10.0.0.2:4001": 1}


def test_cli_trace_writes_the_trees_of_trace_mask_beside_the_output(large_case, capsys):
    from nnunetv2_neurino.cli import main
    from nnunetv2_neurino.swc import read_swc
    from nnunetv2_neurino.tracing import trace_mask

    out = large_case["root"] / "traced.ome.zarr"
    argv = ["predict-large", "-i", str(large_case["input"]), "-m", str(large_case["run"]), "-o", str(out),
            "--block", "16", "--disable-tta", "--scheduler", "synchronous", "--spacing", *map(str, SPACING),
            "--trace"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    folder = large_case["root"] / "traced_trace"                 # OUT's sibling: NAME.ome.zarr -> NAME_trace
    assert f"SWCs in {folder / 'trees'}" in text
    mask = _read(out, "labels/neurites/0")
    ref = trace_mask(mask > 0, SPACING)                          # trace-large's defaults: min size 10
    got = read_swc(folder / "all_trees.swc")
    assert ref.n > 0 and got.n == ref.n
    assert {tuple(x) for x in got.xyz} == {tuple(x) for x in ref.xyz}
    assert len(list((folder / "trees").glob("*.swc"))) == len(ref.roots)
    # a stated folder; an existing trace folder is refused before any prediction (output not created)
    stated = large_case["root"] / "stated"
    capsys.readouterr()
    t2 = large_case["root"] / "t2.ome.zarr"
    assert main(argv[:6] + [str(t2)] + argv[7:] + [str(stated), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)                    # --json: one JSON document on stdout
    blocks = doc["blocks"]
    assert doc["output"] == str(t2) and blocks["done"] + blocks["skipped"] == blocks["total"] > 1
    n_trees = len(ref.roots)
    assert doc["trace"] == {"folder": str(stated), "trees_written": n_trees, "trees_traced": n_trees,
                            "nodes": got.n}
    assert (stated / "trees.csv").is_file()
    again = large_case["root"] / "t3.ome.zarr"
    assert main(argv[:6] + [str(again)] + argv[7:] + [str(stated)]) == 2
    assert not again.exists()


def test_tile_feed_yields_the_tiles_in_order_and_hands_errors_to_the_consumer():
    import torch

    from nnunetv2_neurino.large.predict import _tile_feed

    data = torch.arange(6 * 7 * 8, dtype=torch.float32).reshape(6, 7, 8)
    slices = [(slice(z, z + 3), slice(y, y + 4), slice(0, 8)) for z in (0, 3) for y in (0, 2, 3)]
    got = list(_tile_feed(data, slices, depth=1))
    assert len(got) == len(slices)
    for sl, tile in zip(slices, got):
        assert tile.shape == (1, 1, 3, 4, 8) and tile.is_contiguous()
        assert torch.equal(tile[0, 0], data[sl])
    # a failing cut (too many indices) reaches the consumer as the same exception, and nothing hangs
    with pytest.raises(IndexError):
        list(_tile_feed(data, slices[:2] + [(slice(0, 1),) * 4], depth=1))
    # a consumer that stops early leaves no producer blocked on the full queue
    feed = _tile_feed(data, slices, depth=1)
    next(feed)
    feed.close()


def test_local_cluster_workers_keep_glibcs_adaptive_malloc(monkeypatch):
    """dask's default MALLOC_TRIM_THRESHOLD_ made every tensor an mmap in the workers (about 2x slower)."""
    import os

    from distributed import Client

    from nnunetv2_neurino.large.engine import start_local_cluster

    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    cluster = start_local_cluster(1)
    try:
        with Client(cluster) as client:
            env = client.run(lambda: os.environ.get("MALLOC_TRIM_THRESHOLD_", "unset"))
    finally:
        cluster.close()
    assert list(env.values()) == ["unset"]
