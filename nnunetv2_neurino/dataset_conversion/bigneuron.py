"""BigNeuron Gold166: one folder per lab/subset (e.g. ``p_checked6_mouse_tufts``), cases inside.

Each case is an image (``.v3dpbd``, some releases ``.v3draw`` or TIFF) with a gold-standard ``.swc`` in
0-based voxel coordinates (Vaa3D convention, x = last array axis). Cases may sit directly in the subset
folder or one folder deeper (one folder per case). An image pairs with the SWC of the same name
(``X.v3dpbd`` ↔ ``X.swc`` / ``X.v3dpbd.swc``); when a folder holds exactly one image and one SWC they
pair whatever their names. Case names are ``SUBSET_IMAGESTEM``.
"""

from __future__ import annotations

import os
from pathlib import Path

from nnunetv2_neurino.data.nnunet_raw import CaseSource, Skipped, unique_case_names
from nnunetv2_neurino.data.readers import image_stem
from nnunetv2_neurino.dataset_conversion.common import (
    list_images,
    pair_images_with_swcs,
    require_folder,
    swc_case,
)
from nnunetv2_neurino.errors import NeurinoError

DEFAULT_NAME = "BigNeuron"
DESCRIPTION = "BigNeuron Gold166 neuron stacks with gold-standard SWCs (labels rendered from SWC)"


def _folder_pairs(folder: Path) -> tuple[list[tuple[Path, Path]], list[Skipped]]:
    images = list_images(folder)
    swcs = sorted(p for p in folder.iterdir() if p.is_file() and p.name.lower().endswith(".swc"))
    if len(images) == 1 and len(swcs) == 1:
        return [(images[0], swcs[0])], []
    return pair_images_with_swcs(images, swcs)


def find_cases(src: str | os.PathLike, radius_floor: float = 1.0, radius_scale: float = 1.0,
               channel: int = 0) -> tuple[list[CaseSource], list[Skipped]]:
    """Cases of a BigNeuron root holding one folder per subset."""
    src = require_folder(src)
    subsets = sorted(p for p in src.iterdir() if p.is_dir() and not p.name.startswith(".")
                     and not p.name.lower().endswith(".zarr"))
    if not subsets:
        raise NeurinoError(f"{src}: BigNeuron layout expects one folder per subset; found none")
    pairs, skipped, labels = [], [], []
    for subset in subsets:
        folders = [subset] + sorted(p for p in subset.rglob("*") if p.is_dir() and not p.name.startswith(".")
                                    and not p.name.lower().endswith(".zarr") and ".zarr" not in str(p))
        for folder in folders:
            found, rejected = _folder_pairs(folder)
            pairs += found
            labels += [f"{subset.name}_{image_stem(img)}" for img, _ in found]
            skipped += [Skipped(f"{subset.name}_{s.name}", s.reason, s.origin) for s in rejected]
    names = unique_case_names(labels)
    cases = [swc_case(n, img, swc, radius_floor, radius_scale, channel)
             for n, (img, swc) in zip(names, pairs)]
    return cases, skipped
