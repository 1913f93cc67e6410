"""Per-format openers behind :func:`nnunetv2_neurino.large.readers.open_volume` (zarr / OME-Zarr, IMS / HDF5,
TIFF, TIFF series). Each returns a LazyVolume whose array may still be N-D; open_volume checks 3D."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nnunetv2_neurino.data.readers import _attr_spacing, _tiff_spacing
from nnunetv2_neurino.errors import NeurinoError
from nnunetv2_neurino.large.readers import ArrayView, LazyVolume, _sorted_tiffs


def _level_index(path, level: int | None, n_levels: int) -> int:
    level = 0 if level is None else int(level)
    if level >= n_levels:
        raise NeurinoError(f"{path}: level {level} does not exist (the file has {n_levels} level"
                           f"{'s' if n_levels != 1 else ''}: 0..{n_levels - 1})")
    return level


def _to_3d(arr, names: list[str], channel: int | None, path, level: int):
    """A [z, y, x] :class:`ArrayView` of ``arr`` whose axes are called ``names`` (t, c, z, y, x, or '?' =
    unknown); read errors name ``path``."""
    if len(arr.shape) == 3 and channel is None:
        return ArrayView(arr, {}, tuple(arr.shape), source=path)
    if len(names) != len(arr.shape) or [n for n in names if n in "zyx"] != ["z", "y", "x"]:
        raise NeurinoError(f"{path}: level {level} has shape {tuple(arr.shape)} with axes {names}; a 3D "
                           "(z, y, x) volume is expected")
    fixed = {}
    for a, (name, size) in enumerate(zip(names, arr.shape)):
        if name in "zyx":
            continue
        if name == "c" and (channel is not None or size == 1):
            ch = 0 if channel is None else int(channel)
            if not 0 <= ch < size:
                raise NeurinoError(f"{path}: channel {ch} does not exist (the volume has {size} channels)")
            fixed[a] = ch
        elif size == 1:
            fixed[a] = 0
        elif name == "c":
            raise NeurinoError(f"{path}: the volume has {size} channels; pick one (channel option)")
        else:
            raise NeurinoError(f"{path}: axis '{name}' has size {size}; a single 3D (z, y, x) volume is "
                               "expected (one time point, one channel)")
    if channel is not None and not any(names[a] == "c" for a in fixed):
        raise NeurinoError(f"{path}: a channel was requested but the volume has no channel axis")
    kept = [s for a, s in enumerate(arr.shape) if a not in fixed]
    return ArrayView(arr, fixed, tuple(kept), source=path)


def _plain_names(ndim: int, channel: int | None) -> list[str]:
    """Axis names of an array without metadata: the last three are z, y, x; one more in front is the
    channel when a channel is asked for."""
    lead = ["?"] * max(0, ndim - 3)
    if channel is not None and lead:
        lead[-1] = "c"
    return lead + ["z", "y", "x"][-min(ndim, 3):]


# ----------------------------------------------------------------------------------------------- zarr
def open_zarr(path: Path, level, channel, dataset) -> LazyVolume:
    import zarr

    if path.name.lower().endswith(".zip"):
        store = zarr.storage.ZipStore(path, mode="r")
    else:
        store = zarr.storage.LocalStore(path, read_only=True)
    try:
        node = zarr.open(store=store, mode="r")
    except Exception as exc:       # zarr raises several types for damaged metadata
        raise NeurinoError(f"{path}: cannot open as zarr ({exc})") from exc
    if isinstance(node, zarr.Array):
        return _plain_zarr(path, node, level, channel)
    attrs = node.attrs.asdict()
    ome = attrs["ome"] if isinstance(attrs.get("ome"), dict) else attrs
    multiscales = ome.get("multiscales")
    if not multiscales:
        arrays = dict(node.arrays())
        if dataset is not None:
            if dataset not in arrays:
                raise NeurinoError(f"{path}: no array '{dataset}' (arrays: {sorted(arrays)})")
            return _plain_zarr(path, arrays[dataset], level, channel)
        if len(arrays) != 1:
            raise NeurinoError(f"{path}: zarr group holds {len(arrays)} arrays ({sorted(arrays)}) and no "
                               "OME-NGFF 'multiscales'; expected one array")
        return _plain_zarr(path, next(iter(arrays.values())), level, channel)
    ms = multiscales[0]
    version = str(ome.get("version", ms.get("version", "")))
    datasets = ms.get("datasets") or []
    level = _level_index(path, level, len(datasets))
    axes = ms.get("axes")
    ndim = len(node[datasets[0]["path"]].shape)
    if axes is None:
        names = _plain_names(ndim, channel)
    else:
        names = [(a["name"] if isinstance(a, dict) else str(a)).lower() for a in axes]
    spatial = [i for i, n in enumerate(names) if n in ("z", "y", "x")]
    global_scale = _scale(ms.get("coordinateTransformations"), ndim)
    levels = []
    for ds in datasets:
        scale = _scale(ds.get("coordinateTransformations"), ndim)
        shape = node[ds["path"]].shape
        spacing = None
        if scale is not None and len(spatial) == 3:
            full = scale * (global_scale if global_scale is not None else 1.0)
            spacing = tuple(float(full[i]) for i in spatial)
        levels.append((tuple(int(shape[i]) for i in spatial) if len(spatial) == 3 else tuple(shape), spacing))
    arr = node[datasets[level]["path"]]
    view = _to_3d(arr, names, channel, path, level)
    return LazyVolume(array=view, path=path, format="ome-zarr", level=level, levels=levels,
                      spacing=levels[level][1], attrs={"ngff_version": version, "multiscales": ms},
                      _keepalive=store)


def _scale(transforms, ndim: int) -> np.ndarray | None:
    for t in transforms or []:
        if t.get("type") == "scale" and "scale" in t:
            s = np.asarray(t["scale"], float)
            return s if s.size == ndim else None
    return None


def _plain_zarr(path: Path, arr, level, channel) -> LazyVolume:
    _level_index(path, level, 1)
    attrs = arr.attrs.asdict()
    spacing = _attr_spacing(attrs)
    view = _to_3d(arr, _plain_names(len(arr.shape), channel), channel, path, 0)
    spacing = tuple(spacing) if spacing is not None and len(spacing) == 3 else None
    return LazyVolume(array=view, path=path, format="zarr", level=0, levels=[(tuple(view.shape), spacing)],
                      spacing=spacing, attrs=attrs)


# ------------------------------------------------------------------------------------------ IMS / HDF5
def _ims_value(attrs, key: str) -> str | None:
    """IMS stores attribute values as arrays of single characters."""
    if key not in attrs:
        return None
    value = attrs[key]
    if isinstance(value, bytes):
        return value.decode()
    return b"".join(np.asarray(value).ravel().tolist()).decode() if np.asarray(value).dtype.kind == "S" \
        else str(np.asarray(value).ravel()[0])


def open_hdf5(path: Path, level, channel, dataset) -> LazyVolume:
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise NeurinoError(f"{path}: cannot open as HDF5 ({exc})") from exc
    if "DataSet" in f and dataset is None:
        return _open_ims(path, f, level, channel)
    if dataset is not None:
        if dataset not in f or not isinstance(f[dataset], h5py.Dataset):
            raise NeurinoError(f"{path}: no HDF5 dataset '{dataset}'")
        ds = f[dataset]
    else:
        found = []
        f.visititems(lambda name, obj: found.append(name) if isinstance(obj, h5py.Dataset)
                     and obj.ndim >= 3 else None)
        if len(found) != 1:
            raise NeurinoError(f"{path}: {len(found)} datasets of 3 or more dimensions ({found}); "
                               "name the one to use (dataset option)")
        ds = f[found[0]]
    _level_index(path, level, 1)
    spacing = None
    if "element_size_um" in ds.attrs:        # the ilastik / Fiji HDF5 convention, (z, y, x)
        spacing = tuple(float(v) for v in np.asarray(ds.attrs["element_size_um"]).ravel()[-3:])
    else:
        spacing = _attr_spacing(dict(ds.attrs))
    view = _to_3d(ds, _plain_names(ds.ndim, channel), channel, path, 0)
    return LazyVolume(array=view, path=path, format="hdf5", level=0, levels=[(tuple(view.shape), spacing)],
                      spacing=spacing, attrs={"dataset": ds.name}, _keepalive=f)


def _open_ims(path: Path, f, level, channel) -> LazyVolume:
    """Imaris: DataSet/ResolutionLevel L/TimePoint 0/Channel C/Data, padded to whole chunks; the true
    size is the channel group's ImageSizeZ/Y/X, the physical extent DataSetInfo/Image ExtMin/ExtMax."""
    names = sorted((k for k in f["DataSet"] if k.startswith("ResolutionLevel ")),
                   key=lambda k: int(k.split()[-1]))
    level = _level_index(path, level, len(names))
    t0 = f[f"DataSet/{names[0]}/TimePoint 0"]
    n_channels = sum(1 for k in t0 if k.startswith("Channel "))
    if channel is None and n_channels > 1:
        raise NeurinoError(f"{path}: the volume has {n_channels} channels; pick one (channel option)")
    ch = 0 if channel is None else int(channel)
    if not 0 <= ch < n_channels:
        raise NeurinoError(f"{path}: channel {ch} does not exist (the volume has {n_channels} channels)")
    info = f["DataSetInfo/Image"].attrs if "DataSetInfo/Image" in f else {}
    try:
        extent = np.array([float(_ims_value(info, f"ExtMax{i}")) - float(_ims_value(info, f"ExtMin{i}"))
                           for i in (2, 1, 0)])          # Imaris numbers axes x=0, y=1, z=2
    except (TypeError, ValueError):
        extent = None
    levels = []
    for name in names:
        group = f[f"DataSet/{name}/TimePoint 0/Channel {ch}"]
        data = group["Data"]
        size = [_ims_value(group.attrs, f"ImageSize{a}") for a in "ZYX"]
        shape = tuple(int(s) for s in size) if all(s is not None for s in size) else tuple(data.shape)
        spacing = tuple((extent / np.asarray(shape, float)).tolist()) if extent is not None else None
        levels.append((shape, spacing))
    data = f[f"DataSet/{names[level]}/TimePoint 0/Channel {ch}/Data"]
    view = ArrayView(data, {}, levels[level][0], source=path)
    return LazyVolume(array=view, path=path, format="ims", level=level, levels=levels,
                      spacing=levels[level][1], attrs={"channels": n_channels}, _keepalive=f)


