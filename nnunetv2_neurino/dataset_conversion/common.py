"""Helpers shared by the data-set converters: finding images, pairing them with SWCs, loading a case."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from nnunetv2_neurino.data.nnunet_raw import CaseSource, LoadedCase, Skipped, unique_case_names
from nnunetv2_neurino.data.readers import image_stem, image_suffix, read_image
from nnunetv2_neurino.errors import NeurinoError


def list_images(folder: Path, recursive: bool = False) -> list[Path]:
    """Image files (and ``.zarr`` folders) in ``folder``, sorted; hidden entries are ignored."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NeurinoError(f"{folder}: no such folder")
    entries = folder.rglob("*") if recursive else folder.iterdir()
    found = []
    for p in entries:
        if any(part.startswith(".") for part in p.relative_to(folder).parts):
            continue
        if any(part.lower().endswith(".zarr") for part in p.relative_to(folder).parts[:-1]):
            continue  # inside a zarr store
        suffix = image_suffix(p)
        if suffix is None or (p.is_dir() and suffix != ".zarr") or (p.is_file() and suffix == ".zarr"):
            continue
        found.append(p)
    return sorted(found)


def swc_keys(swc: Path) -> set[str]:
    """Names an SWC file can match an image by: ``NAME.swc`` → NAME; ``NAME.tif.swc`` → NAME.tif and NAME."""
    base = swc.name[: -len(".swc")] if swc.name.lower().endswith(".swc") else swc.stem
    return {base, image_stem(base)}


def pair_images_with_swcs(images: Iterable[Path], swcs: Iterable[Path]) -> tuple[list[tuple[Path, Path]],
                                                                              list[Skipped]]:
    """Match images to SWC files by stem (``a.tif`` ↔ ``a.swc`` or ``a.tif.swc``).

    Returns the pairs and the unmatched/ambiguous files as :class:`Skipped` entries with reasons.
    """
    images = sorted(images)
    swcs = sorted(swcs)
    by_key: dict[str, list[Path]] = {}
    for s in swcs:
        for key in swc_keys(s):
            by_key.setdefault(key, []).append(s)
    pairs, skipped, used = [], [], set()
    for img in images:
        candidates = sorted(set(by_key.get(img.name, []) + by_key.get(image_stem(img), [])))
        if not candidates:
            skipped.append(Skipped(image_stem(img), "no SWC file with the same name", str(img)))
        elif len(candidates) > 1:
            names = ", ".join(c.name for c in candidates)
            skipped.append(Skipped(image_stem(img), f"several SWC files match: {names}", str(img)))
            used.update(candidates)
        else:
            pairs.append((img, candidates[0]))
            used.add(candidates[0])
    skipped += [Skipped(s.name, "SWC file without a matching image", str(s)) for s in swcs if s not in used]
    return pairs, skipped


def swc_case(name: str, image_path: Path, swc_path: Path, radius_floor: float, radius_scale: float,
             channel: int = 0) -> CaseSource:
    """A case whose label is rendered from an image-space (0-based voxel) SWC."""

    def load() -> LoadedCase:
        from nnunetv2_neurino.data.render import render_swc
        from nnunetv2_neurino.swc import read_swc

        image, spacing = read_image(image_path, channel=channel)
        if image.ndim != 3:
            raise NeurinoError(f"{image_path}: has {image.shape[0]} channels; choose one with channel")
        tree = read_swc(swc_path)
        if len(tree) == 0:
            raise NeurinoError(f"{swc_path}: SWC file has no nodes")
        label = render_swc(tree, image.shape, spacing=spacing, radius_floor=radius_floor,
                           radius_scale=radius_scale)
        return LoadedCase(image, spacing, label, tree, outside_node_notes(tree, image.shape))

    return CaseSource(name, load, f"{image_path} + {swc_path.name}")


def outside_node_notes(tree, shape: tuple[int, ...]) -> list[str]:
    """Log note on the SWC nodes outside a (z, y, x) image of ``shape`` ([] if none; labels by render_swc).

    The count is also a column of the conversion log; the note says what happened to those nodes.
    """
    from nnunetv2_neurino.data.nnunet_raw import count_nodes_outside

    n_out = count_nodes_outside(tree, shape)
    if not n_out:
        return []
    return [f"{n_out} of {len(tree)} SWC nodes lie outside the image {tuple(shape)}: kept unchanged in the "
            "swc folder; the label holds only the parts of their balls and tubes that fall inside the "
            "volume (clipped at the border)"]


def relative_name(path: Path, root: Path) -> str:
    """Case name from the path relative to ``root`` without image suffix, folders joined by ``_``."""
    rel = path.relative_to(root)
    return "_".join([*rel.parts[:-1], image_stem(rel)])


def require_folder(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise NeurinoError(f"{path}: no such folder")
    return path


def cases_from_folders(image_dir: Path, swc_dir: Path, radius_floor: float, radius_scale: float,
                       channel: int = 0) -> tuple[list[CaseSource], list[Skipped]]:
    """Cases of an image folder paired by name with the ``*.swc`` files of an SWC folder (labels from SWC)."""
    swcs = sorted(p for p in swc_dir.iterdir() if p.is_file() and p.name.lower().endswith(".swc"))
    pairs, skipped = pair_images_with_swcs(list_images(image_dir), swcs)
    names = unique_case_names([image_stem(img) for img, _ in pairs])
    cases = [swc_case(n, img, swc, radius_floor, radius_scale, channel)
             for n, (img, swc) in zip(names, pairs)]
    return cases, skipped
