"""Read label volumes for scoring: NIfTI / TIFF / zarr / Vaa3D via ``data.readers``, plus ``.npy``."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from nnunetv2_neurino.errors import NeurinoError

Spacing = tuple[float, float, float]


def read_label_volume(path: str | os.PathLike) -> tuple[np.ndarray, Spacing]:
    """Read a 3D label volume.

    Parameters
    ----------
    path : ``.npy`` (spacing (1, 1, 1)) or any format ``nnunetv2_neurino.data.readers.read_image`` reads.

    Returns
    -------
    (array (z, y, x), spacing (z, y, x)).

    Raises
    ------
    NeurinoError : missing or unreadable file, or not 3D.
    """
    path = Path(path)
    if path.name.lower().endswith(".npy"):
        if not path.is_file():
            raise NeurinoError(f"{path}: no such file")
        try:
            arr = np.load(path, allow_pickle=False)
        except Exception as e:  # corrupt or pickled content
            raise NeurinoError(f"{path}: cannot read .npy ({type(e).__name__}: {e})") from None
        spacing: Spacing = (1.0, 1.0, 1.0)
    else:
        from nnunetv2_neurino.data.readers import read_image

        arr, spacing = read_image(path)
    arr = np.asarray(arr)
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 3:
        raise NeurinoError(f"{path}: expected a 3D volume (z, y, x), got shape {arr.shape}")
    return arr, tuple(float(s) for s in spacing)  # type: ignore[return-value]


def same_spacing(a: Spacing, b: Spacing, rtol: float = 1e-4) -> bool:
    """True when two (z, y, x) spacings agree to a relative tolerance."""
    return bool(np.allclose(a, b, rtol=rtol, atol=0))
