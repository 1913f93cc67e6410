"""Synthetic neuron cases and the built-in nnU-Net raw data set (``neurino make-dataset``, ``neurino demo``).

A case is a deterministic function of ``(seed, case index)``: a morphology (the branching generator of
:mod:`.morphology`, or an SWC from a user folder fitted into the volume), distractors, and the image of
:mod:`.imaging`. The ground truth is the SWC itself and the mask rendered from it by
:func:`~nnunetv2_neurino.data.render.render_swc` (radius floor 1 voxel) — exactly what the converters of
the public data sets produce from their gold standards.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from nnunetv2_neurino.data.nnunet_raw import CaseSource, LoadedCase, write_raw_dataset
from nnunetv2_neurino.data.render import render_swc
from nnunetv2_neurino.data.synthetic.imaging import ImageResult, ImagingParams, simulate_image
from nnunetv2_neurino.data.synthetic.morphology import (
    MorphologyParams,
    crop_tree_to_volume,
    fit_tree_to_volume,
    generate_fibre,
    generate_neuron,
)
from nnunetv2_neurino.data.volumes import check_spacing
from nnunetv2_neurino.errors import NeurinoError
from nnunetv2_neurino.swc import SWCTree, read_swc

__all__ = ["SyntheticCase", "generate_case", "list_swc_files", "write_neuron_dataset", "case_rng",
           "LABEL_RADIUS_FLOOR"]

LABEL_RADIUS_FLOOR = 1.0
SWC_SUFFIXES = (".swc", ".eswc")
SWC_MODES = ("fit", "crop")


@dataclass
class SyntheticCase:
    """One synthetic case.

    Attributes
    ----------
    image : (Z, Y, X) uint16 or float32 camera counts.
    label : uint8 (Z, Y, X), 1 = neuron (render of ``tree`` with radius floor 1 voxel).
    tree : the labelled neuron, image-space voxel coordinates (x = last axis).
    spacing : (z, y, x) voxel size.
    distractors : unlabelled neurites / neurons present in the image.
    imaging : the image model's by-products (noise-free image, emissions, node brightness and
        NORMAL/DIM/BROKEN states, blob positions, drawn photon/background/fall-off values).
    source : "generated" or the SWC file the morphology came from.
    """

    image: np.ndarray
    label: np.ndarray
    tree: SWCTree
    spacing: tuple[float, float, float]
    distractors: list[SWCTree]
    imaging: ImageResult
    source: str = "generated"
    notes: list[str] = field(default_factory=list)


def case_rng(seed: int, index: int) -> np.random.Generator:
    """The random generator of case ``index`` of a data set with ``seed`` (independent of other cases)."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(index)]))


def _check_shape_spacing(shape, spacing) -> tuple[tuple[int, int, int], tuple[float, float, float]]:
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 8:
        raise NeurinoError(f"shape must be 3 sizes Z Y X of at least 8 voxels, got {shape}")
    spacing = check_spacing(spacing)
    return shape, spacing


