"""Lazy volume readers: round trips per format, level selection and spacing, error cases, lazy reads."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from nnunetv2_neurino.errors import NeurinoError
from nnunetv2_neurino.large.ngff import (
    add_label,
    add_multiscale,
    create_ngff_root,
    downsample,
    write_ome_zarr,
)
from nnunetv2_neurino.large.readers import check_spacing, open_volume

SPACING = (2.0, 0.5, 0.25)


def _volume(shape=(10, 12, 14), seed=0, dtype=np.uint16):
    return np.random.default_rng(seed).integers(0, 4000, shape).astype(dtype)


def _assert_same(vol, img):
    assert vol.shape == img.shape and vol.dtype == img.dtype
    assert np.array_equal(vol.array[...], img)
    assert np.array_equal(vol.array[2:7, 3, 1:13:3], img[2:7, 3, 1:13:3])
    assert np.array_equal(vol.read((slice(1, 4), slice(0, 5), slice(-4, None))), img[1:4, 0:5, -4:])


# --------------------------------------------------------------------------------------------- OME-Zarr
@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_ome_zarr_levels_and_spacing(tmp_path, version):
    img = _volume((9, 12, 14))
    lab = (img > 3000).astype(np.uint8)
    write_ome_zarr(tmp_path / "a.ome.zarr", img, SPACING, chunks=(4, 4, 4), n_levels=3, version=version,
                   labels={"neurites": lab})
    vol = open_volume(tmp_path / "a.ome.zarr")
    assert vol.format == "ome-zarr" and vol.level == 0 and vol.attrs["ngff_version"] == version
    _assert_same(vol, img)
    assert vol.spacing == pytest.approx(SPACING) and vol.chunks == (4, 4, 4)
    assert [s for s, _ in vol.levels] == [(9, 12, 14), (5, 6, 7), (3, 3, 4)]
    assert vol.levels[2][1] == pytest.approx((8.0, 2.0, 1.0))
    coarse = open_volume(tmp_path / "a.ome.zarr", level=1)
    assert coarse.spacing == pytest.approx((4.0, 1.0, 0.5))
    assert np.array_equal(coarse.array[...], downsample(img, (2, 2, 2), "mean"))
    label = open_volume(tmp_path / "a.ome.zarr" / "labels" / "neurites", level=2)
    # max-pooled twice: a voxel of level 2 is set iff any of its 4x4x4 source voxels is
    expect = np.zeros((3, 3, 4), np.uint8)
    for z, y, x in np.argwhere(lab):
        expect[z // 4, y // 4, x // 4] = 1
    assert np.array_equal(label.array[...], expect)


def test_ome_zarr_tczyx_channel_selection_and_metadata(tmp_path):
    import zarr

    img = _volume((1, 2, 6, 8, 10))
    group = zarr.open_group(tmp_path / "t.zarr", mode="w", zarr_format=2)
    group.create_array("s0", data=img, chunks=(1, 1, 3, 4, 5))
    axes = [{"name": "t", "type": "time"}, {"name": "c", "type": "channel"}] + \
        [{"name": a, "type": "space", "unit": "micrometer"} for a in "zyx"]
    group.attrs["multiscales"] = [{"version": "0.4", "axes": axes, "datasets": [
        {"path": "s0", "coordinateTransformations": [{"type": "scale", "scale": [1, 1, 3.0, 1.0, 0.5]}]}],
        "coordinateTransformations": [{"type": "scale", "scale": [1, 1, 2.0, 2.0, 2.0]}]}]
    with pytest.raises(NeurinoError, match="2 channels"):
        open_volume(tmp_path / "t.zarr")
    vol = open_volume(tmp_path / "t.zarr", channel=1)
    _assert_same(vol, img[0, 1])
    assert vol.spacing == pytest.approx((6.0, 2.0, 1.0))      # dataset scale x multiscales-level scale
    assert vol.chunks == (3, 4, 5)
    with pytest.raises(NeurinoError, match="channel 2 does not exist"):
        open_volume(tmp_path / "t.zarr", channel=2)


# ------------------------------------------------------------------------------------------- plain zarr
@pytest.mark.parametrize("zarr_format", [2, 3])
def test_plain_zarr_round_trip(tmp_path, zarr_format):
    import zarr

    img = _volume()
    arr = zarr.create_array(tmp_path / "p.zarr", shape=img.shape, dtype=img.dtype, chunks=(4, 5, 6),
                            zarr_format=zarr_format, attributes={"spacing": list(SPACING)})
    arr[...] = img
    vol = open_volume(tmp_path / "p.zarr")
    assert vol.format == "zarr" and vol.spacing == pytest.approx(SPACING) and vol.chunks == (4, 5, 6)
    _assert_same(vol, img)
    assert vol.levels == [(img.shape, pytest.approx(SPACING))]
    back = pickle.loads(pickle.dumps(vol))      # a dask worker reopens the file
    assert np.array_equal(back.array[1:3], img[1:3])


# ----------------------------------------------------------------------------------------- IMS / HDF5
def _write_ims(path: Path, levels: list[np.ndarray], extent_zyx, pad: int = 4):
    import h5py

    def chars(value) -> np.ndarray:
        return np.array(list(str(value)), dtype="S1")

    with h5py.File(path, "w") as f:
        info = f.create_group("DataSetInfo/Image")
        for i, axis in enumerate("XYZ"):
            info.attrs[f"ExtMin{i}"] = chars(0.0)
            info.attrs[f"ExtMax{i}"] = chars(extent_zyx[2 - i])
            info.attrs[axis] = chars(levels[0].shape[2 - i])
        for n, data in enumerate(levels):
            group = f.create_group(f"DataSet/ResolutionLevel {n}/TimePoint 0/Channel 0")
            padded = np.zeros([-(-s // pad) * pad for s in data.shape], data.dtype)   # Imaris pads to chunks
            padded[tuple(slice(0, s) for s in data.shape)] = data
            group.create_dataset("Data", data=padded, chunks=(pad, pad, pad))
            for axis, size in zip("ZYX", data.shape):
                group.attrs[f"ImageSize{axis}"] = chars(size)


def test_ims_levels_crop_padding_and_spacing(tmp_path):
    img = _volume((9, 10, 11))
    coarse = downsample(img, (2, 2, 2))
    _write_ims(tmp_path / "a.ims", [img, coarse], extent_zyx=(18.0, 5.0, 2.75))
    vol = open_volume(tmp_path / "a.ims")
    assert vol.format == "ims"
    _assert_same(vol, img)
    assert vol.spacing == pytest.approx(SPACING)
    one = open_volume(tmp_path / "a.ims", level=1)
    assert one.shape == coarse.shape and np.array_equal(one.array[...], coarse)
    assert one.spacing == pytest.approx((18.0 / 5, 5.0 / 5, 2.75 / 6))
    with pytest.raises(NeurinoError, match="level 2 does not exist"):
        open_volume(tmp_path / "a.ims", level=2)
    assert np.array_equal(pickle.loads(pickle.dumps(one)).array[...], coarse)


def test_plain_hdf5_named_and_single_dataset(tmp_path):
    import h5py

    img = _volume()
    with h5py.File(tmp_path / "a.h5", "w") as f:
        ds = f.create_dataset("volume/raw", data=img, chunks=(4, 4, 4))
        ds.attrs["element_size_um"] = SPACING
        f.create_dataset("small", data=np.zeros((3, 3)))
    with open_volume(tmp_path / "a.h5") as vol:
        assert vol.format == "hdf5" and vol.spacing == pytest.approx(SPACING) and vol.chunks == (4, 4, 4)
        _assert_same(vol, img)
    with h5py.File(tmp_path / "a.h5", "a") as f:
        f.create_dataset("other", data=img)
    with pytest.raises(NeurinoError, match="2 datasets"):
        open_volume(tmp_path / "a.h5")
    _assert_same(open_volume(tmp_path / "a.h5", dataset="other"), img)
    with pytest.raises(NeurinoError, match="no HDF5 dataset 'nope'"):
        open_volume(tmp_path / "a.h5", dataset="nope")


# ----------------------------------------------------------------------------------------------- TIFF
def test_tiff_stack_and_pyramid(tmp_path):
    import tifffile

    img = _volume((6, 16, 16))
    small = downsample(img, (1, 2, 2))
    with tifffile.TiffWriter(tmp_path / "p.ome.tif", ome=True) as tif:   # OME-TIFF pyramid in SubIFDs
        tif.write(img, subifds=1, resolution=(1 / SPACING[2], 1 / SPACING[1]), metadata={"axes": "ZYX"},
                  tile=(16, 16))
        tif.write(small, subfiletype=1, tile=(16, 16))
    vol = open_volume(tmp_path / "p.ome.tif")
    assert vol.format == "tiff"
    _assert_same(vol, img)
    assert vol.spacing[1:] == pytest.approx(SPACING[1:])
    assert [s for s, _ in vol.levels] == [(6, 16, 16), (6, 8, 8)]
    lv1 = open_volume(tmp_path / "p.ome.tif", level=1)
    assert np.array_equal(lv1.array[...], small)
    assert lv1.spacing[1:] == pytest.approx((1.0, 0.5))


def test_tiff_series_folder_and_glob(tmp_path):
    import tifffile

    img = _volume((5, 7, 9))
    (tmp_path / "s").mkdir()
    for z in range(img.shape[0]):
        tifffile.imwrite(tmp_path / "s" / f"slice_{z:03d}.tif", img[z])
    for source in (tmp_path / "s", str(tmp_path / "s" / "slice_*.tif")):
        vol = open_volume(source)
        assert vol.format == "tiff-series"
        _assert_same(vol, img)
        assert np.array_equal(pickle.loads(pickle.dumps(vol)).array[2], img[2])


# ---------------------------------------------------------------------------------------------- errors
def test_errors_name_the_file(tmp_path):
    import zarr

    (tmp_path / "junk.bin").write_bytes(b"not a volume at all")
    with pytest.raises(NeurinoError, match="junk.bin: unknown volume format"):
        open_volume(tmp_path / "junk.bin")
    with pytest.raises(NeurinoError, match="no such file"):
        open_volume(tmp_path / "missing.zarr")
    n5 = tmp_path / "vol.n5"
    n5.mkdir()
    (n5 / "attributes.json").write_text('{"n5": "2.0.0"}')
    with pytest.raises(NeurinoError, match="vol.n5: N5 containers are not supported"):
        open_volume(n5)
    zarr.create_array(tmp_path / "flat.zarr", shape=(8, 9), dtype="u1", chunks=(4, 4))
    with pytest.raises(NeurinoError, match="flat.zarr.*3D"):
        open_volume(tmp_path / "flat.zarr")
    zarr.create_array(tmp_path / "4d.zarr", shape=(3, 4, 5, 6), dtype="u1", chunks=(1, 4, 5, 6))
    with pytest.raises(NeurinoError, match="4d.zarr.*3D"):
        open_volume(tmp_path / "4d.zarr")
    assert open_volume(tmp_path / "4d.zarr", channel=2).shape == (4, 5, 6)
    write_ome_zarr(tmp_path / "o.zarr", _volume((4, 4, 4)), SPACING, chunks=(2, 2, 2), n_levels=2)
    with pytest.raises(NeurinoError, match="o.zarr: level 5 does not exist.*2 levels"):
        open_volume(tmp_path / "o.zarr", level=5)
    with pytest.raises(NeurinoError, match="level 1 does not exist"):
        open_volume(tmp_path / "flat.zarr", level=1)


def test_check_spacing_names_the_matching_level(tmp_path):
    levels = [((64, 64, 64), (1.0, 0.5, 0.5)), ((32, 32, 32), (2.0, 1.0, 1.0)),
              ((16, 16, 16), (4.0, 2.0, 2.0))]
    check_spacing((1.0, 0.5, 0.5), (1.05, 0.46, 0.54), levels=levels)       # within 10 % on every axis
    with pytest.raises(NeurinoError, match=r"brain.zarr \(level 0\).*level 1 has spacing.*--level 1"):
        check_spacing((1.0, 0.5, 0.5), (2.0, 1.0, 1.0), levels=levels, path="brain.zarr", level=0)
    with pytest.raises(NeurinoError, match="no level of the file matches"):
        check_spacing((1.0, 0.5, 0.5), (1.0, 0.5, 0.56), levels=levels)       # 12 % off on x
    with pytest.raises(NeurinoError, match="records no voxel size"):
        check_spacing(None, (1.0, 1.0, 1.0))


# ------------------------------------------------------------------------------------------------ lazy
@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_reads_touch_only_the_requested_chunks(tmp_path, version):
    """Opening reads metadata only, and a slice reads exactly the chunks it covers: every other chunk
    file is replaced by garbage, which zarr would fail to decode if it read it."""
    img = _volume((8, 8, 8))
    root = create_ngff_root(tmp_path / "l.zarr", version)
    arr = add_multiscale(root, img.shape, img.dtype, SPACING, (4, 4, 4))[0]
    arr[...] = img
    add_label(root, "neurites", img.shape, np.uint8, SPACING, (4, 4, 4))
    chunk_files = [p for p in (tmp_path / "l.zarr" / "0").rglob("*") if p.is_file()
                   and not p.name.startswith(".") and p.name != "zarr.json"]
    assert len(chunk_files) == 8
    wanted = ("0/0/0", "c/0/0/0")
    for p in chunk_files:
        if not str(p.relative_to(tmp_path / "l.zarr" / "0")).endswith(wanted):
            p.write_bytes(b"garbage, not a compressed chunk")
    vol = open_volume(tmp_path / "l.zarr")
    assert np.array_equal(vol.array[0:4, 1:4, 0:3], img[0:4, 1:4, 0:3])
    with pytest.raises(NeurinoError, match="decompression"):      # the codec refuses the garbage chunk
        vol.array[4:5, 0, 0]


# ------------------------------------------------------------------------------------- damaged chunks
def test_a_truncated_chunk_is_refused_naming_file_and_region(tmp_path):
    """Issue 11: a chunk cut short (an interrupted copy) is an error naming the volume, never zeros."""
    import zarr

    img = _volume((8, 8, 8))
    path = tmp_path / "plain.zarr"
    arr = zarr.open_array(path, mode="w", shape=img.shape, chunks=(4, 4, 4), dtype=img.dtype, zarr_format=2)
    arr[:] = img
    chunk = path / "1.0.1"               # z 4:8, y 0:4, x 4:8
    data = chunk.read_bytes()
    chunk.write_bytes(data[: len(data) // 2])
    vol = open_volume(path)
    assert np.array_equal(vol.array[:4], img[:4])               # the intact chunks still read exactly
    with pytest.raises(NeurinoError, match=r"plain\.zarr: cannot read the region \[4:8, 0:8, 0:8\].*corrupt"):
        vol.array[4:8]
    with pytest.raises(NeurinoError, match=r"plain\.zarr: cannot read"):
        pickle.loads(pickle.dumps(vol)).read((slice(4, 8), slice(0, 4), slice(4, 8)))   # on a dask worker
