"""The OME-Zarr written by ``neurino predict-large`` (OME-NGFF 0.4, zarr format 2).

Layout of ``OUT.ome.zarr``::

    .zattrs                      {"neurino": {settings, model, statistics, lattice}, "neurino_complete": …}
    labels/.zattrs               {"labels": ["neurites"]}
    labels/neurites/.zattrs      NGFF 0.4 "multiscales" + "image-label"
    labels/neurites/0, 1, …      uint8 mask (0 background, 1 … foreground class); level L+1 is a 2× max-pool
                                 of level L so thin neurites stay visible at coarse levels
    probabilities/.zattrs        NGFF 0.4 "multiscales" (only with --save-probabilities)
    probabilities/0              uint8 foreground probability, round(p × 255)
    _neurino_blocks/Z_Y_X.done   one marker per finished block (what --resume skips)

The full-resolution arrays are chunked by the block core, so each block task writes whole chunks and no two
tasks write one chunk. ``neurino_complete`` is set to true only after the last block and the pyramid; an
interrupted run keeps it false. The input image itself is not copied (the root has no image multiscales).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

NGFF_VERSION = "0.4"
DONE_DIR = "_neurino_blocks"
MASK_PATH = "labels/neurites"
PROB_PATH = "probabilities"


def multiscales(name: str, spacing: tuple[float, float, float], n_levels: int, unit: str | None) -> list:
    """NGFF 0.4 ``multiscales`` for ``n_levels`` levels, level L scaled by 2^L on every axis (z, y, x)."""
    axes = [{"name": a, "type": "space", **({"unit": unit} if unit else {})} for a in "zyx"]
    datasets = [{"path": str(level), "coordinateTransformations": [
        {"type": "scale", "scale": [float(s) * 2 ** level for s in spacing]}]} for level in range(n_levels)]
    return [{"version": NGFF_VERSION, "name": name, "axes": axes, "datasets": datasets}]


def create_layout(out: Path, shape: tuple[int, int, int], core: tuple[int, int, int],
                  spacing: tuple[float, float, float], save_probabilities: bool, attrs: dict,
                  unit: str | None = "micrometer") -> None:
    """Create the groups and the empty full-resolution arrays; ``neurino_complete`` false."""
    import zarr

    root = zarr.open_group(out, mode="w", zarr_format=2)
    root.attrs.update({"neurino": attrs, "neurino_complete": False})
    labels = root.create_group("labels")
    labels.attrs["labels"] = ["neurites"]
    mask = labels.create_group("neurites")
    mask.attrs.update({"multiscales": multiscales("neurites", spacing, 1, unit),
                       "image-label": {"version": NGFF_VERSION, "source": {"image": "../../"}}})
    mask.create_array("0", shape=shape, chunks=core, dtype="uint8", fill_value=0)
    if save_probabilities:
        prob = root.create_group(PROB_PATH)
        prob.attrs["multiscales"] = multiscales("foreground probability x255", spacing, 1, unit)
        prob.create_array("0", shape=shape, chunks=core, dtype="uint8", fill_value=0)
    (out / DONE_DIR).mkdir()


def marker_path(out: Path, index: tuple[int, int, int]) -> Path:
    """The 'block done' marker of block ``index``."""
    return out / DONE_DIR / ("_".join(str(i) for i in index) + ".done")


def write_mask_pyramid(out: Path, spacing: tuple[float, float, float], min_size: int = 16,
                       unit: str | None = "micrometer") -> int:
    """Add 2× max-pooled levels to ``labels/neurites`` until an axis would drop below ``min_size``.

    Each level is computed chunk by chunk with dask.array from the level above (never the whole array);
    returns the number of levels, which the multiscales attribute then lists.
    """
    import dask.array as da
    import zarr

    group = zarr.open_group(out / MASK_PATH, mode="r+", zarr_format=2)
    level = 0
    while True:
        src = da.from_zarr(group[str(level)])
        if min(src.shape) // 2 < min_size:
            break
        src = src.rechunk(tuple(max(2, c - c % 2) for c in group[str(level)].chunks))
        pooled = da.coarsen(np.max, src, {0: 2, 1: 2, 2: 2}, trim_excess=True)
        dst = group.create_array(str(level + 1), shape=pooled.shape, dtype="uint8", fill_value=0,
                                 chunks=tuple(max(1, c // 2) for c in group[str(level)].chunks),
                                 overwrite=True)
        da.store(pooled.rechunk(dst.chunks), dst, lock=False, scheduler="synchronous")
        level += 1
    group.attrs["multiscales"] = multiscales("neurites", spacing, level + 1, unit)
    return level + 1


def mark_complete(out: Path) -> None:
    """Set ``neurino_complete`` (the attribute written last)."""
    import zarr

    zarr.open_group(out, mode="r+", zarr_format=2).attrs["neurino_complete"] = True
