"""Trace volume files: one file into one SWC forest, or a folder of cases into a folder of SWCs.

A folder may be an nnU-Net prediction folder, which holds ``CASE.nii.gz`` and, with
``--save_probabilities``, ``CASE.npz``: one file per case is traced, the segmentation unless
``use_probabilities``. One bad case (unreadable file, tracer error) does not stop the others.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nnunetv2_neurino.errors import NeurinoError
from nnunetv2_neurino.swc import SWCTree
from nnunetv2_neurino.tracing.registry import BUILTIN, MIN_COMPONENT_SIZE, check_tracer, trace_volume

__all__ = ["TraceSettings", "FolderResult", "check_root_inside", "trace_file", "empty_reason", "folder_cases",
           "trace_folder"]


@dataclass(frozen=True)
class TraceSettings:
    """How to trace: the keyword arguments of :func:`~nnunetv2_neurino.tracing.registry.trace_volume`, plus
    ``spacing`` (z, y, x; None = from the file)."""

    tracer: str = BUILTIN
    threshold: float = 0.5
    min_component_size: int = MIN_COMPONENT_SIZE
    spacing: Sequence[float] | None = None
    root: Sequence[float] | None = None
    root_rule: str = "radius"
    prune_length: float = 0.0
    resample_step: int = 1
    length_threshold: float = 1
    background_threshold: float | None = None

    def check(self) -> None:
        """NeurinoError naming the first setting out of range."""
        check_tracer(self.tracer)
        if self.resample_step < 1:
            raise NeurinoError(f"resample_step must be >= 1, got {self.resample_step}")
        if self.prune_length < 0:
            raise NeurinoError(f"prune_length must be >= 0, got {self.prune_length}")
        if not 0 <= self.threshold < 1:
            raise NeurinoError(f"threshold must be a probability in [0, 1), got {self.threshold}")
        if self.min_component_size < 0:
            raise NeurinoError(f"min_component_size must be >= 0 voxels, got {self.min_component_size}")

    def header(self, path: str | os.PathLike) -> str:
        """SWC header lines recording where a tree came from and how it was traced."""
        return (f"traced by neurino trace ({self.tracer}) from {Path(path).name}\n"
                f"threshold={self.threshold} min_size={self.min_component_size} spacing={self.spacing} "
                f"root={self.root} root_rule={self.root_rule} prune={self.prune_length} "
                f"step={self.resample_step}\n"
                "coordinates: 0-based voxels, x = last array axis")


def check_root_inside(root: Sequence[float], shape: tuple[int, ...], path: str | os.PathLike) -> None:
    """``root`` (x, y, z voxels, x = last axis) must lie inside the (z, y, x) volume ``shape`` of ``path``."""
    limits = (shape[2], shape[1], shape[0])
    if not all(-0.5 <= float(c) <= n - 0.5 for c, n in zip(root, limits)):
        raise NeurinoError(f"root {' '.join(f'{c:g}' for c in root)} (x y z) lies outside {path} "
                           f"(x 0..{limits[0] - 1}, y 0..{limits[1] - 1}, z 0..{limits[2] - 1})")


def trace_file(path: str | os.PathLike, settings: TraceSettings) -> SWCTree:
    """Read a volume file (:func:`~nnunetv2_neurino.data.volumes.read_volume`) and trace it."""
    from nnunetv2_neurino.data.volumes import read_volume

    volume, spacing = read_volume(path)
    if settings.root is not None:
        check_root_inside(settings.root, volume.shape, path)
    return trace_volume(volume, settings.spacing or spacing, settings.tracer, threshold=settings.threshold,
                        min_component_size=settings.min_component_size, root=settings.root,
                        root_rule=settings.root_rule, prune_length=settings.prune_length,
                        resample_step=settings.resample_step, length_threshold=settings.length_threshold,
                        background_threshold=settings.background_threshold)


def empty_reason(path: str | os.PathLike, settings: TraceSettings,
                 size_name: str = "min_component_size") -> str:
    """Why tracing ``path`` gave no node: no foreground, or every component below the minimum size.

    ``size_name`` is how the minimum size is called in the message (a command passes its flag).
    """
    import cc3d

    from nnunetv2_neurino.data.volumes import read_volume

    volume, _ = read_volume(path)
    is_prob = np.issubdtype(volume.dtype, np.floating)
    mask = volume > settings.threshold if is_prob else volume != 0
    if not mask.any():
        return (f"no foreground voxel (probability > {settings.threshold:g})" if is_prob
                else "no foreground voxel (all labels are 0)")
    sizes = np.bincount(cc3d.connected_components(mask, connectivity=26).ravel())[1:]
    min_size = settings.min_component_size
    if settings.tracer == BUILTIN and sizes.max() < min_size:
        return (f"all {len(sizes)} component(s) have fewer than {size_name} {min_size} voxels (largest: "
                f"{int(sizes.max())}); lower {size_name} to keep them")
    return f"{int(mask.sum())} foreground voxel(s) gave no skeleton"


def folder_cases(folder: str | os.PathLike, use_probabilities: bool = False) -> tuple[list[Path], list[str]]:
    """The file to trace of each case in ``folder``, sorted, and the skipped files' descriptions.

    A case with both a mask and an ``.npz`` / ``.npy`` file is traced from the mask, or from the latter
    with ``use_probabilities``. Raises NeurinoError when the folder holds no volume file.
    """
    from nnunetv2_neurino.data.volumes import is_volume_file, volume_stem

    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if is_volume_file(p) and not p.name.startswith("."))
    chosen: dict[str, Path] = {}
    skipped = []
    for p in sorted(files, key=lambda q: (q.suffix.lower() in (".npz", ".npy")) != use_probabilities):
        stem = volume_stem(p)
        if stem in chosen:
            skipped.append(f"{p.name} (same case as {chosen[stem].name})")
        else:
            chosen[stem] = p
    if not chosen:
        raise NeurinoError(f"{folder}: no volume files (.nii.gz, .tif, .v3draw, .zarr, .npy, .npz, ...) "
                           "in the folder")
    return sorted(chosen.values()), skipped


@dataclass
class FolderResult:
    """What :func:`trace_folder` did: case counts and one line per empty, skipped and failed case."""

    n_cases: int = 0
    empty: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def trace_folder(src: str | os.PathLike, out: str | os.PathLike, settings: TraceSettings, force: bool = False,
                 use_probabilities: bool = False, size_name: str = "min_component_size",
                 progress: bool = True) -> FolderResult:
    """Trace every case of folder ``src`` into ``out/CASE.swc`` (``out`` written atomically).

    Parameters
    ----------
    src, out : input and output folders.
    settings : how to trace.
    force : replace an existing ``out``.
    use_probabilities : trace a case's ``.npz`` / ``.npy`` probabilities rather than its mask.
    size_name : how the minimum component size is called in the empty-case notes.
    progress : show a progress bar.
    """
    from tqdm import tqdm

    from nnunetv2_neurino.data.volumes import volume_stem
    from nnunetv2_neurino.io_utils import atomic_directory
    from nnunetv2_neurino.swc import write_swc

    settings.check()
    cases, skipped = folder_cases(src, use_probabilities)
    result = FolderResult(n_cases=len(cases), skipped=skipped)
    with atomic_directory(out, force=force) as tmp:
        for path in tqdm(cases, desc="trace", unit="case", disable=not progress):
            try:
                tree = trace_file(path, settings)
                if tree.n == 0:
                    result.empty.append(f"{volume_stem(path)}.swc: 0 nodes — "
                                        f"{empty_reason(path, settings, size_name)}")
            except Exception as e:  # one bad case (unreadable file, tracer error) must not stop the batch
                reason = str(e) if isinstance(e, NeurinoError) else f"{type(e).__name__}: {e}"
                result.failed.append(f"{path.name}: {reason}")
                continue
            write_swc(tree, tmp / f"{volume_stem(path)}.swc", header=settings.header(path))
    return result
