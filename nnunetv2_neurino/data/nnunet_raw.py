"""Write nnU-Net v2 raw data sets (``DatasetXXX_NAME``) with the SWCs kept beside them.

Layout written (all at once: built in a hidden partial folder, renamed at the end)::

    DatasetXXX_NAME/
      imagesTr/CASE_0000.nii.gz   labelsTr/CASE.nii.gz   swcTr/CASE.swc
      imagesTs/CASE_0000.nii.gz   labelsTs/CASE.nii.gz   swcTs/CASE.swc
      dataset.json                conversion_log.tsv

Every data-set converter (``dataset_conversion/``) and the built-in synthetic data set describe their
cases as :class:`CaseSource` objects (a name plus a loader) and call :func:`write_raw_dataset`; cases whose
loader raises :class:`NeurinoError` (or whose data fail the checks here) are skipped and logged with the
reason. The train/test split is drawn after loading and checking, among the usable cases only, and
depends only on their sorted names, the fraction and the seed.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nnunetv2_neurino.data.readers import write_nifti
from nnunetv2_neurino.data.volumes import check_spacing
from nnunetv2_neurino.errors import NeurinoError
from nnunetv2_neurino.io_utils import atomic_directory
from nnunetv2_neurino.nnunet_layout import dataset_folder_name, dataset_id_prefix, resolve_raw_root

LABELS = {"background": 0, "neuron": 1}
FILE_ENDING = ".nii.gz"
LOG_NAME = "conversion_log.tsv"


@dataclass
class LoadedCase:
    """One case in memory.

    Attributes
    ----------
    image : (z, y, x) intensities (any real dtype; float64 is stored as float32).
    spacing : (z, y, x) voxel size written to the NIfTI header.
    label : (z, y, x) bool/integer mask, nonzero = neuron.
    tree : the ground-truth reconstruction in image-space voxel coordinates (x = last axis), or None.
    notes : remarks for the log (e.g. SWC reader warnings).
    """

    image: np.ndarray
    spacing: tuple[float, float, float]
    label: np.ndarray
    tree: object | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class CaseSource:
    """A case before loading: ``name`` (nnU-Net case identifier), ``load()`` and where it came from."""

    name: str
    load: Callable[[], LoadedCase]
    origin: str = ""


@dataclass
class Skipped:
    """A case (or stray file) that is not in the data set, and why."""

    name: str
    reason: str
    origin: str = ""


@dataclass
class RawDatasetReport:
    path: Path
    train: list[str]
    test: list[str]
    skipped: list[Skipped]


def sanitize_case_name(name: str) -> str:
    """A safe nnU-Net case identifier: letters, digits, ``-`` and ``_`` only (others become ``_``)."""
    safe = re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_")
    return safe or "case"


def unique_case_names(names: Sequence[str]) -> list[str]:
    """Sanitize names and make them unique by appending ``_2``, ``_3`` … to repeats (order kept)."""
    seen: dict[str, int] = {}
    out = []
    for raw in names:
        base = sanitize_case_name(raw)
        name, k = base, 1
        while name in seen:
            k += 1
            name = f"{base}_{k}"
        seen[name] = 1
        out.append(name)
    return out


def split_train_test(names: Sequence[str], test_fraction: float, seed: int) -> set[str]:
    """The test cases: ``round(test_fraction * n)`` names (at most n − 1) drawn by a seeded permutation.

    Depends only on the sorted names, the fraction and the seed (not on the order names are listed in).
    """
    if not 0.0 <= test_fraction < 1.0:
        raise NeurinoError(f"test_fraction must be in [0, 1), got {test_fraction}")
    ordered = sorted(names)
    n = len(ordered)
    n_test = min(int(math.floor(test_fraction * n + 0.5)), max(n - 1, 0))
    order = np.random.default_rng(seed).permutation(n)
    return {ordered[i] for i in order[:n_test]}


def count_nodes_outside(tree, shape: Sequence[int]) -> int:
    """How many nodes of an image-space SWC ``tree`` lie outside a (z, y, x) volume of ``shape``.

    A node is inside when its voxel coordinates (x = last axis, 0-based voxel centres) are within
    [-0.5, size - 0.5] on every axis, i.e. inside the voxels' extent.
    """
    if tree is None or len(tree) == 0:
        return 0
    zyx = np.asarray(tree.xyz, dtype=np.float64)[:, ::-1]
    inside = np.all((zyx >= -0.5) & (zyx <= np.asarray(shape[-3:], dtype=np.float64) - 0.5), axis=1)
    return int(np.count_nonzero(~inside))


def _check_case(case: LoadedCase) -> str | None:
    """Why a loaded case cannot be used, or None."""
    if case.image.ndim != 3:
        return f"image has shape {case.image.shape}, expected 3D (z, y, x)"
    if case.label.shape != case.image.shape:
        return f"label shape {case.label.shape} differs from image shape {case.image.shape}"
    try:
        check_spacing(case.spacing)
    except NeurinoError:
        return f"invalid spacing {case.spacing}"
    if not np.any(case.label):
        return "label is empty (no neuron voxel inside the image: check the SWC coordinate convention)"
    if case.tree is not None and len(case.tree) > 0:
        inside = 1.0 - count_nodes_outside(case.tree, case.image.shape) / len(case.tree)
        if inside < 0.5:
            return (f"only {inside:.0%} of the SWC nodes lie inside the image {case.image.shape} "
                    "(SWC in physical units or another offset?)")
    return None


def _write_nifti(path: Path, array: np.ndarray, spacing) -> None:
    """:func:`~nnunetv2_neurino.data.readers.write_nifti`, float64 stored as float32 (as nnU-Net reads)."""
    array = np.asarray(array)
    write_nifti(path, array.astype(np.float32) if array.dtype == np.float64 else array, spacing)


def _check_id_free(root: Path, dataset_id: int, folder: str) -> None:
    prefix = dataset_id_prefix(dataset_id)
    if root.is_dir():
        clash = [p.name for p in root.iterdir() if p.name.startswith(prefix) and p.name != folder]
        if clash:
            raise NeurinoError(f"dataset id {dataset_id} is already used by {root / clash[0]} "
                               "(nnU-Net needs unique ids; choose another -d)")


def write_raw_dataset(cases: Sequence[CaseSource], out_root: str | os.PathLike | None, dataset_id: int,
                      name: str, *, test_fraction: float = 0.2, seed: int = 0, force: bool = False,
                      description: str = "", metadata: dict | None = None, progress: bool = True,
                      extra_skipped: Sequence[Skipped] = (),
                      test_cases: Sequence[str] | None = None) -> RawDatasetReport:
    """Load every case and write the nnU-Net raw data set atomically.

    Parameters
    ----------
    cases : the cases (names must be unique nnU-Net identifiers; see :func:`unique_case_names`).
    out_root : the nnU-Net raw folder (None → ``$nnUNet_raw``).
    dataset_id, name : give the folder ``DatasetXXX_NAME``.
    test_fraction, seed : the deterministic split (:func:`split_train_test`), drawn among the cases that
        loaded and passed the checks (a skipped case never takes a test slot).
    force : replace an existing data set folder of the same name.
    description, metadata : stored in dataset.json (``metadata`` under the key ``neurino``).
    extra_skipped : files the converter already rejected, logged with the others.
    test_cases : the case names of the test split (replaces the drawn split); names that are neither a
        case nor an already skipped entry are refused; a test case that fails its checks is skipped.

    Returns
    -------
    RawDatasetReport with the output path, train/test case names and every skipped case with its reason.
    """
    from tqdm import tqdm

    from nnunetv2_neurino.swc import write_swc

    root = resolve_raw_root(out_root)
    folder = dataset_folder_name(dataset_id, name)
    names = [c.name for c in cases]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise NeurinoError(f"duplicate case names {dup[:5]}")
    bad = [n for n in names if sanitize_case_name(n) != n]
    if bad:
        raise NeurinoError(f"case names {bad[:5]} are not valid nnU-Net identifiers")
    _check_id_free(root, dataset_id, folder)
    split_train_test([], test_fraction, seed)  # refuse a bad fraction before the (slow) loading
    if test_cases is not None:
        unknown = sorted(set(test_cases) - set(names) - {s.name for s in extra_skipped})
        if unknown:
            raise NeurinoError(f"test case(s) {', '.join(unknown)} not found; "
                               f"cases: {', '.join(sorted(names))}")
    skipped = list(extra_skipped)
    rows: dict[str, list[str]] = {}
    target = root / folder
    with atomic_directory(target, force=force) as tmp:
        # load and check every case first, so the split is drawn among usable cases only
        staged = tmp / "staged"
        for sub in ("images", "labels", "swc"):
            (staged / sub).mkdir(parents=True)
        for case in tqdm(sorted(cases, key=lambda c: c.name), desc=f"writing {folder}", unit="case",
                         disable=not progress):
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    loaded = case.load()
                reason = _check_case(loaded)
            except NeurinoError as e:
                reason = str(e)
            if reason is not None:
                skipped.append(Skipped(case.name, reason, case.origin))
                continue
            notes = loaded.notes + [str(w.message).replace("\n", " ") for w in caught]
            _write_nifti(staged / "images" / f"{case.name}_0000{FILE_ENDING}", loaded.image, loaded.spacing)
            _write_nifti(staged / "labels" / f"{case.name}{FILE_ENDING}",
                         (np.asarray(loaded.label) != 0).astype(np.uint8), loaded.spacing)
            if loaded.tree is not None:
                write_swc(loaded.tree, staged / "swc" / f"{case.name}.swc",
                          header=f"{case.name} (from {case.origin}); image-space voxels, x = last axis")
            has_tree = loaded.tree is not None
            rows[case.name] = [case.name, "", case.origin, "x".join(map(str, loaded.image.shape)),
                               ",".join(f"{s:g}" for s in loaded.spacing),
                               str(len(loaded.tree)) if has_tree else "",
                               str(count_nodes_outside(loaded.tree, loaded.image.shape)) if has_tree else "",
                               str(int(np.count_nonzero(loaded.label))), "; ".join(notes)]
        test_names = (set(test_cases) & set(rows) if test_cases is not None
                      else split_train_test(list(rows), test_fraction, seed))
        train = sorted(n for n in rows if n not in test_names)
        test = sorted(test_names)
        for split, names_in_split in (("Tr", train), ("Ts", test)):
            if split == "Tr" or names_in_split:
                for sub in ("images", "labels", "swc"):
                    (tmp / f"{sub}{split}").mkdir()
            for n in names_in_split:
                rows[n][1] = "train" if split == "Tr" else "test"
                for sub, fname in (("images", f"{n}_0000{FILE_ENDING}"), ("labels", f"{n}{FILE_ENDING}"),
                                   ("swc", f"{n}.swc")):
                    if (staged / sub / fname).exists():
                        os.replace(staged / sub / fname, tmp / f"{sub}{split}" / fname)
        shutil.rmtree(staged)
        if not train:
            reasons = "; ".join(f"{s.name}: {s.reason}" for s in skipped[:5])
            raise NeurinoError(f"no usable training case for {folder} ({len(skipped)} skipped: {reasons})")
        table = [rows[n] for n in sorted(rows)]
        table += [[s.name, "skipped", s.origin, "", "", "", "", "", s.reason] for s in skipped]
        header = ["case", "split", "source", "shape_zyx", "spacing_zyx", "swc_nodes", "swc_nodes_outside",
                  "label_voxels", "notes"]
        (tmp / LOG_NAME).write_text("\n".join("\t".join(r) for r in [header, *table]) + "\n",
                                    encoding="utf-8")
        dataset_json = {
            "name": name,
            "description": description,
            "channel_names": {"0": "zscore"},
            "labels": dict(LABELS),
            "numTraining": len(train),
            "numTest": len(test),
            "file_ending": FILE_ENDING,
            "neurino": {"split_seed": seed, "test_fraction": test_fraction, "test_cases": sorted(test),
                        **(metadata or {})},
        }
        (tmp / "dataset.json").write_text(json.dumps(dataset_json, indent=2) + "\n", encoding="utf-8")
    return RawDatasetReport(target, sorted(train), sorted(test), skipped)


def format_report(report: RawDatasetReport) -> str:
    """Human-readable summary: where, how many, and every skipped case with its reason."""
    lines = [f"wrote {report.path}: {len(report.train)} training and {len(report.test)} test cases",
             f"log: {report.path / LOG_NAME}"]
    if report.skipped:
        lines.append(f"skipped {len(report.skipped)}:")
        lines += [f"  {s.name}: {s.reason}" for s in report.skipped]
    return "\n".join(lines)
