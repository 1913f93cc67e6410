"""Block-wise prediction of large volumes (nnunetv2_neurino.large): lattice, global normalisation,
block-wise == whole-volume equality, resume, empty-block skipping and the CLI."""

from __future__ import annotations

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
