"""CWMBS (mouse): ``SRC/image/NAME.tif`` stacks with ``SRC/swc/NAME.tif.swc`` in voxel coordinates.

The SWCs are 0-based image-space coordinates with x = the last array axis; some files have parents that
are missing from the file (those nodes become roots, noted in the conversion log).
"""

from __future__ import annotations

import os
from pathlib import Path

from nnunetv2_neurino.data.nnunet_raw import CaseSource, Skipped
from nnunetv2_neurino.dataset_conversion.common import cases_from_folders, require_folder
from nnunetv2_neurino.errors import NeurinoError

DEFAULT_NAME = "CWMBS"
DESCRIPTION = "CWMBS mouse neuron stacks with gold-standard SWCs (labels rendered from SWC)"


def find_cases(src: str | os.PathLike, radius_floor: float = 1.0, radius_scale: float = 1.0,
               channel: int = 0) -> tuple[list[CaseSource], list[Skipped]]:
    """Cases of a CWMBS folder holding ``image/`` and ``swc/``."""
    src = require_folder(src)
    image_dir, swc_dir = Path(src) / "image", Path(src) / "swc"
    for d in (image_dir, swc_dir):
        if not d.is_dir():
            raise NeurinoError(f"{src}: CWMBS layout expects folders image/ and swc/; {d.name}/ is missing")
    return cases_from_folders(image_dir, swc_dir, radius_floor, radius_scale, channel)
