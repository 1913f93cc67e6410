"""One entry point for every converter: find the cases, write the nnU-Net raw data set."""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence
from pathlib import Path

from nnunetv2_neurino.data.nnunet_raw import RawDatasetReport, write_raw_dataset
from nnunetv2_neurino.errors import NeurinoError

CONVERTERS = ("bigneuron", "neurofly", "cwmbs", "generic", "diadem")


def convert(kind: str, src: str | os.PathLike, dataset_id: int, name: str | None = None,
            out_root: str | os.PathLike | None = None, *, radius_floor: float = 1.0,
            radius_scale: float = 1.0,
            test_fraction: float = 0.2, seed: int = 0, force: bool = False, channel: int = 0,
            swc_dir: str | os.PathLike | None = None, skeleton_radius: float = 1.0,
            spacing: tuple[float, float, float] | None = None, test_cases: Sequence[str] | None = None,
            progress: bool = True) -> RawDatasetReport:
    """Convert the data set at ``src`` (layout of ``kind``) into ``out_root/DatasetXXX_NAME``.

    Parameters
    ----------
    kind : one of :data:`CONVERTERS`.
    src : the downloaded data set folder (generic: the image folder).
    dataset_id, name : nnU-Net id (1–999) and name (default: the converter's name).
    out_root : nnU-Net raw folder (default ``$nnUNet_raw``).
    radius_floor, radius_scale : label rendering from SWC (radii in voxels of the finest axis).
    test_fraction, seed : deterministic train/test split by sorted case names.
    force : replace an existing data set of the same folder name.
    channel : channel of multi-channel stacks.
    swc_dir : generic only: the SWC folder (default: ``src``).
    skeleton_radius : NeuroFly skeleton-mask labels: tube radius in voxels.
    spacing : diadem only: (z, y, x) voxel size in µm (default: the DIADEM OP voxel size).
    test_cases : names of the cases for the test split (instead of ``test_fraction``); a name that is not
        a case of ``src`` is refused.
    """
    if kind not in CONVERTERS:
        raise ValueError(f"unknown converter {kind!r}; choose from {CONVERTERS}")
    module = importlib.import_module(f"nnunetv2_neurino.dataset_conversion.{kind}")
    options = dict(radius_floor=radius_floor, radius_scale=radius_scale, channel=channel)
    if kind == "generic":
        options["swc_dir"] = swc_dir
    if kind == "neurofly":
        options["skeleton_radius"] = skeleton_radius
    if spacing is not None and kind != "diadem":
        raise NeurinoError(f"spacing is used by the diadem converter only (the {kind} images carry "
                           "their own voxel size)")
    if kind == "diadem":
        options["spacing"] = spacing
    cases, skipped = module.find_cases(src, **options)
    metadata = {"source": str(Path(src).resolve()), "converter": kind, "radius_floor": radius_floor,
                "radius_scale": radius_scale}
    if kind == "neurofly":
        metadata["skeleton_radius"] = skeleton_radius
    if kind == "diadem":
        metadata["spacing"] = list(spacing or module.DEFAULT_SPACING)
    return write_raw_dataset(cases, out_root, dataset_id, name or module.DEFAULT_NAME,
                             test_fraction=test_fraction, seed=seed, force=force,
                             description=module.DESCRIPTION, metadata=metadata, progress=progress,
                             extra_skipped=skipped, test_cases=test_cases)
