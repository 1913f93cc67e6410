"""Summary statistics, the per-case CSV and the Markdown report of an evaluation."""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence

import numpy as np

from nnunetv2_neurino.evaluation.case import is_number

HD95_CONVENTION = (
    "HD95 = max of the two directed 95th percentiles (linear interpolation) of surface-to-surface "
    "Euclidean distances, in the spacing's unit (MONAI's convention); surface = foreground voxels with a "
    "6-neighbour outside the mask, voxels on the array border included. medpy's pooled hd95 is a different "
    "number. F1 = Dice of the foreground voxels. HD95 is undefined (NaN, excluded from means) when the "
    "prediction or the ground truth is empty.")
VAA3D_CONVENTION = (
    "ESA / DSA / PDS follow Vaa3D neuron_distance: each parent-child segment is sampled at "
    "N = int(1 + length + 0.5) points; a sample's distance is the minimum distance to the other tree's "
    "segments; ESA12 = mean distance (traced prediction → ground truth), DSA12 = mean over samples with "
    "d >= threshold, PDS12 = their fraction; ESA and PDS average both directions, DSA averages the "
    "directions that have such samples (0 if none). Float32 arithmetic as in Vaa3D. Distances in voxels.")
LCC_CONVENTION = (
    "`+lcc` = the prediction reduced to its largest 26-connected component before tracing (nnU-Net's "
    "keep-largest-component post-processing), which can delete real neurites.")


def summarise(rows: Sequence[dict], columns: Sequence[str]) -> dict:
    """Mean ± std (ddof 0) of each numeric column over the successful rows, NaNs left out and counted.

    Returns
    -------
    dict column → {mean, std, n (values used), n_nan}; mean/std are None when no value is defined.
    """
    out = {}
    ok = [r for r in rows if r.get("status") == "ok"]
    for c in columns:
        vals = [r.get(c) for r in ok]
        nums = np.array([float(v) for v in vals if is_number(v)], dtype=np.float64)
        out[c] = {"mean": float(nums.mean()) if nums.size else None,
                  "std": float(nums.std()) if nums.size else None,
                  "n": int(nums.size), "n_nan": int(len(vals) - nums.size)}
    return out


def _fmt(v) -> str:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        return "" if v is None else str(v)
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    return "nan" if math.isnan(v) else f"{float(v):.6g}"


def write_csv(path: str | os.PathLike, rows: Sequence[dict], columns: Sequence[str]) -> None:
    """One row per case, columns in the given order (``nan`` for undefined numbers)."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(columns)
        for r in rows:
            w.writerow([_fmt(r.get(c)) for c in columns])


def _pm(stat: dict, scale: float = 1.0, digits: int = 2) -> str:
    if stat["mean"] is None:
        return "n/a"
    s = f"{scale * stat['mean']:.{digits}f} ± {scale * stat['std']:.{digits}f}"
    return s + (f" ({stat['n_nan']} undefined)" if stat["n_nan"] else "")


def markdown_report(summary: dict, rows: Sequence[dict], figures: dict[str, str]) -> str:
    """The report text: header, failures, mean ± std table, conventions, per-case table, figure links."""
    m = summary["metrics"]
    lines = [f"# Evaluation: {summary['method']} on {summary['dataset']}", "",
             f"- predictions: `{summary['pred_dir']}`", f"- ground truth: `{summary['gt_dir']}`",
             f"- cases: {summary['n_cases']} ({summary['n_ok']} scored, {summary['n_failed']} failed)",
             f"- tracers: {', '.join(summary['tracers'])}; "
             f"threshold for DSA/PDS: {summary['threshold']:g} voxels",
             f"- ground-truth trees: {summary['gt_tree_note']}", ""]
    if summary["failed"]:
        lines += ["## Failed cases", "", "| case | error |", "|---|---|"]
        lines += [f"| {f['case']} | {f['error'].replace('|', '/')} |" for f in summary["failed"]]
        lines.append("")
    lines += ["## Summary (mean ± std over scored cases)", "", "| metric | value |", "|---|---|",
              f"| F1 (%) | {_pm(m['f1'], 100)} |", f"| precision (%) | {_pm(m['precision'], 100)} |",
              f"| recall (%) | {_pm(m['recall'], 100)} |", f"| HD95 | {_pm(m['hd95'])} |"]
    for t in summary["tracers"]:
        for v in (t, t + "+lcc"):
            lines += [f"| {v}: ESA / DSA / PDS | {_pm(m[f'{v}/ESA'])} / {_pm(m[f'{v}/DSA'])} / "
                      f"{_pm(m[f'{v}/PDS'], digits=3)} |"]
    lines += ["", "## Conventions", "", f"- {HD95_CONVENTION}", f"- {VAA3D_CONVENTION}",
              f"- {LCC_CONVENTION}",
              "- Failed cases are listed above and in `cases.csv` (status `failed`); the command exits with "
              "status 1 when any case failed, after writing every output.", "",
              "## Per case", ""]
    head = ["case", "status", "F1 %", "HD95"] + [f"{t} ESA/DSA/PDS" for t in summary["tracers"]]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if r.get("status") != "ok":
            lines.append(f"| {r['case']} | failed | | |" + " |" * len(summary["tracers"]))
            continue
        cells = [r["case"], "ok", f"{100 * r['f1']:.2f}", _fmt(r["hd95"])]
        cells += [" / ".join(_fmt(r[f"{t}/{k}"]) for k in ("ESA", "DSA", "PDS")) for t in summary["tracers"]]
        lines.append("| " + " | ".join(cells) + " |")
    if figures:
        lines += ["", "## Figures", ""] + [f"![{c}]({p})" for c, p in figures.items()]
    return "\n".join(lines) + "\n"
