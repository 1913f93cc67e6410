"""Read and write 3D microscopy stacks: TIFF, Vaa3D ``.v3draw`` / ``.v3dpbd``, zarr (also zipped), NIfTI.

Every reader returns ``(array[z, y, x], spacing)`` with spacing in array order ``(z, y, x)``
(physical units per voxel as stored in the file; ``(1, 1, 1)`` when the format stores none).
Bad or corrupt files raise :class:`NeurinoError` naming the file.
"""

from __future__ import annotations

import json
import os
import sys
import zipfile
from pathlib import Path

import numpy as np

from nnunetv2_neurino.data import v3d
from nnunetv2_neurino.errors import NeurinoError

Spacing = tuple[float, float, float]

IMAGE_SUFFIXES = (".tif", ".tiff", ".v3draw", ".raw", ".v3dpbd", ".nii", ".nii.gz", ".zarr", ".zarr.zip",
                  ".nrrd", ".mha", ".mhd")


def image_suffix(path: str | os.PathLike) -> str | None:
    """The recognised image suffix of ``path`` (lower case, e.g. ``.nii.gz``), or None."""
    name = Path(path).name.lower()
    for suffix in sorted(IMAGE_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return suffix
    return None


def image_stem(path: str | os.PathLike) -> str:
    """File name without its image suffix (``a.nii.gz`` → ``a``, ``b.zarr.zip`` → ``b``)."""
    name = Path(path).name
    suffix = image_suffix(path)
    return name[: len(name) - len(suffix)] if suffix else Path(path).stem


def _select_channel(arr: np.ndarray, channel: int | None, path: Path) -> np.ndarray:
    """(c, z, y, x) → (z, y, x) for the chosen channel (single-channel images need no choice)."""
    if arr.shape[0] == 1:
        return arr[0]
    if channel is None:
        return arr
    if not 0 <= channel < arr.shape[0]:
        raise NeurinoError(f"{path}: channel {channel} requested but the image has {arr.shape[0]} channels")
    return arr[channel]


def read_image(path: str | os.PathLike, channel: int | None = 0) -> tuple[np.ndarray, Spacing]:
    """Read a 3D stack.

    Parameters
    ----------
    path : ``.tif/.tiff``, ``.v3draw`` (or Vaa3D ``.raw``), ``.v3dpbd``, ``.nii/.nii.gz`` (also
        ``.nrrd/.mha``), a ``.zarr`` folder or a zipped ``.zarr.zip``, or a folder of numbered 2D
        slices (``.tif/.png``; see :mod:`nnunetv2_neurino.data.slices`, which prints the spacing used
        and its origin to stderr).
    channel : which channel of a multi-channel image to return; None returns all channels.

    Returns
    -------
    image : ndarray (z, y, x) — or (c, z, y, x) when ``channel`` is None and there are several.
        The stored dtype is kept. A 2D image becomes (1, y, x).
    spacing : (z, y, x) voxel size from the file's metadata, else (1.0, 1.0, 1.0).
    """
    path = Path(path)
    if not path.exists():
        raise NeurinoError(f"{path}: no such image file")
    suffix = image_suffix(path)
    if path.is_dir() and suffix != ".zarr":  # a folder of numbered 2D slices (zarr stores stay zarr)
        from nnunetv2_neurino.data.slices import is_slice_folder, read_slice_folder

        if is_slice_folder(path):
            stack = read_slice_folder(path)
            print(f"neurino: {stack.describe()}", file=sys.stderr)  # the spacing used and where it came from
            arr, spacing = stack.image, stack.spacing
            arr = arr if arr.ndim == 4 else arr[None]
            return _select_channel(arr, channel, path), spacing
        if not any((path / m).exists() for m in ("zarr.json", ".zarray", ".zgroup")):
            raise NeurinoError(f"{path}: folder holds neither numbered 2D slices (.tif/.tiff/.png) "
                               "nor a zarr store")
        suffix = ".zarr"  # a zarr store without the .zarr suffix
    try:
        if suffix in (".tif", ".tiff"):
            arr, spacing = _read_tiff(path)
        elif suffix in (".v3draw", ".raw"):
            arr, spacing = v3d.read_v3draw(path), (1.0, 1.0, 1.0)
        elif suffix == ".v3dpbd":
            arr, spacing = v3d.read_v3dpbd(path), (1.0, 1.0, 1.0)
        elif suffix in (".nii", ".nii.gz", ".nrrd", ".mha", ".mhd"):
            _check_complete(path)
            arr, spacing = _read_sitk(path)
        elif suffix in (".zarr", ".zarr.zip"):
            arr, spacing = _read_zarr(path)
        else:
            raise NeurinoError(f"{path}: unknown image type; expected one of {', '.join(IMAGE_SUFFIXES)}")
    except NeurinoError:
        raise
    except Exception as e:  # third-party readers raise many types on corrupt input
        raise NeurinoError(f"{path}: cannot read image ({type(e).__name__}: {e})") from None
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4:
        raise NeurinoError(f"{path}: expected a 3D stack, got array of shape {arr.shape}")
    return _select_channel(arr, channel, path), tuple(float(s) for s in spacing)


# --------------------------------------------------------------------------------------------- TIFF
def _read_tiff(path: Path) -> tuple[np.ndarray, Spacing]:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        _check_tiff_complete(tif, path)
        series = tif.series[0]
        arr = series.asarray()
        axes = series.axes.upper()
        spacing = _tiff_spacing(tif)
    # bring to (c, z, y, x); the time axis / sample axes other than C are not expected in stacks
    axes = axes.replace("Q", "Z").replace("I", "Z").replace("S", "C")
    for extra in set(axes) - set("CZYX"):
        if arr.shape[axes.index(extra)] != 1:
            raise NeurinoError(f"{path}: TIFF axis '{extra}' of size {arr.shape[axes.index(extra)]} "
                               "is not supported (expected Z, Y, X and optionally C)")
        arr = arr.take(0, axis=axes.index(extra))
        axes = axes.replace(extra, "")
    for missing in "CZ":
        if missing not in axes:
            arr, axes = arr[None], missing + axes
    if len(set(axes)) != len(axes):
        raise NeurinoError(f"{path}: ambiguous TIFF axes {series.axes!r}")
    return np.transpose(arr, [axes.index(a) for a in "CZYX"]), spacing


def _check_tiff_complete(tif, path: Path) -> None:
    """Refuse a truncated TIFF: tifffile would return only the pages (or zeros) that are still there.

    Every page's strips/tiles must lie inside the file, and an ImageJ stack must still have all the images
    its metadata announces (a cut file loses its last pages, and tifffile then reads a shorter stack).
    """
    size = path.stat().st_size
    for i, page in enumerate(tif.pages):
        ends = [o + n for o, n in zip(page.dataoffsets, page.databytecounts) if n]
        if ends and max(ends) > size:
            raise NeurinoError(f"{path}: truncated TIFF (page {i} needs {max(ends)} bytes, "
                               f"the file has {size})")
    announced = (tif.imagej_metadata or {}).get("images") if tif.is_imagej else None
    if announced and tif.pages.first.is_contiguous:
        first = tif.pages.first
        needed = first.dataoffsets[0] + int(announced) * first.databytecounts[0]
        if needed > size:
            raise NeurinoError(f"{path}: truncated TIFF ({announced} images announced need {needed} bytes, "
                               f"the file has {size})")
    elif announced and int(announced) > len(tif.pages):
        raise NeurinoError(f"{path}: truncated TIFF ({announced} images announced, {len(tif.pages)} found)")


def _tiff_spacing(tif) -> Spacing:
    page = tif.pages[0]
    sy = sx = 1.0
    for tag_name, _axis in (("YResolution", "y"), ("XResolution", "x")):
        tag = page.tags.get(tag_name)
        if tag is not None:
            num, den = tag.value
            if num > 0 and den > 0 and num != den:
                value = den / num
                if _axis == "y":
                    sy = value
                else:
                    sx = value
    sz = 1.0
    meta = tif.imagej_metadata or {}
    if "spacing" in meta:
        sz = float(meta["spacing"])
    return (sz, sy, sx)


def write_tiff(path: str | os.PathLike, image: np.ndarray, spacing: Spacing = (1.0, 1.0, 1.0)) -> None:
    """Write (z, y, x) as an ImageJ TIFF; spacing stored (z as ImageJ 'spacing', y/x as resolution)."""
    import tifffile

    image = np.asarray(image)
    if image.dtype == np.float64:
        image = image.astype(np.float32)
    if image.dtype == bool:
        image = image.astype(np.uint8)
    sz, sy, sx = spacing
    tifffile.imwrite(path, image, imagej=True, resolution=(1.0 / sx, 1.0 / sy),
                     metadata={"spacing": sz, "axes": "ZYX"})


# ---------------------------------------------------------------------------------------- SimpleITK
def _check_complete(path: Path) -> None:
    """Refuse a truncated NIfTI: SimpleITK (ITK's NIfTI reader) fills the missing part with zeros silently.

    A gzip file is decompressed to its end once, which verifies the stored length and CRC-32 (Python's
    :mod:`gzip` raises on a stream cut short or altered); an uncompressed ``.nii`` must hold
    ``vox_offset + voxels * bitpix / 8`` bytes as its NIfTI-1/-2 header states.
    """
    import gzip
    import struct

    if path.suffix == ".gz":
        try:
            with gzip.open(path, "rb") as f:
                while f.read(1 << 24):
                    pass
        except (EOFError, OSError, _zlib_error()) as e:
            raise NeurinoError(f"{path}: truncated or corrupt gzip file ({e}); the image would be read "
                               "with missing voxels set to 0") from None
        return
    if path.suffix != ".nii":
        return
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(540)
    for endian in "<>":
        if len(head) >= 348 and struct.unpack(endian + "i", head[:4])[0] == 348:      # NIfTI-1
            dims = struct.unpack(endian + "8h", head[40:56])
            bitpix = struct.unpack(endian + "h", head[72:74])[0]
            offset = int(struct.unpack(endian + "f", head[108:112])[0])
        elif len(head) >= 540 and struct.unpack(endian + "i", head[:4])[0] == 540:    # NIfTI-2
            dims = struct.unpack(endian + "8q", head[16:80])
            bitpix = struct.unpack(endian + "h", head[14:16])[0]
            offset = struct.unpack(endian + "q", head[168:176])[0]
        else:
            continue
        n_dims = min(max(int(dims[0]), 0), 7)
        voxels = int(np.prod([max(int(d), 1) for d in dims[1:1 + n_dims]], dtype=np.int64))
        expected = offset + voxels * bitpix // 8
        if size < expected:
            raise NeurinoError(f"{path}: truncated NIfTI file ({size} bytes, its header needs {expected}); "
                               "the image would be read with missing voxels set to 0")
        return


def _zlib_error() -> type[Exception]:
    """zlib's error class (a gzip stream altered inside its data raises it rather than OSError)."""
    import zlib

    return zlib.error


def _read_sitk(path: Path) -> tuple[np.ndarray, Spacing]:
    import SimpleITK as sitk

    img = sitk.ReadImage(str(path))
    arr = sitk.GetArrayFromImage(img)
    spacing = tuple(reversed(img.GetSpacing()))
    if img.GetNumberOfComponentsPerPixel() > 1:  # (z, y, x, c) → (c, z, y, x)
        arr = np.moveaxis(arr, -1, 0)
    if arr.ndim == 2:
        spacing = (1.0, *spacing)
    return arr, spacing[-3:]


def write_nifti(path: str | os.PathLike, image: np.ndarray, spacing: Spacing = (1.0, 1.0, 1.0)) -> None:
    """Write (z, y, x) to NIfTI (``.nii.gz``) with spacing (z, y, x) reversed into ITK's (x, y, z)."""
    import SimpleITK as sitk

    image = np.asarray(image)
    if image.dtype == bool:
        image = image.astype(np.uint8)
    img = sitk.GetImageFromArray(image)
    img.SetSpacing(tuple(float(s) for s in reversed(spacing)))
    sitk.WriteImage(img, str(path), useCompression=True)


# --------------------------------------------------------------------------------------------- zarr
def _read_zarr(path: Path) -> tuple[np.ndarray, Spacing]:
    import zarr

    if path.is_file():
        if not zipfile.is_zipfile(path):
            raise NeurinoError(f"{path}: not a zip file (a zipped zarr store was expected)")
        store = zarr.storage.ZipStore(path, mode="r")
    else:
        store = zarr.storage.LocalStore(path, read_only=True)
    try:
        node = zarr.open(store=store, mode="r")
        array, scale = _zarr_array(node, path)
        arr = np.asarray(array[...])
        spacing = scale or _attr_spacing(dict(array.attrs)) or (1.0, 1.0, 1.0)
    finally:
        store.close()
    return arr, spacing


def _zarr_array(node, path: Path):
    """The array of a zarr store: the root array, OME-NGFF level 0, or the only array of the group."""
    import zarr

    if isinstance(node, zarr.Array):
        return node, None
    attrs = dict(node.attrs)
    ome = attrs.get("ome", attrs)
    multiscales = ome.get("multiscales")
    if multiscales:
        ds = multiscales[0]["datasets"][0]
        scale = None
        for t in ds.get("coordinateTransformations", []):
            if t.get("type") == "scale":
                scale = tuple(float(s) for s in t["scale"][-3:])
        return node[ds["path"]], scale
    arrays = [a for _, a in node.arrays()]
    if len(arrays) != 1:
        raise NeurinoError(f"{path}: zarr group holds {len(arrays)} arrays and no OME-NGFF 'multiscales'; "
                           "expected exactly one array")
    return arrays[0], _attr_spacing(attrs)


def _attr_spacing(attrs: dict) -> Spacing | None:
    for key in ("spacing", "voxel_size", "resolution"):
        if key in attrs:
            values = attrs[key]
            if isinstance(values, str):
                values = json.loads(values)
            return tuple(float(v) for v in values)[-3:]
    return None


def write_zarr(path: str | os.PathLike, image: np.ndarray, spacing: Spacing = (1.0, 1.0, 1.0),
               zipped: bool | None = None) -> None:
    """Write (z, y, x) to a zarr array (attribute ``spacing`` in (z, y, x) order); ``.zip`` → zipped store."""
    import zarr

    path = Path(path)
    zipped = path.suffix.lower() == ".zip" if zipped is None else zipped
    store = zarr.storage.ZipStore(path, mode="w") if zipped else zarr.storage.LocalStore(path)
    try:
        arr = zarr.create_array(store=store, shape=image.shape, dtype=image.dtype,
                                chunks=tuple(min(64, s) for s in image.shape), overwrite=True,
                                attributes={"spacing": [float(s) for s in spacing]})
        arr[...] = image
    finally:
        store.close()


def write_image(path: str | os.PathLike, image: np.ndarray, spacing: Spacing = (1.0, 1.0, 1.0)) -> None:
    """Write a (z, y, x) stack in the format named by the suffix of ``path`` (spacing is dropped by Vaa3D)."""
    suffix = image_suffix(path)
    if suffix in (".tif", ".tiff"):
        write_tiff(path, image, spacing)
    elif suffix in (".nii", ".nii.gz", ".nrrd", ".mha", ".mhd"):
        write_nifti(path, image, spacing)
    elif suffix in (".v3draw", ".raw"):
        v3d.write_v3draw(path, image)
    elif suffix == ".v3dpbd":
        v3d.write_v3dpbd(path, image)
    elif suffix in (".zarr", ".zarr.zip"):
        write_zarr(path, image, spacing, zipped=suffix == ".zarr.zip")
    else:
        raise NeurinoError(f"{path}: cannot write this image type; use one of {', '.join(IMAGE_SUFFIXES)}")
