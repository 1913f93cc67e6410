"""Any folder of 3D stacks plus a folder of image-space SWCs, matched by file name.

``IMAGES/NAME.(tif|v3draw|v3dpbd|nii.gz|zarr|zarr.zip)`` pairs with ``SWCS/NAME.swc`` or
``SWCS/NAME.tif.swc``; SWCs are 0-based voxel coordinates with x = the last array axis.
"""

from __future__ import annotations

import os

from dataset_conversion.common import list_images, pair_images_with_swcs, require_folder, swc_case
from nnunetv2_neurino.data.nnunet_raw import CaseSource, Skipped, unique_case_names
from nnunetv2_neurino.data.readers import image_stem


def find_cases(images: str | os.PathLike, swc_dir: str | os.PathLike | None = None, radius_floor: float = 1.0,
               radius_scale: float = 1.0, channel: int = 0) -> tuple[list[CaseSource], list[Skipped]]:
    """Cases of a generic image folder and SWC folder (``swc_dir`` defaults to the image folder)."""
    images = require_folder(images)
    swc_dir = require_folder(swc_dir) if swc_dir else images
    swcs = sorted(p for p in swc_dir.iterdir() if p.is_file() and p.name.lower().endswith(".swc"))
    pairs, skipped = pair_images_with_swcs(list_images(images), swcs)
    names = unique_case_names([image_stem(img) for img, _ in pairs])
    cases = [swc_case(n, img, swc, radius_floor, radius_scale, channel)
             for n, (img, swc) in zip(names, pairs)]
    return cases, skipped


DEFAULT_NAME = "Generic"
DESCRIPTION = "Neuron images with image-space SWC reconstructions (generic folder converter)"
