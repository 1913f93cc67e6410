"""Folders of numbered 2D slices read as (z, y, x) stacks: order, ignored files, refusals, spacing origin."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

from nnunetv2_neurino.cli import main
from nnunetv2_neurino.data.readers import read_image, write_zarr
from nnunetv2_neurino.data.slices import read_slice_folder
from nnunetv2_neurino.errors import NeurinoError

YX = (6, 7)
OP_SLICES = {"OP_1": 60, "OP_2": 88, "OP_3": 62, "OP_4": 67}


def _slice(k: int, dtype=np.uint8) -> np.ndarray:
    """A slice whose every pixel holds its own slice number (so the z order can be read back)."""
    return np.full(YX, k, dtype=dtype)


def _folder(tmp_path, numbers, fmt="{}.tif", **imwrite):
    folder = tmp_path / "stack"
    folder.mkdir()
    for k in numbers:
        tifffile.imwrite(folder / fmt.format(k), _slice(k), **imwrite)
    return folder


@pytest.mark.parametrize("fmt", ["{}.tif", "{:02d}.tif", "img_z{:03d}.TIFF"])
def test_numeric_order_and_non_images_ignored(tmp_path, fmt):
    folder = _folder(tmp_path, range(1, 12), fmt)
    (folder / "Thumbs.db").write_bytes(b"\x00garbage")
    (folder / "acquisition.txt").write_text("laser 488 nm")
    (folder / ".hidden.tif").write_bytes(b"not a tiff")
    (folder / "sub").mkdir()
    image, spacing = read_image(folder)
    assert image.shape == (11, *YX) and image.dtype == np.uint8
    np.testing.assert_array_equal(image[:, 0, 0], np.arange(1, 12))  # 10 and 11 after 9, not after 1
    assert spacing == (1.0, 1.0, 1.0)


def test_png_slices_and_rgb_channels(tmp_path):
    folder = tmp_path / "png"
    folder.mkdir()
    for k in range(3):
        rgb = np.zeros((*YX, 3), np.uint8)
        rgb[..., 1] = k + 10
        iio.imwrite(folder / f"s{k}.png", rgb)
    image, _ = read_image(folder, channel=1)
    np.testing.assert_array_equal(image[:, 2, 3], [10, 11, 12])
    assert read_image(folder, channel=None)[0].shape == (3, 3, *YX)


@pytest.mark.parametrize("numbers, missing", [([1, 2, 4, 5], "3"), ([0, 1, 2, 7], "3")])
def test_gap_in_numbering_is_refused_naming_it(tmp_path, numbers, missing):
    folder = _folder(tmp_path, numbers)
    with pytest.raises(NeurinoError, match=rf"slice number {missing} is missing \(after 2\.tif"):
        read_image(folder)


def test_repeated_number_and_unnumbered_slice_are_refused(tmp_path):
    folder = _folder(tmp_path, [1, 2])
    tifffile.imwrite(folder / "02.tif", _slice(2))
    with pytest.raises(NeurinoError, match=r"02\.tif and 2\.tif have the same number 2"):
        read_image(folder)
    (folder / "02.tif").unlink()
    tifffile.imwrite(folder / "overview.tif", _slice(0))
    with pytest.raises(NeurinoError, match=r"overview\.tif: slice file name has no number"):
        read_image(folder)


def test_mismatched_shape_or_dtype_names_the_slice(tmp_path):
    folder = _folder(tmp_path, [1, 2, 3])
    tifffile.imwrite(folder / "2.tif", np.zeros((6, 8), np.uint8))
    with pytest.raises(NeurinoError, match=r"2\.tif: slice is \(6, 8\) uint8 but 1\.tif is \(6, 7\) uint8"):
        read_image(folder)
    tifffile.imwrite(folder / "2.tif", _slice(2, np.uint16))
    with pytest.raises(NeurinoError, match=r"2\.tif: slice is \(6, 7\) uint16 but 1\.tif is \(6, 7\) uint8"):
        read_image(folder)


def test_unreadable_or_multipage_slice_names_the_file(tmp_path):
    folder = _folder(tmp_path, [1, 2, 3])
    (folder / "3.tif").write_bytes(b"II*\x00 truncated")
    with pytest.raises(NeurinoError, match=r"3\.tif: cannot read slice"):
        read_image(folder)
    tifffile.imwrite(folder / "3.tif", np.zeros((2, *YX), np.uint8))
    with pytest.raises(NeurinoError, match=r"3\.tif: holds 2 pages"):
        read_image(folder)


def test_folder_without_slices_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(NeurinoError, match="neither numbered 2D slices"):
        read_image(tmp_path)
    with pytest.raises(NeurinoError, match="no 2D slice images"):
        read_slice_folder(tmp_path)


@pytest.mark.parametrize("suffix", [".zarr", ""])
def test_zarr_folders_still_read_as_zarr(tmp_path, suffix):
    data = np.arange(4 * 5 * 6, dtype=np.uint16).reshape(4, 5, 6)
    write_zarr(tmp_path / f"vol{suffix}", data, spacing=(2.0, 0.5, 0.5), zipped=False)
    image, spacing = read_image(tmp_path / f"vol{suffix}")
    np.testing.assert_array_equal(image, data)
    assert spacing == (2.0, 0.5, 0.5)


@pytest.mark.parametrize("imwrite, expect_yx, why", [
    # ImageJ convention: no TIFF unit, the unit in the description
    (dict(imagej=True, resolution=(3.0335, 3.0335), metadata={"unit": "micron"}), 1 / 3.0335, "ImageJ unit"),
    (dict(resolution=(30000, 30000), resolutionunit=3), 1 / 3.0, "pixels per cm"),
    (dict(resolution=(3.0335, 3.0335), resolutionunit=1), None, "resolution tag has no unit"),
    (dict(resolution=(72, 72), resolutionunit=2), None, "print/screen density"),
    (dict(resolution=(300, 300), resolutionunit=2), None, "print/screen density"),
])
def test_resolution_tags_used_only_with_a_real_unit(tmp_path, imwrite, expect_yx, why):
    folder = _folder(tmp_path, [1, 2], **imwrite)
    stack = read_slice_folder(folder)
    assert why in stack.spacing_source and "z is not stored" in stack.spacing_source
    assert stack.spacing[0] == 1.0
    if expect_yx is None:
        assert stack.spacing[1:] == (1.0, 1.0) and "unknown" in stack.spacing_source
    else:
        np.testing.assert_allclose(stack.spacing[1:], (expect_yx, expect_yx), rtol=1e-6)


def test_cli_prints_the_spacing_used_and_its_origin(tmp_path, capsys):
    folder = _folder(tmp_path, range(1, 4), imagej=True, resolution=(2.0, 2.0), metadata={"unit": "um"})
    assert main(["seg-metrics", str(folder), str(folder), "--json"]) == 0
    err = capsys.readouterr().err
    assert "3 slices (1.tif … 3.tif)" in err and "spacing (z, y, x) = (1, 0.5, 0.5)" in err
    assert "TIFF resolution tags" in err and "--spacing" in err


def test_real_diadem_op_stacks(shared_dir):
    stacks = shared_dir / "data" / "diadem_op" / "OlfactoryProjectionFibers" / "ImageStacks"
    if not stacks.is_dir():
        pytest.skip(f"{stacks} is absent")
    for name, n_slices in OP_SLICES.items():
        stack = read_slice_folder(stacks / name)
        assert stack.image.shape == (n_slices, 512, 512) and stack.image.dtype == np.uint8
        assert [f.stem.lstrip("0") for f in stack.files] == [str(k) for k in range(1, n_slices + 1)]
        np.testing.assert_allclose(stack.spacing[1:], (0.3296, 0.3296), rtol=1e-3)  # 3.0335 px/µm tag
        # slices differ from each other (not one slice repeated) and the stack is not empty
        assert stack.image.max() > 0 and not np.array_equal(stack.image[0], stack.image[-1])
