"""Read a folder of 2D slices (TIFF or PNG, one file per z plane) as one 3D stack.

Microscopes and the DIADEM downloads store stacks as ``1.tif, 2.tif, … 10.tif`` (or zero-padded
``01.tif``). The slices are ordered by the last number in the file name (numerically, so ``10.tif``
follows ``9.tif``); files that are not ``.tif/.tiff/.png`` (``Thumbs.db``, ``.txt`` logs) and hidden files
are ignored. Gaps or repeats in the numbering, and slices whose shape or dtype differ from the first,
are refused with a message naming the slice.

Voxel size: 2D slices store at most the in-plane pixel size (TIFF ``XResolution``/``YResolution``), never
the z step. A resolution tag is used only when its unit is known: ``ResolutionUnit`` centimetre or inch, or
no unit with an ImageJ ``unit=micron`` description (ImageJ's convention). A tag without a unit, or a
density below :data:`MIN_PIXELS_PER_INCH` (a print/screen density such as 72 or 300 dpi, not a
microscope's pixel size), is not a voxel size; such axes, and z, fall back to 1.0 and the report says so.
Every read returns where each spacing value came from (:attr:`SliceStack.spacing_source`), so commands
can print it and users can override it (``--spacing``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnunetv2_neurino.errors import NeurinoError

SLICE_SUFFIXES = (".tif", ".tiff", ".png")
MIN_PIXELS_PER_INCH = 1000.0   # 25.4 µm pixels; coarser "resolutions" are print/screen densities
_MICRON_UNITS = {"micron": 1.0, "microns": 1.0, "um": 1.0, "µm": 1.0, "\\u00b5m": 1.0, "μm": 1.0,
                 "nm": 1e-3, "nanometer": 1e-3, "nanometers": 1e-3, "mm": 1e3, "millimeter": 1e3}
_UNIT_MICRONS = {2: 25400.0, 3: 10000.0}       # TIFF ResolutionUnit: 2 inch, 3 centimetre → µm per unit


@dataclass
class SliceStack:
    """A stack read from a slice folder.

    Attributes
    ----------
    image : (z, y, x) array, or (c, z, y, x) for RGB(A) slices; the slices' dtype.
    spacing : (z, y, x) voxel size in micrometres where known, 1.0 where not (see ``spacing_source``).
    spacing_source : one sentence per axis group saying where the values came from.
    files : the slice files in stack order (index = z).
    """

    image: np.ndarray
    spacing: tuple[float, float, float]
    spacing_source: str
    files: list[Path]

    def describe(self) -> str:
        """One line for the user: folder, slice count, shape, dtype, spacing and its origin."""
        folder = self.files[0].parent
        shape = "x".join(str(s) for s in self.image.shape)
        spacing = ", ".join(f"{s:.4g}" for s in self.spacing)
        return (f"{folder}: {len(self.files)} slices ({self.files[0].name} … {self.files[-1].name}), "
                f"array {shape} {self.image.dtype}; spacing (z, y, x) = ({spacing}): {self.spacing_source}")


def is_slice_folder(path: str | os.PathLike) -> bool:
    """True for a folder that holds at least one ``.tif/.tiff/.png`` file (and is not a zarr store)."""
    path = Path(path)
    if not path.is_dir() or any((path / m).exists() for m in ("zarr.json", ".zarray", ".zgroup")):
        return False
    return any(_is_slice_file(p) for p in path.iterdir())


def _is_slice_file(p: Path) -> bool:
    return p.is_file() and not p.name.startswith(".") and p.suffix.lower() in SLICE_SUFFIXES


def slice_files(folder: str | os.PathLike) -> list[Path]:
    """The slice images of ``folder`` in stack order (by the last number in each name).

    Raises NeurinoError when there is no slice, a name has no number, two names share a number or
    the numbering has a gap (naming the files concerned).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise NeurinoError(f"{folder}: no such folder")
    numbered: dict[int, Path] = {}
    for p in sorted(folder.iterdir()):
        if not _is_slice_file(p):
            continue  # Thumbs.db, acquisition logs, sub-folders: not part of the stack
        digits = re.findall(r"\d+", p.stem)
        if not digits:
            raise NeurinoError(f"{p}: slice file name has no number; slices must be numbered "
                               "(1.tif, 2.tif …)")
        k = int(digits[-1])
        if k in numbered:
            raise NeurinoError(f"{folder}: slices {numbered[k].name} and {p.name} have the same number {k}")
        numbered[k] = p
    if not numbered:
        raise NeurinoError(f"{folder}: no 2D slice images ({', '.join(SLICE_SUFFIXES)}) in this folder")
    order = sorted(numbered)
    missing = sorted(set(range(order[0], order[-1] + 1)) - set(order))
    if missing:
        after = max(k for k in order if k < missing[0])
        raise NeurinoError(f"{folder}: slice number {missing[0]} is missing (after {numbered[after].name}; "
                           f"{len(missing)} number(s) missing in {order[0]}…{order[-1]}); "
                           "a gap would shift every later slice in z")
    return [numbered[k] for k in order]