def generate_case(seed: int = 0, index: int = 0, shape: tuple[int, int, int] = (64, 64, 64),
                  spacing: tuple[float, float, float] = (1.0, 1.0, 1.0), morphology: SWCTree | None = None,
                  morphology_params: MorphologyParams | None = None,
                  imaging_params: ImagingParams | None = None, dtype: str = "uint16", swc_mode: str = "fit",
                  swc_scale: float = 1.0) -> SyntheticCase:
    """Generate one case, deterministically from ``(seed, index)``.

    Parameters
    ----------
    seed, index : data-set seed and case number (see :func:`case_rng`).
    shape : (Z, Y, X) volume size; spacing : (z, y, x) voxel size (e.g. (2, 1, 1) for a coarser z).
    morphology : a reconstruction to image instead of a generated neuron.
    swc_mode : how ``morphology`` is placed: "fit" rotates it at random and scales it to fit the volume
        (:func:`~.morphology.fit_tree_to_volume`); "crop" takes a random native-scale window of it, cut at
        the faces (:func:`~.morphology.crop_tree_to_volume`).
    swc_scale : "crop" only: physical size of one SWC unit.
    morphology_params, imaging_params : generator and image-model parameters.
    dtype : "uint16" or "float32" image.

    Returns
    -------
    :class:`SyntheticCase`.
    """
    shape, spacing = _check_shape_spacing(shape, spacing)
    if swc_mode not in SWC_MODES:
        raise NeurinoError(f"swc_mode must be one of {SWC_MODES}, got {swc_mode!r}")
    rng = case_rng(seed, index)
    mp = MorphologyParams() if morphology_params is None else morphology_params
    ip = ImagingParams() if imaging_params is None else imaging_params
    if morphology is None:
        tree, source = generate_neuron(shape, spacing, rng, mp), "generated"
    elif swc_mode == "crop":
        tree = crop_tree_to_volume(morphology, shape, spacing, rng, scale=swc_scale, min_radius=mp.min_radius)
        source = morphology.source
    else:
        tree = fit_tree_to_volume(morphology, shape, spacing, rng, min_radius=mp.min_radius)
        source = morphology.source
    distractors = [generate_fibre(shape, spacing, rng, mp)
                   for _ in range(int(rng.integers(ip.n_fibres[0], ip.n_fibres[1] + 1)))]
    if rng.random() < ip.second_neuron_probability:
        # a second cell whose soma sits near a face: only part of its arbour is in view
        soma = rng.uniform(0, 1, 3) * (np.asarray(shape) - 1)
        axis = int(rng.integers(3))
        soma[axis] = rng.choice([0.0, shape[axis] - 1.0])
        distractors.append(generate_neuron(shape, spacing, rng, mp, soma_zyx=soma))
    result = simulate_image(tree, distractors, shape, spacing, rng, ip, dtype)
    label = render_swc(tree, shape, spacing, radius_floor=LABEL_RADIUS_FLOOR).astype(np.uint8)
    return SyntheticCase(result.image, label, tree, spacing, distractors, result, source)


def list_swc_files(swc_dir: str | os.PathLike) -> list[Path]:
    """The SWC files (``*.swc``, ``*.eswc``, any case) directly in ``swc_dir``, sorted by name.

    Raises
    ------
    NeurinoError : the folder does not exist, is not a folder, or holds no SWC file.
    """
    folder = Path(swc_dir)
    if not folder.exists():
        raise NeurinoError(f"swc_dir {folder} does not exist")
    if not folder.is_dir():
        raise NeurinoError(f"swc_dir {folder} is not a folder")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in SWC_SUFFIXES)
    if not files:
        raise NeurinoError(f"swc_dir {folder} holds no SWC file (*.swc)")
    return files


def _readable_swc_files(files: list[Path]) -> list[Path]:
    """The SWC files that parse, warning once about each one that does not (so no case draws it)."""
    good, bad = [], []
    for swc_file in files:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")     # per-file notes go to the conversion log later
                read_swc(swc_file)
            good.append(swc_file)
        except NeurinoError as e:
            bad.append(str(e))
    if not good:
        raise NeurinoError(f"swc_dir {files[0].parent}: no SWC file could be read ({'; '.join(bad[:5])})")
    if bad:
        warnings.warn(f"{files[0].parent}: {len(bad)} unreadable SWC file(s) not used ({'; '.join(bad[:5])})",
                      stacklevel=3)
    return good


def _loader(seed: int, index: int, shape, spacing, swc_file: Path | None, mp, ip, dtype, swc_mode, swc_scale):
    def load() -> LoadedCase:
        notes = []
        morphology = None
        if swc_file is not None:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                morphology = read_swc(swc_file)
            notes += [str(w.message).replace("\n", " ") for w in caught]
        case = generate_case(seed, index, shape, spacing, morphology, mp, ip, dtype, swc_mode, swc_scale)
        return LoadedCase(case.image, case.spacing, case.label, case.tree, notes)
    return load


