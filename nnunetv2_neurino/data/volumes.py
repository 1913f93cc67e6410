"""Read whole volumes — masks, label maps, probability maps — from any format, and find them in folders.

Images (TIFF, NIfTI, v3draw, v3dpbd, zarr) go through :func:`nnunetv2_neurino.data.readers.read_image`;
numpy ``.npy`` files and nnU-Net's ``.npz`` probability exports are read here. :func:`read_volume` gives
what the tracer traces (a probability map's foreground channel), :func:`read_label_volume` what the
metrics score (a 3D label map), :func:`list_cases` the case files of a folder.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from nnunetv2_neurino.data.readers import image_stem, image_suffix, read_image
from nnunetv2_neurino.errors import NeurinoError

__all__ = ["read_volume", "read_label_volume", "load_numpy", "volume_stem", "is_volume_file",
           "foreground_channel", "check_spacing", "same_spacing", "list_cases"]

Spacing = tuple[float, float, float]

VOLUME_SUFFIXES = (".npy", ".npz")


def is_volume_file(path: str | os.PathLike) -> bool:
    """True for files :func:`read_volume` can read (by suffix)."""
    p = Path(path)
    return p.suffix.lower() in VOLUME_SUFFIXES or image_suffix(p) is not None


def volume_stem(path: str | os.PathLike) -> str:
    """Case name of a volume file (``a.nii.gz`` -> ``a``, ``b.npz`` -> ``b``)."""
    p = Path(path)
    return p.stem if p.suffix.lower() in VOLUME_SUFFIXES else image_stem(p)


def foreground_channel(arr: np.ndarray, path: str | os.PathLike = "<array>") -> np.ndarray:
    """(C, Z, Y, X) class probabilities -> (Z, Y, X) foreground probability.

    C = 1: that channel; C = 2 (nnU-Net background / neurite): channel 1; C > 2: 1 - channel 0 (any
    foreground class). A 3D array is returned unchanged.
    """
    if arr.ndim == 3:
        return arr
    if arr.ndim != 4:
        raise NeurinoError(f"{path}: expected (Z, Y, X) or (C, Z, Y, X), got shape {arr.shape}")
    c = arr.shape[0]
    if c == 1:
        return arr[0]
    if c == 2:
        return arr[1]
    return 1.0 - arr[0]


def load_numpy(path: str | os.PathLike) -> np.ndarray:
    """The array of a ``.npy`` file, or of an ``.npz`` file (key ``probabilities`` as nnU-Net's
    ``--save_probabilities`` writes, else its only array); NeurinoError when missing or unreadable."""
    p = Path(path)
    if not p.is_file():
        raise NeurinoError(f"{p}: no such file")
    try:
        data = np.load(p, allow_pickle=False)
    except Exception as e:  # numpy raises several types on corrupt or pickled files
        raise NeurinoError(f"{p}: cannot read ({type(e).__name__}: {e})") from None
    if p.suffix.lower() != ".npz":
        return np.asarray(data)
    with data:
        keys = list(data.keys())
        if "probabilities" in keys:
            return np.asarray(data["probabilities"])
        if len(keys) == 1:
            return np.asarray(data[keys[0]])
    raise NeurinoError(f"{p}: no 'probabilities' array (nnU-Net --save_probabilities) among keys {keys}")


def read_volume(path: str | os.PathLike) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Read a mask, label map or probability map.

    Parameters
    ----------
    path : ``.npy`` (3D, or (C, Z, Y, X) probabilities), nnU-Net ``.npz`` (key ``probabilities``, shape
        (C, Z, Y, X); other single-array ``.npz`` files too), or any image :func:`read_image` reads.

    Returns
    -------
    volume : (Z, Y, X) array; float arrays are probabilities, integer/bool arrays are label maps.
    spacing : (z, y, x) from the file's metadata, (1, 1, 1) for numpy files (nnU-Net keeps spacing in a
        pickle beside the ``.npz``, which is not read: give the spacing to the caller).
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix in VOLUME_SUFFIXES:
        return foreground_channel(load_numpy(p), p), (1.0, 1.0, 1.0)
    arr, spacing = read_image(p, channel=None)
    return foreground_channel(arr, p), spacing


def read_label_volume(path: str | os.PathLike) -> tuple[np.ndarray, Spacing]:
    """Read a 3D label volume to score.

    Parameters
    ----------
    path : ``.npy`` (spacing (1, 1, 1)) or any format :func:`read_image` reads.

    Returns
    -------
    (array (z, y, x), spacing (z, y, x)); a single-channel (1, z, y, x) volume loses its channel axis.

    Raises
    ------
    NeurinoError : missing or unreadable file, or not 3D.
    """
    path = Path(path)
    if path.name.lower().endswith(".npy"):
        arr, spacing = load_numpy(path), (1.0, 1.0, 1.0)
    else:
        arr, spacing = read_image(path)
    arr = np.asarray(arr)
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 3:
        raise NeurinoError(f"{path}: expected a 3D volume (z, y, x), got shape {arr.shape}")
    return arr, tuple(float(s) for s in spacing)  # type: ignore[return-value]


def check_spacing(spacing, name: str = "spacing") -> Spacing:
    """``spacing`` as three finite positive floats (z, y, x); NeurinoError naming ``name`` otherwise."""
    try:
        sp = tuple(float(s) for s in np.asarray(spacing, dtype=np.float64).reshape(-1))
    except (TypeError, ValueError):
        sp = ()
    if len(sp) != 3 or not all(math.isfinite(s) and s > 0 for s in sp):
        raise NeurinoError(f"{name} must be three positive numbers (z, y, x), got {spacing!r}")
    return sp  # type: ignore[return-value]


def same_spacing(a: Spacing, b: Spacing, rtol: float = 1e-4) -> bool:
    """True when two (z, y, x) spacings agree to a relative tolerance."""
    return bool(np.allclose(a, b, rtol=rtol, atol=0))


def list_cases(folder: str | os.PathLike, channel_suffix: str = "") -> dict[str, Path]:
    """Map case name → file for every image or ``.npy`` file in ``folder``.

    Parameters
    ----------
    folder : a folder of ``CASE<channel_suffix>.<ext>`` files (``.nii.gz``, ``.tif``, ``.npy``, ...).
    channel_suffix : e.g. ``"_0000"`` for nnU-Net image folders; files without it are ignored.

    Returns
    -------
    dict sorted by case name. Other files (json, pkl, npz, ...) are ignored.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise NeurinoError(f"{folder}: no such folder")
    cases: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or p.suffix.lower() == ".npz" or not is_volume_file(p):
            continue
        stem = volume_stem(p)
        if channel_suffix:
            if not stem.endswith(channel_suffix):
                continue
            stem = stem[: -len(channel_suffix)]
        if stem in cases:
            raise NeurinoError(f"{folder}: case {stem!r} has two files ({cases[stem].name}, {p.name})")
        cases[stem] = p
    return cases
