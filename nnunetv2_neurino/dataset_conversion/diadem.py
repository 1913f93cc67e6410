"""DIADEM olfactory projection fibres (Jefferis et al. 2007; DIADEM challenge, Brown et al. 2011).

Layout of the original download (ROOT may be the folder holding ``OlfactoryProjectionFibers/`` or that
folder itself)::

    OlfactoryProjectionFibers/ImageStacks/OP_k/1.tif … N.tif      one 2D slice per file (01.tif in OP_4)
    OlfactoryProjectionFibers/GoldStandardReconstructions/OP_k.swc

The gold SWCs are in voxel units of their stack: x, y in pixels, z = slice index (0-based, no flip),
radii in pixels, which is the image-space convention :func:`nnunetv2_neurino.data.render.render_swc`
draws labels from. The slices store only the in-plane pixel size (3.0335 px/µm); the z step of these
stacks is 0.9988 µm, so every case gets :data:`DEFAULT_SPACING` unless ``--spacing`` is given.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from nnunetv2_neurino.data.nnunet_raw import CaseSource, LoadedCase, Skipped, unique_case_names
from nnunetv2_neurino.data.volumes import check_spacing
from nnunetv2_neurino.dataset_conversion.common import outside_node_notes, require_folder
from nnunetv2_neurino.errors import NeurinoError

DEFAULT_NAME = "DIADEM_OP"
DESCRIPTION = ("DIADEM olfactory projection fibre confocal stacks (Jefferis et al. 2007) with gold-standard "
               "SWCs (labels rendered from SWC)")
DEFAULT_SPACING = (0.9988, 0.3296, 0.3296)   # (z, y, x) µm of the DIADEM OP stacks
_TOP = "OlfactoryProjectionFibers"


def _natural_key(name: str) -> tuple:
    return tuple(int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name))


def layout_folders(src: str | os.PathLike) -> tuple[Path, Path]:
    """``(ImageStacks, GoldStandardReconstructions)`` of a DIADEM OP download; NeurinoError if absent."""
    src = require_folder(src)
    base = src / _TOP if (src / _TOP).is_dir() else src
    stacks, gold = base / "ImageStacks", base / "GoldStandardReconstructions"
    for d in (stacks, gold):
        if not d.is_dir():
            raise NeurinoError(f"{src}: DIADEM layout expects {_TOP}/ImageStacks/ and "
                               f"{_TOP}/GoldStandardReconstructions/; {d} is missing")
    return stacks, gold


def _diadem_case(name: str, stack_dir: Path, swc_path: Path, spacing: tuple[float, float, float],
                 spacing_origin: str, radius_floor: float, radius_scale: float, channel: int) -> CaseSource:
    def load() -> LoadedCase:
        import numpy as np

        from nnunetv2_neurino.data.render import render_swc
        from nnunetv2_neurino.data.slices import read_slice_folder
        from nnunetv2_neurino.swc import read_swc

        stack = read_slice_folder(stack_dir)
        image = stack.image
        if image.ndim == 4:
            if not 0 <= channel < image.shape[0]:
                raise NeurinoError(f"{stack_dir}: channel {channel} requested but the slices have "
                                   f"{image.shape[0]} channels")
            image = image[channel]
        tree = read_swc(swc_path)
        if len(tree) == 0:
            raise NeurinoError(f"{swc_path}: SWC file has no nodes")
        label = render_swc(tree, image.shape, spacing=spacing, radius_floor=radius_floor,
                           radius_scale=radius_scale)
        notes = [f"spacing (z, y, x) = {spacing} µm from {spacing_origin}"]
        tag_yx = stack.spacing[1:]
        if "resolution tags" in stack.spacing_source and not np.allclose(tag_yx, spacing[1:], rtol=0.01):
            notes.append(f"the slices' resolution tags give y, x = {tuple(round(s, 5) for s in tag_yx)} µm, "
                         "which differs from the spacing used")
        return LoadedCase(image, spacing, label, tree, notes + outside_node_notes(tree, image.shape))

    return CaseSource(name, load, f"{stack_dir} + {swc_path.name}")


def find_cases(src: str | os.PathLike, radius_floor: float = 1.0, radius_scale: float = 1.0,
               channel: int = 0, spacing: tuple[float, float, float] | None = None,
               ) -> tuple[list[CaseSource], list[Skipped]]:
    """Cases of a DIADEM OP download: one per ``ImageStacks/OP_k`` folder with ``OP_k.swc``.

    Parameters
    ----------
    src : the download folder (holding ``OlfactoryProjectionFibers/``, or that folder itself).
    radius_floor, radius_scale : label rendering (radii in pixels of the x/y axes).
    channel : channel of RGB slices.
    spacing : (z, y, x) voxel size in µm; default :data:`DEFAULT_SPACING`.

    Returns
    -------
    The cases (names = stack folder names) and the skipped entries: a stack without gold SWC, a gold SWC
    without stack, each naming the file or folder that is missing.
    """
    stacks_dir, gold_dir = layout_folders(src)
    if spacing is None:
        spacing, origin = DEFAULT_SPACING, "the DIADEM OP voxel size (default)"
    else:
        spacing = check_spacing(spacing)
        origin = "--spacing"
    stacks = sorted((p for p in stacks_dir.iterdir() if p.is_dir() and not p.name.startswith(".")),
                    key=lambda p: _natural_key(p.name))
    swcs = {p.name[:-4].lower(): p for p in gold_dir.iterdir()
            if p.is_file() and p.name.lower().endswith(".swc")}
    cases, skipped, used = [], [], set()
    names = unique_case_names([p.name for p in stacks])
    for name, stack in zip(names, stacks):
        swc = swcs.get(stack.name.lower())
        if swc is None:
            skipped.append(Skipped(name, f"no gold-standard SWC: {gold_dir / (stack.name + '.swc')} "
                                         "is missing", str(stack)))
            continue
        used.add(swc)
        cases.append(_diadem_case(name, stack, swc, spacing, origin, radius_floor, radius_scale, channel))
    skipped += [Skipped(p.name, f"SWC without image stack: {stacks_dir / p.name[:-4]}/ is missing", str(p))
                for p in sorted(swcs.values()) if p not in used]
    if not cases and not skipped:
        raise NeurinoError(f"{stacks_dir}: no stack folders (expected OP_1/, OP_2/ … of numbered slices)")
    return cases, skipped
