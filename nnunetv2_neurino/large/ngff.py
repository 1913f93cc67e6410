"""Write OME-Zarr (OME-NGFF 0.4 on zarr v2, 0.5 on zarr v3): multiscale images, label images
(``labels/NAME``) and their pyramids, chunk-aligned so block-wise writers never share a chunk.

Arrays are [z, y, x]; spacing (z, y, x) in micrometres (the axes' ``unit``). Level ``l`` of a pyramid has
spacing ``spacing · factors**l`` and a translation of half the enlarged voxel minus half the original one
(voxel centres stay where they are). Images are reduced by the mean, labels by the maximum (thin neurites
stay visible at coarse levels).

Typical block-wise use::

    root = create_ngff_root(path, version="0.4")
    levels = add_multiscale(root, shape, "uint16", spacing, chunks, n_levels=3)
    ... write levels[0] block by block ...
    build_pyramid(levels, method="mean")
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from itertools import product

import numpy as np

from nnunetv2_neurino.errors import NeurinoError

__all__ = ["create_ngff_root", "add_multiscale", "add_label", "level_shapes", "downsample",
           "pyramid_regions", "write_pyramid_region", "build_pyramid", "write_ome_zarr", "ngff_version"]

AXES = ("z", "y", "x")


def ngff_version(group) -> str:
    """``"0.4"`` for a zarr v2 group, ``"0.5"`` for zarr v3."""
    return "0.4" if group.metadata.zarr_format == 2 else "0.5"


def create_ngff_root(path: str | os.PathLike, version: str = "0.4", attributes: dict | None = None,
                     overwrite: bool = False):
    """An empty OME-Zarr root group: zarr v2 for NGFF ``"0.4"``, zarr v3 for ``"0.5"``; ``attributes``
    are stored as the group's attributes (beside the NGFF metadata added later)."""
    import zarr

    if version not in ("0.4", "0.5"):
        raise NeurinoError(f"OME-NGFF version must be '0.4' or '0.5', got {version!r}")
    group = zarr.open_group(str(path), mode="w" if overwrite else "w-",
                            zarr_format=2 if version == "0.4" else 3)
    if attributes:
        group.attrs.update(attributes)
    return group


