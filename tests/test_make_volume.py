"""neurino make-volume: block-size independence, label == render of the gold SWCs, OME-Zarr read-back,
bounded blocks, atomic output and --force rules."""

from __future__ import annotations

import numpy as np
import pytest

from nnunetv2_neurino.cli import main
from nnunetv2_neurino.data.render import render_swc
from nnunetv2_neurino.errors import NeurinoError
from nnunetv2_neurino.large import make_volume
from nnunetv2_neurino.large.make_volume import build_scene, render_block, write_volume
from nnunetv2_neurino.large.readers import open_volume
from nnunetv2_neurino.swc import read_swc

SHAPE = (24, 40, 36)
SPACING = (2.0, 1.0, 1.0)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """The same volume written with two block sizes that do not divide it (16 and 24)."""
    root = tmp_path_factory.mktemp("mv")
    paths = {}
    for chunk in (16, 24):
        paths[chunk] = write_volume(root / f"b{chunk}.ome.zarr", SHAPE, 3, seed=4, chunk=chunk,
                                    spacing=SPACING, progress=False)
    return paths


def test_voxels_do_not_depend_on_the_block_size(written):
    scene = build_scene(SHAPE, 3, seed=4, spacing=SPACING)
    whole_img, whole_lab = render_block(scene, (0, 0, 0), SHAPE)       # the whole volume as one block
    for path in written.values():
        img = open_volume(path).array[...]
        lab = open_volume(path / "labels" / "neurites").array[...]
        assert np.array_equal(img, whole_img)
        assert np.array_equal(lab, whole_lab)
    # the image shows the neurons: brighter on the label than off it
    on, off = whole_img[whole_lab > 0].astype(float), whole_img[whole_lab == 0].astype(float)
    assert on.mean() > off.mean() + 3 * off.std() / np.sqrt(on.size) and on.mean() > 1.3 * np.median(off)


def test_label_is_the_render_of_the_gold_swcs_and_neurons_cross_blocks(written):
    path = written[16]
    lab = open_volume(path / "labels" / "neurites").array[...].astype(bool)
    files = sorted((path / "swc").glob("neuron_*.swc"))
    assert len(files) == 3
    expect = np.zeros(SHAPE, bool)
    crossing = 0
    for f in files:
        tree = read_swc(f)
        expect |= render_swc(tree, SHAPE, SPACING, radius_floor=1.0)
        blocks = {tuple(b) for b in (np.floor(tree.to_zyx()).astype(int) // 16)}
        crossing += len(blocks) > 1
    assert np.array_equal(lab, expect)
    assert crossing >= 2                       # neurites run across block faces
    combined = read_swc(path / "swc" / "all_neurons.swc")
    assert combined.n == sum(read_swc(f).n for f in files)


def test_ome_zarr_metadata_and_pyramid(written):
    vol = open_volume(written[24])
    assert vol.format == "ome-zarr" and vol.spacing == pytest.approx(SPACING) and vol.chunks == (24, 24, 24)
    assert len(vol.levels) == 1              # smallest side 24: a level of 12 would be below 16
    path = write_volume(written[24].parent / "lv.ome.zarr", SHAPE, 1, seed=1, chunk=16, spacing=SPACING,
                        progress=False, version="0.5", n_levels=2)
    lab0 = open_volume(path / "labels" / "neurites").array[...]
    lab1 = open_volume(path / "labels" / "neurites", level=1)
    assert lab1.spacing == pytest.approx((4.0, 2.0, 2.0)) and lab1.attrs["ngff_version"] == "0.5"
    # max-pooling: a coarse voxel is set iff one of its 2x2x2 fine voxels is
    fine = np.zeros(lab1.shape, np.uint8)
    for z, y, x in np.argwhere(lab0):
        fine[z // 2, y // 2, x // 2] = 1
    assert np.array_equal(lab1.array[...], fine)


def test_blocks_are_chunk_sized(tmp_path, monkeypatch):
    seen = []
    real = make_volume.render_block

    def spy(scene, lo, hi):
        seen.append(tuple(np.subtract(hi, lo)))
        return real(scene, lo, hi)

    monkeypatch.setattr(make_volume, "render_block", spy)
    write_volume(tmp_path / "s.ome.zarr", (20, 20, 20), 1, seed=0, chunk=8, progress=False)
    assert len(seen) == 27 and max(max(s) for s in seen) == 8


def test_atomic_output_and_force(tmp_path, monkeypatch):
    out = tmp_path / "v.ome.zarr"
    write_volume(out, (16, 16, 16), 1, seed=0, chunk=8, progress=False)
    with pytest.raises(NeurinoError, match="already exists"):
        write_volume(out, (16, 16, 16), 1, seed=0, chunk=8, progress=False)
    # an interrupted run leaves the previous output untouched and no partial folder
    calls = []

    def failing(scene, lo, hi):
        calls.append(lo)
        if len(calls) == 3:
            raise RuntimeError("killed")
        return render_block(scene, lo, hi)

    monkeypatch.setattr(make_volume, "render_block", failing)
    before = open_volume(out).array[...]
    with pytest.raises(RuntimeError, match="killed"):
        write_volume(out, (16, 16, 16), 1, seed=9, chunk=8, progress=False, force=True)
    assert np.array_equal(open_volume(out).array[...], before)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.ome.zarr"]
    monkeypatch.undo()
    write_volume(out, (16, 16, 16), 1, seed=9, chunk=8, progress=False, force=True)
    assert not np.array_equal(open_volume(out).array[...], before)
    # --force never replaces a folder make-volume did not write
    other = tmp_path / "data.zarr"
    other.mkdir()
    (other / "precious.txt").write_text("keep")
    with pytest.raises(NeurinoError, match="not written by 'neurino make-volume'"):
        write_volume(other, (16, 16, 16), 1, force=True, progress=False)
    assert (other / "precious.txt").read_text() == "keep"


def test_cli(tmp_path, capsys):
    out = tmp_path / "brain.ome.zarr"
    assert main(["make-volume", "-o", str(out), "--shape", "16", "20", "24", "--neurons", "2", "--seed", "3",
                 "--chunk", "16"]) == 0
    assert open_volume(out).shape == (16, 20, 24)
    assert len(list((out / "swc").glob("*.swc"))) == 3
    assert main(["make-volume", "-o", str(out), "--shape", "16", "20", "24", "--neurons", "0"]) == 2
    assert "--neurons must be at least 1" in capsys.readouterr().err
