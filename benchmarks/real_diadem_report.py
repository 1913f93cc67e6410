"""Tables and figures of ``benchmarks/real_diadem.py``: ``real_diadem.md`` / ``.json``, one MIP per row."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from nnunetv2_neurino.data.preview import normalised_mip

#: row key → name in the tables (learned rows first, then the two reference rows without learning)
ROWS = {"neurino_tasl": "NeurINO-T (scratch) + TASL", "neurino_notasl": "NeurINO-T (scratch), no TASL",
        "nnunet": "nnU-Net", "nnunet_tasl": "nnU-Net + TASL",
        "otsu": "Otsu threshold → built-in tracer (no learning)",
        "gold_mask": "gold-rendered mask → built-in tracer (tracer ceiling)"}
METRICS = (("f1", "F1 %", 100.0), ("hd95", "HD95 vox", 1.0), ("builtin/ESA", "ESA", 1.0),
           ("builtin/DSA", "DSA", 1.0), ("builtin/PDS", "PDS", 1.0))


def _mean(summary: dict, key: str) -> float:
    value = summary.get("metrics", {}).get(key, {}).get("mean")
    return float("nan") if value is None else float(value)


def _fmt(value: float, scale: float) -> str:
    if not math.isfinite(value):
        return "—"
    return f"{value * scale:.2f}" if scale == 1.0 else f"{value * scale:.1f}"


def write_tables(work: Path, meta: dict, rows: dict[str, dict]) -> None:
    """``real_diadem.md`` (the table plus the run's settings) and ``real_diadem.json`` (everything)."""
    head = ("| method | " + " | ".join(m[1] for m in METRICS) +
            " | iterations | seed | train s | predict s | evaluate s | row s |")
    lines = [head, "|" + "---|" * (len(METRICS) + 7)]
    out_rows = {}
    for key, row in rows.items():
        s = row["summary"]
        vals = {m[0]: _mean(s, m[0]) for m in METRICS}
        tr = row.get("training")
        its = f"{tr['iterations_done']}/{tr['planned_iterations']}" if tr else "—"
        seed = str(tr["seed"]) if tr else "—"
        secs = row["seconds"]
        lines.append(f"| {row['name']} | " + " | ".join(_fmt(vals[m[0]], m[2]) for m in METRICS) +
                     f" | {its} | {seed} | {secs.get('train', '—')} | {secs.get('predict', '—')} | "
                     f"{secs['evaluate']} | {secs['total']} |")
        out_rows[key] = {"name": row["name"], "metrics_mean": vals, "seconds": secs, "training": tr,
                         "trainer": row.get("trainer"), "n_cases": s.get("n_cases"),
                         "n_failed": s.get("n_failed"), "metrics": s.get("metrics")}
    settings = [f"- command: `{meta['command']}`", f"- machine: {meta['machine']}; device {meta['device']}",
                f"- started {meta['started_utc']}, total wall time {meta['total_seconds'] / 60:.1f} min",
                f"- train {', '.join(meta['train'])}; test {', '.join(meta['test'])}; x/y mean-pooled "
                f"×{meta['xy_downsample']}, spacing (z, y, x) {meta['spacing_zyx_um']} µm",
                f"- budget: {meta['epochs']} epochs × {meta['iterations_per_epoch']} iterations = "
                f"{meta['iterations']} iterations per learned row, seed {meta['seed']}, 3d_fullres patch "
                f"{meta['patch']}",
                "- metrics: means over the test stacks; F1/HD95 of the mask (HD95 in voxels), ESA/DSA/PDS "
                "of the built-in tracer's tree against the gold SWC (voxels)"]
    (work / "real_diadem.md").write_text("\n".join(lines + [""] + settings) + "\n", encoding="utf-8")
    doc = json.dumps({"meta": meta, "rows": out_rows}, indent=2, default=str)
    (work / "real_diadem.json").write_text(doc, encoding="utf-8")


def write_figures(work: Path, raw_ds: Path, rows: dict[str, dict]) -> list[Path]:
    """One PNG per row and test case: image MIP (grey), prediction MIP (red), gold SWC (green lines)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.collections import LineCollection
    from matplotlib.figure import Figure

    from nnunetv2_neurino.data.readers import read_image
    from nnunetv2_neurino.swc import read_swc

    out = work / "figures"
    out.mkdir(exist_ok=True)
    written = []
    for img_path in sorted((raw_ds / "imagesTs").glob("*_0000.nii.gz")):
        case = img_path.name[:-len("_0000.nii.gz")]
        image_mip = normalised_mip(read_image(img_path)[0])
        gold = read_swc(raw_ds / "swcTs" / f"{case}.swc")
        child, parent = gold.edges()
        segs = np.stack([gold.xyz[child, :2], gold.xyz[parent, :2]], axis=1)
        for key, row in rows.items():
            pred = read_image(work / "predictions" / key / f"{case}.nii.gz")[0] > 0
            rgb = np.repeat(image_mip[..., None], 3, axis=-1) * 0.8
            pm = pred.max(axis=0)
            rgb[pm] = 0.45 * rgb[pm] + 0.55 * np.array([1.0, 0.15, 0.15])
            fig = Figure(figsize=(4.6, 5.0), dpi=80)
            FigureCanvasAgg(fig)
            ax = fig.add_axes([0.01, 0.01, 0.98, 0.86])
            ax.imshow(rgb, interpolation="nearest")
            ax.add_collection(LineCollection(segs, colors="#22ee44", linewidths=0.6, alpha=0.8))
            ax.set_axis_off()
            m = {k: _mean(row["summary"], k) for k, _, _ in METRICS}
            fig.suptitle(f"{case}: {row['name']}\nF1 {100 * m['f1']:.1f}%  ESA {m['builtin/ESA']:.2f}  "
                         f"DSA {m['builtin/DSA']:.2f}  PDS {m['builtin/PDS']:.2f}\n(red prediction MIP, "
                         "green gold SWC, grey image MIP)", fontsize=7)
            path = out / f"{case}_{key}.png"
            fig.savefig(path, format="png")
            written.append(path)
    return written
