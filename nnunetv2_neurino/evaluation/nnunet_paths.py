"""Method and data-set names from nnU-Net result paths."""

from __future__ import annotations

import os
import re
from pathlib import Path

_DATASET = re.compile(r"^Dataset(\d{3})_(.+)$")
_TRAINER_DIR = re.compile(r"^([^_].*?)__(.+?)__(.+)$")
_FOLD = re.compile(r"^fold_(\d+|all)$")


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
        elif (m := _TRAINER_DIR.match(part)) and out["dataset"]:
            out.update(trainer=m.group(1), plans=m.group(2), configuration=m.group(3))
        elif m := _FOLD.match(part):
            out["fold"] = m.group(1)
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
