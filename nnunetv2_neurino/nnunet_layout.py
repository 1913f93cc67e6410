"""nnU-Net's folder layout: data-set, trainer and fold folder names, and the paths built from them.

nnU-Net v2 (documentation/dataset_format.md, documentation/how_to_use_nnunet.md) names a data set
``DatasetXXX_NAME`` (XXX = 3-digit id) under ``nnUNet_raw`` / ``nnUNet_preprocessed`` / ``nnUNet_results``;
a trained model is ``<nnUNet_results>/DatasetXXX_NAME/TRAINER__PLANS__CONFIG/fold_N``. Our raw data sets
add ``swcTr`` / ``swcTs`` beside ``labelsTr`` / ``labelsTs`` (gold SWCs, ``CASE.swc``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from nnunetv2_neurino.errors import NeurinoError

_DATASET = re.compile(r"^Dataset(\d{3})_(.+)$")
_FOLD = re.compile(r"^fold_(\d+|all)$")


def dataset_folder_name(dataset_id: int, name: str) -> str:
    """nnU-Net's folder name ``DatasetXXX_NAME`` (id zero-padded to 3 digits)."""
    if not 1 <= int(dataset_id) <= 999:
        raise NeurinoError(f"dataset id {dataset_id} must be between 1 and 999 (nnU-Net convention)")
    if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
        raise NeurinoError(f"dataset name {name!r} may only contain letters, digits, '-' and '_'")
    return dataset_id_prefix(dataset_id) + name


def dataset_id_prefix(dataset_id: int) -> str:
    """``DatasetXXX_``: the start of every folder name of data set id ``dataset_id``."""
    return f"Dataset{int(dataset_id):03d}_"


def fold_id(folder_name: str) -> str | None:
    """``"3"`` for ``fold_3``, ``"all"`` for ``fold_all``, None for any other name."""
    m = _FOLD.match(folder_name)
    return m.group(1) if m else None


def split_trainer_folder_name(folder_name: str) -> tuple[str, str, str] | None:
    """(trainer, plans, configuration) of ``TRAINER__PLANS__CONFIG``; None when the name is not three
    non-empty parts joined by ``__``."""
    parts = folder_name.split("__")
    return (parts[0], parts[1], parts[2]) if len(parts) == 3 and all(parts) else None


def resolve_raw_root(out: str | os.PathLike | None) -> Path:
    """``out`` if given, else ``$nnUNet_raw``; NeurinoError when neither is set."""
    if out:
        return Path(out)
    env = os.environ.get("nnUNet_raw")
    if not env:
        raise NeurinoError("no output folder given and the nnUNet_raw environment variable is not set")
    return Path(env)


def raw_swc_dir(dataset: str, split: str = "Tr") -> Path | None:
    """``$nnUNet_raw/DATASET/swc<split>`` (gold SWCs) when ``nnUNet_raw`` is set and that folder exists."""
    raw = os.environ.get("nnUNet_raw")
    if not (raw and dataset):
        return None
    folder = Path(raw) / dataset / f"swc{split}"
    return folder if folder.is_dir() else None


def names_from_results_path(path: str | os.PathLike) -> dict:
    """Parse ``.../DatasetXXX_NAME/TRAINER__PLANS__CONFIG/fold_N/validation``-like paths.

    Parameters
    ----------
    path : any folder at or below a ``DatasetXXX_NAME`` folder. A folder elsewhere that holds the
        ``plans.json`` which ``nnUNetv2_predict`` writes beside its predictions gives the data set (its
        ``dataset_name``) and the plans name; the trainer is not recorded there.

    Returns
    -------
    dict with ``dataset`` (e.g. ``Dataset501_Gold``, or None), ``dataset_name`` (``Gold``), ``trainer``,
    ``plans``, ``configuration``, ``fold`` (None where absent) and ``method`` (the trainer name
    when known, or None).
    """
    out = dict(dataset=None, dataset_name=None, trainer=None, plans=None, configuration=None, fold=None,
               method=None)
    for part in Path(path).resolve().parts:
        if m := _DATASET.match(part):
            out.update(dataset=part, dataset_name=m.group(2))
        elif (names := split_trainer_folder_name(part)) and out["dataset"]:
            out.update(trainer=names[0], plans=names[1], configuration=names[2])
        elif fold := fold_id(part):
            out["fold"] = fold
    if out["dataset"] is None:
        plans = _read_plans(Path(path) / "plans.json")
        if (m := _DATASET.match(str(plans.get("dataset_name", "")))) is not None:
            out.update(dataset=m.group(0), dataset_name=m.group(2), plans=plans.get("plans_name"))
    if out["trainer"]:
        out["method"] = out["trainer"]
    return out


def _read_plans(path: Path) -> dict:
    """nnU-Net's plans.json as a dict; {} when absent or unreadable (names are a convenience only)."""
    import json

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