def level_shapes(shape: Sequence[int], n_levels: int, factors: Sequence[int] = (2, 2, 2)
                 ) -> list[tuple[int, int, int]]:
    """(Z, Y, X) of each pyramid level: level l+1 = ceil(level l / factors)."""
    shapes = [tuple(int(s) for s in shape)]
    for _ in range(1, n_levels):
        shapes.append(tuple(-(-s // int(f)) for s, f in zip(shapes[-1], factors)))
    return shapes


def _multiscales(name: str, spacing, n_levels: int, factors, unit: str, version: str, method: str) -> dict:
    spacing = np.asarray(spacing, float)
    datasets = []
    for level in range(n_levels):
        step = np.asarray(factors, float) ** level
        scale = spacing * step
        shift = 0.5 * (scale - spacing)
        transforms = [{"type": "scale", "scale": scale.tolist()}]
        if level:
            transforms.append({"type": "translation", "translation": shift.tolist()})
        datasets.append({"path": str(level), "coordinateTransformations": transforms})
    ms = {"name": name, "axes": [{"name": a, "type": "space", "unit": unit} for a in AXES],
          "datasets": datasets, "type": method,
          "metadata": {"method": f"{method} over {'x'.join(str(int(f)) for f in factors)} blocks"}}
    if version == "0.4":
        ms["version"] = "0.4"
    return ms


def add_multiscale(group, shape: Sequence[int], dtype, spacing, chunks: Sequence[int], n_levels: int = 1,
                   factors: Sequence[int] = (2, 2, 2), name: str = "image", unit: str = "micrometer",
                   method: str = "mean", fill_value=0, attributes: dict | None = None) -> list:
    """Create the (empty) arrays ``0 .. n_levels-1`` of a multiscale image in ``group`` and its NGFF
    ``multiscales`` metadata.

    Parameters
    ----------
    group : a zarr group from :func:`create_ngff_root` (or a subgroup of it).
    shape : (Z, Y, X) of level 0; dtype : numpy dtype; spacing : (z, y, x) of level 0 in ``unit``.
    chunks : (z, y, x) chunk size of every level (clipped to the level's shape).
    n_levels, factors : pyramid depth and per-axis reduction factor between levels.
    method : ``"mean"`` (images) or ``"max"`` (labels), recorded in the metadata.
    attributes : extra group attributes.

    Returns
    -------
    list of zarr.Array, one per level.
    """
    version = ngff_version(group)
    if len(shape) != 3 or len(spacing) != 3 or len(chunks) != 3:
        raise NeurinoError(f"{name}: shape, spacing and chunks must have 3 entries (z, y, x)")
    arrays = []
    for level, lshape in enumerate(level_shapes(shape, n_levels, factors)):
        lchunks = tuple(max(1, min(int(c), s)) for c, s in zip(chunks, lshape))
        extra = {"chunk_key_encoding": {"name": "v2", "separator": "/"}} if version == "0.4" else \
            {"dimension_names": list(AXES)}
        arrays.append(group.create_array(str(level), shape=lshape, dtype=dtype, chunks=lchunks,
                                         fill_value=fill_value, overwrite=True, **extra))
    ms = _multiscales(name, spacing, n_levels, factors, unit, version, method)
    attrs = dict(attributes or {})
    if version == "0.4":
        attrs["multiscales"] = [ms]
    else:
        ome = dict(group.attrs.get("ome", {}))
        ome.update({"version": "0.5", "multiscales": [ms]})
        attrs["ome"] = ome
    group.attrs.update(attrs)
    return arrays


def add_label(root, name: str, shape: Sequence[int], dtype, spacing, chunks: Sequence[int], n_levels: int = 1,
              factors: Sequence[int] = (2, 2, 2), colors: dict[int, Sequence[int]] | None = None,
              unit: str = "micrometer", attributes: dict | None = None) -> list:
    """A label image ``labels/NAME`` of the image at ``root`` (max-reduced pyramid), registered in the
    ``labels`` group's list. Same parameters as :func:`add_multiscale`; ``colors`` maps a label value to
    RGBA (0-255). Returns its arrays, one per level."""
    version = ngff_version(root)
    labels = root.require_group("labels")
    group = labels.create_group(name, overwrite=True)
    arrays = add_multiscale(group, shape, dtype, spacing, chunks, n_levels, factors, name=name, unit=unit,
                            method="max", attributes=attributes)
    image_label: dict = {"source": {"image": "../../"}}
    if colors:
        image_label["colors"] = [{"label-value": int(k), "rgba": [int(c) for c in v]}
                                 for k, v in colors.items()]
    if version == "0.4":
        names = list(labels.attrs.get("labels", []))
        labels.attrs["labels"] = names + [name] if name not in names else names
        group.attrs["image-label"] = {"version": "0.4", **image_label}
    else:
        ome = dict(labels.attrs.get("ome", {}))
        names = list(ome.get("labels", []))
        ome.update({"version": "0.5", "labels": names + [name] if name not in names else names})
        labels.attrs["ome"] = ome
        gome = dict(group.attrs["ome"])
        gome["image-label"] = image_label
        group.attrs["ome"] = gome
    return arrays


def downsample(block: np.ndarray, factors: Sequence[int], method: str = "mean") -> np.ndarray:
    """Reduce (z, y, x) by ``factors``: mean (rounded back to an integer dtype) or max over each
    ``factors`` box; a partial box at the far faces is padded by repeating the edge voxel (so it reduces
    only real voxels). Returns shape ceil(block.shape / factors), the block's dtype."""
    f = [int(x) for x in factors]
    pad = [(0, (-s) % k) for s, k in zip(block.shape, f)]
    if any(p[1] for p in pad):
        block = np.pad(block, pad, mode="edge")
    z, y, x = (s // k for s, k in zip(block.shape, f))
    boxes = block.reshape(z, f[0], y, f[1], x, f[2])
    if method == "max":
        return boxes.max(axis=(1, 3, 5))
    if method != "mean":
        raise NeurinoError(f"downsampling method must be 'mean' or 'max', got {method!r}")
    out = boxes.mean(axis=(1, 3, 5), dtype=np.float64)
    if np.issubdtype(block.dtype, np.integer):
        out = np.rint(out)
    return out.astype(block.dtype)


def pyramid_regions(shape: Sequence[int], chunks: Sequence[int], block: Sequence[int] | None = None
                    ) -> Iterator[tuple[slice, slice, slice]]:
    """Chunk-aligned regions tiling an array of ``shape``: ``block`` (a multiple of ``chunks``; default
    one chunk), so each region writes whole chunks and no two regions share one."""
    block = chunks if block is None else block
    if any(int(b) % int(c) for b, c in zip(block, chunks)):
        raise NeurinoError(f"block {tuple(block)} is not a multiple of the chunks {tuple(chunks)}")
    starts = [range(0, int(s), int(b)) for s, b in zip(shape, block)]
    for lo in product(*starts):
        yield tuple(slice(a, min(a + int(b), int(s))) for a, b, s in zip(lo, block, shape))


def write_pyramid_region(src, dst, region: tuple[slice, slice, slice], factors: Sequence[int],
                         method: str) -> None:
    """Fill ``dst[region]`` (level l+1) from the matching region of ``src`` (level l)."""
    f = [int(x) for x in factors]
    src_region = tuple(slice(r.start * k, min(r.stop * k, s)) for r, k, s in zip(region, f, src.shape))
    dst[region] = downsample(np.asarray(src[src_region]), f, method)


def build_pyramid(arrays: Sequence, factors: Sequence[int] = (2, 2, 2), method: str = "mean",
                  block: Sequence[int] | None = None, progress: bool = False) -> None:
    """Fill levels 1.. of ``arrays`` from level 0, region by region (memory bounded by ``block``·factors)."""
    from tqdm import tqdm

    for src, dst in zip(arrays[:-1], arrays[1:]):
        regions = list(pyramid_regions(dst.shape, dst.chunks, block))
        for region in tqdm(regions, desc=f"pyramid level {arrays.index(dst)}", disable=not progress,
                           leave=False):
            write_pyramid_region(src, dst, region, factors, method)


def write_ome_zarr(path: str | os.PathLike, image: np.ndarray | None, spacing, chunks: Sequence[int],
                   n_levels: int = 1, version: str = "0.4", labels: dict[str, np.ndarray] | None = None,
                   factors: Sequence[int] = (2, 2, 2), overwrite: bool = False,
                   attributes: dict | None = None):
    """Write an in-memory (z, y, x) ``image`` (None = labels only) and optional label images as an
    OME-Zarr with ``n_levels`` pyramid levels. Returns the root zarr group."""
    root = create_ngff_root(path, version, attributes=attributes, overwrite=overwrite)
    if image is not None:
        arrays = add_multiscale(root, image.shape, image.dtype, spacing, chunks, n_levels, factors)
        arrays[0][...] = image
        build_pyramid(arrays, factors, "mean")
    for name, label in (labels or {}).items():
        arrays = add_label(root, name, label.shape, label.dtype, spacing, chunks, n_levels, factors)
        arrays[0][...] = label
        build_pyramid(arrays, factors, "max")
    return root