def _read_slice(path: Path) -> tuple[np.ndarray, dict]:
    """(y, x) or (y, x, c) array of one slice and its resolution metadata."""
    try:
        if path.suffix.lower() == ".png":
            import imageio.v3 as iio

            return np.asarray(iio.imread(path)), {}
        import tifffile

        with tifffile.TiffFile(path) as tif:
            if len(tif.pages) > 1:
                raise NeurinoError(f"{path}: holds {len(tif.pages)} pages; a slice folder needs one 2D "
                                   "image per file (read a multi-page stack as a single file)")
            page = tif.pages[0]
            arr = page.asarray()
            tags = {name: page.tags[name].value for name in ("XResolution", "YResolution", "ResolutionUnit")
                    if name in page.tags}
            tags["imagej"] = tif.imagej_metadata or {}
        return arr, tags
    except NeurinoError:
        raise
    except Exception as e:  # tifffile / imageio raise many types on damaged files
        raise NeurinoError(f"{path}: cannot read slice ({type(e).__name__}: {e})") from None


def _microns_per_pixel(tags: dict, axis: str) -> tuple[float | None, str]:
    """Pixel size in µm along ``axis`` ('X' or 'Y') from TIFF tags, or None with the reason."""
    res = tags.get(f"{axis}Resolution")
    if res is None:
        return None, "no resolution tag"
    num, den = res
    if num <= 0 or den <= 0:
        return None, "resolution tag is zero"
    per_unit = num / den                                      # pixels per unit
    unit_code = int(tags.get("ResolutionUnit", 2))            # TIFF's default unit is the inch
    if unit_code in _UNIT_MICRONS:
        per_inch = per_unit * 25400.0 / _UNIT_MICRONS[unit_code]
        if per_inch < MIN_PIXELS_PER_INCH:
            return None, (f"resolution tag {per_inch:.4g} pixels per inch is a print/screen density, "
                          "not a microscope pixel size")
        unit_name = "inch" if unit_code == 2 else "cm"
        return _UNIT_MICRONS[unit_code] / per_unit, f"{per_unit:.6g} pixels per {unit_name}"
    unit = str(tags.get("imagej", {}).get("unit", "")).strip().lower()
    if unit in _MICRON_UNITS:
        return _MICRON_UNITS[unit] / per_unit, f"{per_unit:.6g} pixels per {unit} (ImageJ unit)"
    return None, "resolution tag has no unit"


def _spacing_from_tags(tags: dict) -> tuple[tuple[float, float, float], str]:
    """(z, y, x) spacing and its origin; unknown axes are 1.0."""
    sy, why_y = _microns_per_pixel(tags, "Y")
    sx, why_x = _microns_per_pixel(tags, "X")
    parts = []
    if sy is not None and sx is not None:
        parts.append(f"y, x from the first slice's TIFF resolution tags ({why_y}) in µm")
    else:
        sy = sx = None
        parts.append(f"y, x unknown ({why_y if sy is None else why_x}; 1.0 used)")
    parts.append("z is not stored in 2D slices (1.0 used)")
    note = "; ".join(parts) + "; pass --spacing Z Y X to set the voxel size"
    return (1.0, sy if sy is not None else 1.0, sx if sx is not None else 1.0), note


def read_slice_folder(folder: str | os.PathLike) -> SliceStack:
    """Read the numbered 2D slices of ``folder`` into one stack.

    Parameters
    ----------
    folder : folder of ``.tif/.tiff/.png`` slices, numbered in their names (other files are ignored).

    Returns
    -------
    SliceStack with ``image`` (z, y, x) — (c, z, y, x) for RGB(A) slices — in the slices' dtype, and the
    ``spacing`` (z, y, x) with its ``spacing_source``.

    Raises
    ------
    NeurinoError naming the slice: unreadable file, gap or repeat in the numbering, shape/dtype mismatch.
    """
    files = slice_files(folder)
    first, tags = _read_slice(files[0])
    if first.ndim not in (2, 3) or (first.ndim == 3 and first.shape[-1] not in (3, 4)):
        raise NeurinoError(f"{files[0]}: slice has shape {first.shape}; expected a 2D image (y, x) "
                           "or RGB(A) (y, x, 3|4)")
    stack = np.empty((len(files), *first.shape), dtype=first.dtype)
    stack[0] = first
    for z, path in enumerate(files[1:], start=1):
        arr, _ = _read_slice(path)
        if arr.shape != first.shape or arr.dtype != first.dtype:
            raise NeurinoError(f"{path}: slice is {arr.shape} {arr.dtype} but {files[0].name} is "
                               f"{first.shape} {first.dtype}; every slice of a stack must match")
        stack[z] = arr
    if stack.ndim == 4:                                       # (z, y, x, c) → (c, z, y, x)
        stack = np.moveaxis(stack, -1, 0)
    spacing, source = _spacing_from_tags(tags)
    return SliceStack(stack, spacing, source, files)
