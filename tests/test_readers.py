"""Image readers: round trips, hand-built Vaa3D files, swcgeom's v3draw/v3dpbd reader as oracle."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from nnunetv2_neurino.data import v3d
from nnunetv2_neurino.data.readers import image_stem, read_image, write_image
from nnunetv2_neurino.errors import NeurinoError

SPACING = (2.0, 0.5, 0.25)


def _volume(dtype, shape=(4, 6, 9), seed=0):
    rng = np.random.default_rng(seed)
    top = 250 if dtype == np.uint8 else 60000
    return rng.integers(0, top, shape).astype(dtype)


@pytest.mark.parametrize("suffix", [".tif", ".nii.gz", ".zarr", ".zarr.zip"])
def test_round_trip_keeps_voxels_and_spacing(tmp_path, suffix):
    img = _volume(np.uint16)
    write_image(tmp_path / f"a{suffix}", img, SPACING)
    back, spacing = read_image(tmp_path / f"a{suffix}")
    assert back.dtype == img.dtype and np.array_equal(back, img)
    assert spacing == pytest.approx(SPACING)


@pytest.mark.parametrize("suffix", [".v3draw", ".v3dpbd"])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_vaa3d_round_trip_without_spacing(tmp_path, suffix, dtype):
    img = _volume(dtype)
    write_image(tmp_path / f"a{suffix}", img, SPACING)
    back, spacing = read_image(tmp_path / f"a{suffix}")
    assert np.array_equal(back, img) and back.dtype == img.dtype
    assert spacing == (1.0, 1.0, 1.0)


def _compressible(dtype, seed):
    """A stack that exercises every run kind: flat areas, small and medium slopes, noise, wrap-around."""
    rng = np.random.default_rng(seed)
    modulus = 256 if dtype == np.uint8 else 65536
    img = np.zeros((2, 6, 11, 40), dtype=np.int64)
    img[:, 0] = 7
    img[:, 1] = rng.integers(-1, 3, (2, 11, 40)).cumsum(-1) + 100
    img[:, 2] = rng.integers(-3, 5, (2, 11, 40)).cumsum(-1) + 1000
    img[:, 3] = rng.integers(-15, 17, (2, 11, 40)).cumsum(-1) + 3
    img[:, 4] = rng.integers(0, modulus, (2, 11, 40))
    img[:, 5] = np.arange(40) * 3 - 60
    return np.mod(img, modulus).astype(dtype)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_v3dpbd_our_encoder_matches_swcgeom_reader(tmp_path, dtype):
    loaders = pytest.importorskip("swcgeom.images.loaders")
    img = _compressible(dtype, seed=3)
    path = tmp_path / "c.v3dpbd"
    v3d.write_v3dpbd(path, img)
    oracle = loaders.PBD().load(str(path))
    ours = v3d.read_v3dpbd(path)
    assert np.array_equal(oracle, img)
    assert np.array_equal(ours, img)
    # the encoder really compresses the flat/slow parts (raw payload would be img.nbytes)
    assert path.stat().st_size < 0.8 * img.nbytes
    all_channels, _ = read_image(path, channel=None)
    assert all_channels.shape == img.shape


def _pbd_file(path, code, sizes_xyzc, stream, endian=b"L"):
    fmt = "<" if endian == b"L" else ">"
    path.write_bytes(v3d.PBD_KEY + endian + struct.pack(fmt + "h4i", code, *sizes_xyzc) + bytes(stream))


def test_v3dpbd_hand_built_8bit_stream(tmp_path):
    # literal 3 bytes | repeat 5 ×3 | 5 two-bit differences +1 +2 −1 0 +1 (fields 1,2,3,0 | 1, LSB first)
    stream = [2, 10, 20, 30, 127 + 3, 5, 32 + 5, 1 | 2 << 2 | 3 << 4 | 0 << 6, 1]
    expected = np.array([10, 20, 30, 5, 5, 5, 6, 8, 7, 7, 8], dtype=np.uint8)
    path = tmp_path / "h8.v3dpbd"
    _pbd_file(path, 1, (11, 1, 1, 1), stream)
    assert np.array_equal(read_image(path)[0].ravel(), expected)
    loaders = pytest.importorskip("swcgeom.images.loaders")
    assert np.array_equal(loaders.PBD().load(str(path)).ravel(), expected)


def test_v3dpbd_hand_built_16bit_stream(tmp_path):
    # literal 1000 | three 3-bit differences +4 −3 −1 (fields 100 111 101, MSB first) | repeat 7 ×2
    stream = [0, 0xE8, 0x03, 31 + 3, 0b10011110, 0b10000000, 222 + 2, 7, 0]
    expected = np.array([1000, 1004, 1001, 1000, 7, 7], dtype=np.uint16)
    path = tmp_path / "h16.v3dpbd"
    _pbd_file(path, 2, (3, 2, 1, 1), stream)
    assert np.array_equal(read_image(path)[0].ravel(), expected)
    assert read_image(path)[0].shape == (1, 2, 3)
    loaders = pytest.importorskip("swcgeom.images.loaders")
    assert np.array_equal(loaders.PBD().load(str(path)).ravel(), expected)


def test_v3draw_old_two_byte_sizes_and_big_endian(tmp_path):
    img = _volume(np.uint16, shape=(3, 4, 5))
    old = tmp_path / "old.v3draw"
    old.write_bytes(v3d.RAW_KEYS[0] + b"L" + struct.pack("<h4h", 2, 5, 4, 3, 1) + img.astype("<u2").tobytes())
    big = tmp_path / "big.v3draw"
    big.write_bytes(v3d.RAW_KEYS[0] + b"B" + struct.pack(">h4i", 2, 5, 4, 3, 1) + img.astype(">u2").tobytes())
    assert np.array_equal(read_image(old)[0], img)
    assert np.array_equal(read_image(big)[0], img)
    loaders = pytest.importorskip("swcgeom.images.loaders")
    assert np.array_equal(loaders.Raw(sz2byte=True).load(str(old))[0], img)


def test_v3draw_written_by_us_read_by_swcgeom(tmp_path):
    loaders = pytest.importorskip("swcgeom.images.loaders")
    img = _volume(np.uint8, shape=(2, 3, 4, 5))
    v3d.write_v3draw(tmp_path / "m.v3draw", img)
    assert np.array_equal(loaders.Raw().load(str(tmp_path / "m.v3draw")), img)
    assert np.array_equal(read_image(tmp_path / "m.v3draw", channel=1)[0], img[1])
    with pytest.raises(NeurinoError, match="channel 5"):
        read_image(tmp_path / "m.v3draw", channel=5)


def test_tiff_2d_and_channels(tmp_path):
    import tifffile

    tifffile.imwrite(tmp_path / "flat.tif", np.arange(12, dtype=np.uint8).reshape(3, 4))
    arr, _ = read_image(tmp_path / "flat.tif")
    assert arr.shape == (1, 3, 4)
    stack = _volume(np.uint8, shape=(3, 2, 4, 5))  # z, c, y, x
    tifffile.imwrite(tmp_path / "zc.tif", stack, imagej=True, metadata={"axes": "ZCYX"})
    arr, _ = read_image(tmp_path / "zc.tif", channel=1)
    assert np.array_equal(arr, stack[:, 1])


@pytest.mark.parametrize("name,content,match", [
    ("trunc.v3dpbd", None, "corrupt PackBits"),
    ("key.v3dpbd", b"not_a_vaa3d_file_at_all" + b"\0" * 40, "not a Vaa3D PBD"),
    ("trunc.v3draw", None, "does not match"),
    ("bad.tif", b"II*\0garbage", "cannot read image"),
    ("bad.zarr.zip", b"not a zip", "not a zip"),
    ("x.png", b"\x89PNG", "unknown image type"),
])
def test_corrupt_files_raise_error_naming_file(tmp_path, name, content, match):
    path = tmp_path / name
    if content is None:
        write_image(tmp_path / ("ok" + name[name.index("."):]), _compressible(np.uint8, 1)[0])
        full = (tmp_path / ("ok" + name[name.index("."):])).read_bytes()
        path.write_bytes(full[: len(full) - 7])
    else:
        path.write_bytes(content)
    with pytest.raises(NeurinoError, match=match) as info:
        read_image(path)
    assert name in str(info.value)


def test_missing_file_and_stems(tmp_path):
    with pytest.raises(NeurinoError, match="no such image"):
        read_image(tmp_path / "nope.tif")
    assert image_stem("a/b.nii.gz") == "b"
    assert image_stem("c.zarr.zip") == "c"
    assert image_stem("NAME.tif") == "NAME"
