"""CWMBS (mouse): ``SRC/image/NAME.tif`` stacks with ``SRC/swc/NAME.tif.swc`` in voxel coordinates.

The SWCs are 0-based image-space coordinates with x = the last array axis; some files have parents that
are missing from the file (those nodes become roots, noted in the conversion log).
"""

from __future__ import annotations

import os
from pathlib import Path

from dataset_conversion.common import list_images, pair_images_with_swcs, require_folder, swc_case
from nnunetv2_neurino.data.nnunet_raw import CaseSource, Skipped, unique_case_names
from nnunetv2_neurino.data.readers import image_stem
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
    swcs = sorted(p for p in swc_dir.iterdir() if p.is_file() and p.name.lower().endswith(".swc"))
    pairs, skipped = pair_images_with_swcs(list_images(image_dir), swcs)
    names = unique_case_names([image_stem(img) for img, _ in pairs])
    cases = [swc_case(n, img, swc, radius_floor, radius_scale, channel)
             for n, (img, swc) in zip(names, pairs)]
    return cases, skipped