# ----------------------------------------------------------------------------------------------- TIFF
_TIFF_AXES = {"Q": "z", "I": "z", "Z": "z", "Y": "y", "X": "x", "S": "c", "C": "c", "T": "t"}


def open_tiff(path: Path, level, channel, dataset) -> LazyVolume:
    import tifffile
    import zarr

    try:
        tif = tifffile.TiffFile(path)
    except Exception as exc:     # tifffile raises its own TiffFileError and ValueErrors
        raise NeurinoError(f"{path}: cannot open as TIFF ({exc})") from exc
    series = tif.series[0]
    pyramid = series.levels
    level = _level_index(path, level, len(pyramid))
    names = [_TIFF_AXES.get(a, a.lower()) for a in series.axes.upper()]
    if names.count("z") == 0:
        raise NeurinoError(f"{path}: TIFF series has axes {series.axes!r} and shape {series.shape}; a 3D "
                           "(z, y, x) stack is expected")
    spacing0 = np.asarray(_tiff_spacing(tif), float)
    levels = []
    for lv in pyramid:
        shape = tuple(int(lv.shape[names.index(a)]) for a in "zyx")
        ratio = np.asarray(levels[0][0] if levels else shape, float) / np.asarray(shape, float)
        levels.append((shape, tuple((spacing0 * ratio).tolist())))
    store = tif.aszarr(series=0, level=level)
    arr = zarr.open(store, mode="r")
    view = _to_3d(arr, names, channel, path, level)
    return LazyVolume(array=view, path=path, format="tiff", level=level, levels=levels,
                      spacing=levels[level][1], attrs={"axes": series.axes}, _keepalive=(tif, store))


def open_tiff_series(path, level, channel, dataset) -> LazyVolume:
    import tifffile
    import zarr

    files = _sorted_tiffs(path)
    _level_index(path, level, 1)
    seq = tifffile.TiffSequence(files)
    store = seq.aszarr()
    arr = zarr.open(store, mode="r")
    with tifffile.TiffFile(files[0]) as tif:
        sy, sx = _tiff_spacing(tif)[1:]
    # one file per z slice; the z step is not in 2D files (1.0 unless the caller knows better)
    names = ["z"] + ["?"] * (len(arr.shape) - 3) + ["y", "x"] if len(arr.shape) >= 3 else ["z"]
    view = _to_3d(arr, names, channel, path, 0)
    spacing = (1.0, float(sy), float(sx))
    return LazyVolume(array=view, path=Path(files[0]).parent if not Path(str(path)).is_dir() else Path(path),
                      format="tiff-series", level=0, levels=[(tuple(view.shape), spacing)], spacing=spacing,
                      attrs={"files": len(files)}, _keepalive=(seq, store))
