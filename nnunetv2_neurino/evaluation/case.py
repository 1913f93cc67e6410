"""Score one case: segmentation metrics, then tracing + ESA/DSA/PDS with and without keep-largest-component.

Row keys (flat, CSV-ready): ``case``, ``status`` (``ok`` / ``failed``), ``error``, ``f1``, ``precision``,
``recall``, ``hd95``, ``hd95_flag``, ``gt_tree`` (``swc file`` or ``traced GT mask``), and per tracer ``T``
and variant ``V`` in (``T``, ``T+lcc``): ``V/ESA V/DSA V/PDS V/ESA12 V/ESA21 V/DSA12 V/DSA21 V/PDS12 V/PDS21
V/nodes V/root_dist V/flag``. Direction 12 = traced prediction → ground truth. ``V/root_dist``: distance
(voxels) from the gold SWC's root to the nearest root of the traced forest (NaN without a gold SWC); with
``root_at_gold`` every traced tree is first re-rooted at its node nearest that gold root (the DIADEM
challenge gave tracers the seed point). ESA / DSA / PDS do not depend on the roots.
"""

from __future__ import annotations

import math
import traceback
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnunetv2_neurino.errors import NeurinoError

TREE_KEYS = ("ESA", "DSA", "PDS", "ESA12", "ESA21", "DSA12", "DSA21", "PDS12", "PDS21")
SEG_KEYS = ("f1", "precision", "recall", "hd95")
LCC = "+lcc"


@dataclass(frozen=True)
class CaseFiles:
    """Files of one case (any may be None when absent from its folder)."""

    case: str
    pred: Path | None
    gt: Path | None
    image: Path | None = None
    gt_swc: Path | None = None


def tree_columns(tracers: Sequence[str]) -> list[str]:
    """Column names of the tree metrics for ``tracers`` (both variants), in CSV order."""
    return [f"{t}{v}/{k}" for t in tracers for v in ("", LCC) for k in (*TREE_KEYS, "nodes", "root_dist",
                                                                          "flag")]


def _gold_root(tree) -> np.ndarray | None:
    """(x, y, z) of the gold tree's first root (DIADEM gold standards have exactly one)."""
    roots = tree.roots
    return None if roots.size == 0 else tree.xyz[roots[0]].astype(np.float64)


def _root_distance(tree, point: np.ndarray | None) -> float:
    """Distance from ``point`` to the nearest root of ``tree`` (NaN when either is missing)."""
    roots = tree.roots
    if point is None or roots.size == 0:
        return float("nan")
    return float(np.min(np.linalg.norm(tree.xyz[roots] - point, axis=1)))


def _foreground(arr: np.ndarray, label: int | None) -> np.ndarray:
    return (arr == label) if label is not None else (arr != 0)


def score_case(files: CaseFiles, tracers: Sequence[str], threshold: float = 2.0, label: int | None = None,
               spacing: Sequence[float] | None = None, figure_path: Path | None = None,
               root_at_gold: bool = False) -> dict:
    """Score one case (raises on bad input; :func:`score_case_safe` turns that into a failed row).

    Parameters
    ----------
    files : the case's prediction, ground truth and optional image / gold SWC.
    tracers : tracer names (see :mod:`nnunetv2_neurino.tracing.registry`).
    threshold : ESA/DSA/PDS "different" distance, voxels.
    label : label value scored (default: every nonzero label is foreground).
    spacing : (z, y, x) override; default: the ground-truth file's spacing (must match the prediction's).
    figure_path : write the case figure (PNG) there when given.
    root_at_gold : re-root each traced tree at its node nearest the gold SWC's root (needs ``files.gt_swc``).

    Returns
    -------
    Row dict (see module docstring).
    """
    from nnunetv2_neurino.data.volumes import read_label_volume, same_spacing
    from nnunetv2_neurino.metrics.neuron_distance import neuron_distance
    from nnunetv2_neurino.metrics.segmentation import segmentation_metrics
    from nnunetv2_neurino.swc import read_swc
    from nnunetv2_neurino.tracing.registry import get_tracer, trace_with_and_without_lcc
    from nnunetv2_neurino.tracing.roots import reroot_near

    if files.pred is None:
        raise NeurinoError(f"case {files.case}: no prediction file")
    if files.gt is None:
        raise NeurinoError(f"case {files.case}: no ground-truth file")
    pred_arr, sp_pred = read_label_volume(files.pred)
    gt_arr, sp_gt = read_label_volume(files.gt)
    if pred_arr.shape != gt_arr.shape:
        raise NeurinoError(f"{files.pred}: shape {pred_arr.shape} differs from {files.gt}: {gt_arr.shape}")
    if spacing is None and not same_spacing(sp_pred, sp_gt):
        raise NeurinoError(f"{files.pred}: spacing {sp_pred} differs from {files.gt}: {sp_gt}")
    sp = tuple(float(s) for s in (spacing if spacing is not None else sp_gt))
    pred, gt = _foreground(pred_arr, label), _foreground(gt_arr, label)

    seg = segmentation_metrics(pred, gt, sp)
    row: dict = {"case": files.case, "status": "ok", "error": ""}
    row.update({k: seg[k] for k in SEG_KEYS})
    row["hd95_flag"] = seg["flag"]
    row["gt_tree"] = "swc file" if files.gt_swc is not None else "traced GT mask"

    gt_file_tree = None
    if files.gt_swc is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # missing parents become roots; reported by swc-distance
            gt_file_tree = read_swc(files.gt_swc)
    elif root_at_gold:
        raise NeurinoError(f"case {files.case}: root_at_gold needs a gold SWC (gt_swc_dir)")
    gold_root = _gold_root(gt_file_tree) if gt_file_tree is not None else None
    drawn: dict = {}
    for name in tracers:
        gt_tree = gt_file_tree if gt_file_tree is not None else get_tracer(name)(gt, sp)
        for variant, tree in zip(("", LCC), trace_with_and_without_lcc(name, pred, sp)):
            if root_at_gold and gold_root is not None:
                tree = reroot_near(tree, gold_root)
            r = neuron_distance(tree, gt_tree, threshold=threshold)
            key = f"{name}{variant}"
            row.update({f"{key}/{k}": r[k] for k in TREE_KEYS})
            row[f"{key}/nodes"] = len(tree)
            row[f"{key}/root_dist"] = _root_distance(tree, gold_root)
            row[f"{key}/flag"] = r["flag"]
            drawn[key] = (tree, gt_tree)
    if figure_path is not None:
        from nnunetv2_neurino.evaluation.figures import case_figure

        image = None
        if files.image is not None:
            image, _ = read_label_volume(files.image)
        case_figure(figure_path, files.case, image, gt, pred, drawn, row)
    return row


def score_case_safe(files: CaseFiles, tracers: Sequence[str], **kwargs) -> dict:
    """:func:`score_case`, but any exception gives a row with ``status='failed'`` and the error text."""
    try:
        return score_case(files, tracers, **kwargs)
    except Exception as e:  # one bad case must not stop the others
        if isinstance(e, NeurinoError):
            msg = str(e)
        else:
            tb = traceback.extract_tb(e.__traceback__)
            where = f" (at {Path(tb[-1].filename).name}:{tb[-1].lineno})" if tb else ""
            msg = f"{type(e).__name__}: {e}{where}"
        return {"case": files.case, "status": "failed", "error": " ".join(msg.split())}


def is_number(v) -> bool:
    """True for real numbers that are not NaN (ints, floats, numpy scalars; not bools or strings)."""
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and not (
        isinstance(v, (float, np.floating)) and math.isnan(v))