def write_neuron_dataset(raw_root: str | os.PathLike | None, dataset_id: int, name: str = "NeurinoSynthetic",
                         n_train: int = 8, n_test: int = 2, shape: tuple[int, int, int] = (64, 64, 64),
                         seed: int = 0, swc_dir: str | os.PathLike | None = None, force: bool = False,
                         progress: bool = True, spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
                         dtype: str = "uint16", morphology_params: MorphologyParams | None = None,
                         imaging_params: ImagingParams | None = None, swc_mode: str = "fit",
                         swc_scale: float = 1.0) -> Path:
    """Write the built-in synthetic neuron data set as an nnU-Net raw data set.

    Layout (written atomically: nothing that looks complete is left by an interrupted run)::

        DatasetXXX_NAME/imagesTr/neuron_000_0000.nii.gz  labelsTr/neuron_000.nii.gz  swcTr/neuron_000.swc
                        imagesTs/…                       labelsTs/…                  swcTs/…
                        dataset.json (channel "zscore", labels background 0 / neuron 1)
                        conversion_log.tsv (one row per case)

    Parameters
    ----------
    raw_root : the nnU-Net raw folder (None → ``$nnUNet_raw``).
    dataset_id, name : the folder ``DatasetXXX_NAME``.
    n_train, n_test : numbers of cases; which cases are test cases is a seeded draw.
    shape : (Z, Y, X) of every case; spacing : (z, y, x) voxel size.
    seed : everything (morphologies, images, split) is a deterministic function of it.
    swc_dir : a folder of SWC files to use as morphologies instead of the generator (cycled through in
        name order).
    swc_mode, swc_scale : how an SWC is placed: "fit" (random rotation, scaled to fit the volume) or
        "crop" (a random window at ``swc_scale`` physical units per SWC unit); see :func:`generate_case`.
    force : replace an existing data set folder of the same name (else NeurinoError naming it).
    progress : show a progress bar.
    dtype : "uint16" or "float32" images.

    Returns
    -------
    The data set folder.
    """
    n_train, n_test = int(n_train), int(n_test)
    if n_train < 1 or n_test < 0:
        raise NeurinoError(f"need n_train >= 1 and n_test >= 0, got n_train={n_train}, n_test={n_test}")
    if dtype not in ("uint16", "float32"):
        raise NeurinoError(f"image dtype must be 'uint16' or 'float32', got {dtype!r}")
    if swc_mode not in SWC_MODES:
        raise NeurinoError(f"swc_mode must be one of {SWC_MODES}, got {swc_mode!r}")
    if not swc_scale > 0:
        raise NeurinoError(f"swc_scale must be positive, got {swc_scale}")
    shape, spacing = _check_shape_spacing(shape, spacing)
    files = _readable_swc_files(list_swc_files(swc_dir)) if swc_dir is not None else None
    mp = MorphologyParams() if morphology_params is None else morphology_params
    ip = ImagingParams() if imaging_params is None else imaging_params
    n = n_train + n_test
    cases = []
    for i in range(n):
        swc_file = files[i % len(files)] if files else None
        origin = (f"{swc_file.name}, " if swc_file else "generated, ") + f"seed {seed}, case {i}"
        load = _loader(seed, i, shape, spacing, swc_file, mp, ip, dtype, swc_mode, swc_scale)
        cases.append(CaseSource(f"neuron_{i:03d}", load, origin))
    metadata = {"generator": "nnunetv2_neurino.data.synthetic", "seed": int(seed), "shape_zyx": list(shape),
                "spacing_zyx": list(spacing), "dtype": dtype, "label_radius_floor": LABEL_RADIUS_FLOOR,
                "swc_dir": str(swc_dir) if swc_dir is not None else None,
                "swc_mode": swc_mode if swc_dir is not None else None,
                "swc_scale": swc_scale if swc_dir is not None and swc_mode == "crop" else None,
                "morphology_params": asdict(mp), "imaging_params": asdict(ip)}
    report = write_raw_dataset(cases, raw_root, dataset_id, name, test_fraction=n_test / n, seed=seed,
                               force=force, progress=progress, metadata=metadata,
                               description="synthetic light-microscopy neurons (nnunetv2-neurino built-in)")
    if report.skipped:
        reasons = "; ".join(f"{s.name}: {s.reason}" for s in report.skipped[:5])
        warnings.warn(f"{report.path}: {len(report.skipped)} case(s) skipped ({reasons})", stacklevel=2)
    return report.path
