"""Any folder of 3D stacks plus a folder of image-space SWCs, matched by file name.

``IMAGES/NAME.(tif|v3draw|v3dpbd|nii.gz|zarr|zarr.zip)`` pairs with ``SWCS/NAME.swc`` or
``SWCS/NAME.tif.swc``; SWCs are 0-based voxel coordinates with x = the last array axis.
"""

from __future__ import annotations

import os

from nnunetv2_neurino.data.nnunet_raw import CaseSource, Skipped
from nnunetv2_neurino.dataset_conversion.common import cases_from_folders, require_folder


def find_cases(images: str | os.PathLike, swc_dir: str | os.PathLike | None = None, radius_floor: float = 1.0,
               radius_scale: float = 1.0, channel: int = 0) -> tuple[list[CaseSource], list[Skipped]]:
    """Cases of a generic image folder and SWC folder (``swc_dir`` defaults to the image folder)."""
    images = require_folder(images)
    swc_dir = require_folder(swc_dir) if swc_dir else images
    return cases_from_folders(images, swc_dir, radius_floor, radius_scale, channel)


DEFAULT_NAME = "Generic"
DESCRIPTION = "Neuron images with image-space SWC reconstructions (generic folder converter)"
