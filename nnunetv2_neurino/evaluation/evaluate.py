"""Evaluate an nnU-Net prediction folder against ground truth: per-case CSV, summary.json, report, figures.

Folder layout (nnU-Net's): predictions ``CASE.<ext>``, ground truth ``CASE.<ext>``, images
``CASE_0000.<ext>``, gold-standard SWCs ``CASE.swc`` (image-space voxel coordinates). Outputs in ``out``:
``cases.csv``, ``summary.json``, ``report.md`` and ``figures/CASE.png``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from tqdm import tqdm

from nnunetv2_neurino.data.volumes import list_cases
from nnunetv2_neurino.errors import NeurinoError
from nnunetv2_neurino.evaluation.case import SEG_KEYS, CaseFiles, score_case_safe, tree_columns
from nnunetv2_neurino.evaluation.report import (
    HD95_CONVENTION,
    LCC_CONVENTION,
    VAA3D_CONVENTION,
    markdown_report,
    summarise,
    write_csv,
)
from nnunetv2_neurino.io_utils import atomic_directory, atomic_file, json_dumps
from nnunetv2_neurino.nnunet_layout import names_from_results_path, raw_swc_dir


def _find_swc(folder: Path, case: str) -> Path | None:
    exact = folder / f"{case}.swc"
    if exact.is_file():
        return exact
    others = sorted(p for p in folder.glob(f"{case}.*") if p.name.lower().endswith(".swc"))
    return others[0] if len(others) == 1 else None  # e.g. CASE.tif.swc (CWMBS naming)


def collect_cases(pred_dir: str | os.PathLike, gt_dir: str | os.PathLike, images_dir=None,
                  gt_swc_dir=None) -> list[CaseFiles]:
    """Pair prediction, ground-truth, image and SWC files by case name (union of prediction and GT cases).

    A case present on one side only is kept with the other file None (it fails when scored).
    """
    preds, gts = list_cases(pred_dir), list_cases(gt_dir)
    images = list_cases(images_dir, channel_suffix="_0000") if images_dir else {}
    if gt_swc_dir is not None and not Path(gt_swc_dir).is_dir():
        raise NeurinoError(f"{gt_swc_dir}: no such folder (gt_swc_dir)")
    cases = sorted(set(preds) | set(gts))
    if not cases:
        raise NeurinoError(f"{pred_dir}: no prediction images found (and none in {gt_dir})")
    return [CaseFiles(c, preds.get(c), gts.get(c), images.get(c),
                      _find_swc(Path(gt_swc_dir), c) if gt_swc_dir else None) for c in cases]


def _run_cases(cases: Sequence[CaseFiles], workers: int, progress: bool, kwargs_for) -> list[dict]:
    bar = tqdm(total=len(cases), desc="evaluate", unit="case", disable=not progress)
    rows: dict[str, dict] = {}
    if workers <= 1:
        for c in cases:
            rows[c.case] = score_case_safe(c, **kwargs_for(c))
            bar.update()
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = {pool.submit(score_case_safe, c, **kwargs_for(c)): c for c in cases}
            for fut in as_completed(futures):
                c = futures[fut]
                try:
                    rows[c.case] = fut.result()
                except Exception as e:  # a worker that died (out of memory, killed)
                    rows[c.case] = {"case": c.case, "status": "failed", "error": f"worker died: {e!r}"}
                bar.update()
    bar.close()
    return [rows[c.case] for c in cases]


ROOT_CONVENTION = ("distance (voxels) from the gold SWC's root to the nearest root of the traced forest; "
                   "with root_at_gold each traced tree was first re-rooted at its node nearest that root")


def evaluate_folders(pred_dir: str | os.PathLike, gt_dir: str | os.PathLike, out_dir: str | os.PathLike, *,
                     images_dir: str | os.PathLike | None = None, gt_swc_dir: str | os.PathLike | None = None,
                     tracers: Sequence[str] = ("builtin",), method: str | None = None,
                     dataset: str | None = None, workers: int = 1, threshold: float = 2.0,
                     label: int | None = None, spacing: Sequence[float] | None = None, figures: bool = True,
                     force: bool = False, progress: bool = True, root_at_gold: bool = False) -> dict:
    """Score every case of an nnU-Net prediction folder and write the evaluation folder ``out_dir``.

    Parameters
    ----------
    pred_dir, gt_dir : prediction and ground-truth label folders (``CASE.nii.gz``, ``.tif``, ``.npy``...).
    out_dir : output folder (written atomically; an existing one needs ``force``).
    images_dir : optional raw images ``CASE_0000.*`` (figure background).
    gt_swc_dir : optional gold SWCs ``CASE.swc``; without one, the ground-truth mask is traced with the same
        tracer (the report says so).
    tracers : tracer names, see :mod:`nnunetv2_neurino.tracing.registry`.
    method, dataset : names for the tables. Default method: the trainer of an nnU-Net results path
        (``.../DatasetXXX_NAME/TRAINER__PLANS__CONFIG/fold_N/validation``), else the prediction folder's
        name. Default data set: ``NAME`` of ``DatasetXXX_NAME`` in the prediction path, else in the
        ``plans.json`` nnUNetv2_predict writes into its output folder, else in the ground-truth path
        (e.g. ``nnUNet_raw/DatasetXXX_NAME/labelsTs``), else the ground-truth folder's parent name.
    workers : parallel processes (1 = in this process).
    threshold : ESA/DSA/PDS threshold, voxels.
    label : scored label value (default: all nonzero labels are foreground).
    spacing : (z, y, x) override of the files' spacing (HD95 unit).
    figures : write ``figures/CASE.png``.
    root_at_gold : re-root each traced tree at its node nearest the gold SWC's root before scoring
        (needs ``gt_swc_dir``); the distance from the gold root to the nearest traced root is reported
        either way (``V/root_dist``, voxels).

    Returns
    -------
    The summary dict (also written as ``summary.json``); ``n_failed`` > 0 when some case failed — the
    other cases are still scored and every output is written.
    """
    if workers < 1:
        raise NeurinoError(f"workers must be >= 1, got {workers}")
    if not tracers:
        raise NeurinoError("at least one tracer is needed")
    from nnunetv2_neurino.tracing.registry import check_tracer

    for t in tracers:
        check_tracer(t)  # unknown names fail before any work
    if any(t != "builtin" for t in tracers):
        from nnunetv2_neurino.tracing.vaa3d import find_vaa3d

        find_vaa3d()  # no Vaa3D: say how to get it once, before any work, instead of failing every case
    if root_at_gold and gt_swc_dir is None:
        raise NeurinoError("root_at_gold needs the gold SWCs (gt_swc_dir): the root is taken from them")
    cases = collect_cases(pred_dir, gt_dir, images_dir, gt_swc_dir)
    parsed = names_from_results_path(pred_dir)
    method = method or parsed["method"] or Path(pred_dir).resolve().name
    dataset = (dataset or parsed["dataset_name"] or names_from_results_path(gt_dir)["dataset_name"]
               or Path(gt_dir).resolve().parent.name)
    out_dir = Path(out_dir)
    with atomic_directory(out_dir, force=force) as tmp:
        fig_dir = tmp / "figures"
        if figures:
            fig_dir.mkdir()

        def kwargs_for(c: CaseFiles) -> dict:
            return dict(tracers=list(tracers), threshold=threshold, label=label, spacing=spacing,
                        figure_path=(fig_dir / f"{c.case}.png") if figures else None,
                        root_at_gold=root_at_gold)

        rows = _run_cases(cases, workers, progress, kwargs_for)
        tcols = tree_columns(tracers)
        numeric = list(SEG_KEYS) + [c for c in tcols if not c.endswith("/flag")]
        columns = ["case", "status", "error", *SEG_KEYS, "hd95_flag", "gt_tree", *tcols]
        write_csv(tmp / "cases.csv", rows, columns)
        failed = [{"case": r["case"], "error": r["error"]} for r in rows if r["status"] != "ok"]
        sources = {r.get("gt_tree") for r in rows if r["status"] == "ok"}
        gt_note = ("gold-standard SWC files" if sources == {"swc file"} else
                   "traced from the ground-truth masks with the same tracer (no gold SWCs)"
                   if sources == {"traced GT mask"} else
                   "mixed: see the gt_tree column of cases.csv (cases without an SWC file were traced "
                   "from the ground-truth mask)" if sources else "none scored")
        summary = {
            "method": method, "dataset": dataset, "nnunet": {k: parsed[k] for k in
                                                              ("dataset", "trainer", "plans", "configuration",
                                                               "fold")},
            "pred_dir": str(Path(pred_dir).resolve()), "gt_dir": str(Path(gt_dir).resolve()),
            "gt_swc_dir": str(Path(gt_swc_dir).resolve()) if gt_swc_dir else None,
            "tracers": list(tracers), "threshold": threshold, "label": label, "root_at_gold": root_at_gold,
            "n_cases": len(rows), "n_ok": len(rows) - len(failed), "n_failed": len(failed), "failed": failed,
            "gt_tree_note": gt_note,
            "metrics": summarise(rows, numeric),
            "conventions": {"hd95": HD95_CONVENTION, "tree": VAA3D_CONVENTION, "lcc": LCC_CONVENTION,
                            "root_dist": ROOT_CONVENTION,
                            "std": "population standard deviation (ddof 0) over scored cases, NaNs excluded"},
        }
        (tmp / "summary.json").write_text(json_dumps(summary), encoding="utf-8")
        figs = {r["case"]: f"figures/{r['case']}.png" for r in rows
                if figures and (fig_dir / f"{r['case']}.png").is_file()}
        (tmp / "report.md").write_text(markdown_report(summary, rows, figs), encoding="utf-8")
    return summary


def write_topology_summary(validation_dir: str | os.PathLike, gt_dir: str | os.PathLike | None = None,
                           gt_swc_dir: str | os.PathLike | None = None, tracers: Sequence[str] = ("builtin",),
                           workers: int = 1, threshold: float = 2.0, progress: bool = False) -> Path:
    """Write ``summary_topology.json`` next to nnU-Net's ``summary.json`` in a validation folder.

    Meant to be called by a trainer after nnU-Net's final validation (nnU-Net has no hook for custom
    metrics). No figures, report or CSV: one JSON with the per-case rows (``"per_case"``) and the statistics
    under ``"metrics"``, the schema of :func:`evaluate_folders`'s ``summary.json`` (``neurino compare`` reads
    both).

    Parameters
    ----------
    validation_dir : ``.../fold_N/validation`` with the predicted ``CASE.nii.gz`` files.
    gt_dir : ground-truth masks; default ``$nnUNet_preprocessed/DatasetXXX_NAME/gt_segmentations``.
    gt_swc_dir : gold SWCs; default ``$nnUNet_raw/DatasetXXX_NAME/swcTr`` when that folder exists, else the
        ground-truth masks are traced.
    tracers, workers, threshold : as for :func:`evaluate_folders`.

    Returns
    -------
    Path of the written JSON.
    """
    validation_dir = Path(validation_dir)
    parsed = names_from_results_path(validation_dir)
    if gt_dir is None:
        pre = os.environ.get("nnUNet_preprocessed")
        if not (pre and parsed["dataset"]):
            raise NeurinoError(f"{validation_dir}: pass gt_dir (cannot derive it: nnUNet_preprocessed "
                               "unset or no DatasetXXX_NAME in the path)")
        gt_dir = Path(pre) / parsed["dataset"] / "gt_segmentations"
    if gt_swc_dir is None:
        gt_swc_dir = raw_swc_dir(parsed["dataset"])
    cases = collect_cases(validation_dir, gt_dir, None, gt_swc_dir)
    preds = [c for c in cases if c.pred is not None]  # validation covers one fold: ignore other GT cases

    def kwargs_for(c: CaseFiles) -> dict:
        return dict(tracers=list(tracers), threshold=threshold)

    rows = _run_cases(preds, workers, progress, kwargs_for)
    numeric = list(SEG_KEYS) + [c for c in tree_columns(tracers) if not c.endswith("/flag")]
    out = {"method": parsed["method"], "dataset": parsed["dataset_name"], "tracers": list(tracers),
           "threshold": threshold, "gt_dir": str(gt_dir),
           "gt_swc_dir": str(gt_swc_dir) if gt_swc_dir else None,
           "n_cases": len(rows), "n_ok": sum(r["status"] == "ok" for r in rows),
           "n_failed": sum(r["status"] != "ok" for r in rows), "metrics": summarise(rows, numeric),
           "per_case": rows,
           "conventions": {"hd95": HD95_CONVENTION, "tree": VAA3D_CONVENTION, "lcc": LCC_CONVENTION}}
    path = validation_dir / "summary_topology.json"
    with atomic_file(path, force=True) as tmp:
        tmp.write_text(json_dumps(out), encoding="utf-8")
    return path
