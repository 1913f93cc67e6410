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


def foreground(arr: np.ndarray, path: str | os.PathLike, threshold: float | None = None,
               label: int | None = None) -> np.ndarray:
    """The boolean foreground of a volume to be scored, refusing what would be scored silently wrong.

    Parameters
    ----------
    arr : (z, y, x) mask, label map or probability map as read by :func:`read_label_volume`.
    path : its file, named in the messages.
    threshold : float volumes: foreground = value > ``threshold``. Required when the volume holds
        non-integer values (a probability map), which would otherwise count every non-zero voxel.
    label : foreground = value == ``label`` (label maps); default every non-zero value.

    Returns
    -------
    bool array (z, y, x).

    Raises
    ------
    NeurinoError : NaN or infinite values; non-integer values without ``threshold``.
    """
    if np.issubdtype(arr.dtype, np.floating):
        bad = ~np.isfinite(arr)
        if bad.any():
            raise NeurinoError(f"{path}: {int(bad.sum())} voxel(s) are NaN or infinite; a mask to score must "
                               "hold finite values")
        if threshold is not None:
            return arr > threshold
        if not np.array_equal(arr, np.round(arr)):
            raise NeurinoError(f"{path}: holds non-integer values ({float(arr.min()):g} .. "
                               f"{float(arr.max()):g}), like a probability map; pass --threshold T to score "
                               "value > T as foreground")
    if label is not None:
        return arr == label
    return arr != 0
