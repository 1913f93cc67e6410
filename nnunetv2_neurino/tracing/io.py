"""Volumes the tracer accepts: masks / label maps / probability maps in any readable format.

Images (TIFF, NIfTI, v3draw, v3dpbd, zarr) go through :func:`nnunetv2_neurino.data.readers.read_image`;
numpy ``.npy`` files and nnU-Net's ``.npz`` probability exports are read here.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from nnunetv2_neurino.data.readers import image_stem, image_suffix, read_image
from nnunetv2_neurino.errors import NeurinoError

__all__ = ["read_volume", "volume_stem", "is_volume_file", "foreground_channel"]

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
        pickle beside the ``.npz``, which is not read: pass ``--spacing``).
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix in VOLUME_SUFFIXES:
        if not p.is_file():
            raise NeurinoError(f"{p}: no such file")
        try:
            data = np.load(p, allow_pickle=False)
        except Exception as e:  # numpy raises several types on corrupt files
            raise NeurinoError(f"{p}: cannot read ({type(e).__name__}: {e})") from None
        if suffix == ".npz":
            with data:
                keys = list(data.keys())
                if "probabilities" in keys:
                    arr = data["probabilities"]
                elif len(keys) == 1:
                    arr = data[keys[0]]
                else:
                    raise NeurinoError(f"{p}: no 'probabilities' array (nnU-Net --save_probabilities) among "
                                       f"keys {keys}")
        else:
            arr = data
        return foreground_channel(np.asarray(arr), p), (1.0, 1.0, 1.0)
    arr, spacing = read_image(p, channel=None)
    return foreground_channel(arr, p), spacing
