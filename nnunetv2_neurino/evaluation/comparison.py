"""Method × data-set tables in the layout of the paper's tables 6 (F1 % / HD95) and 7 (ESA / DSA / PDS per
tracer), from evaluation folders written by :func:`nnunetv2_neurino.evaluation.evaluate_folders`.

Best and second-best values per column and metric are marked (Markdown bold / italic, LaTeX
``\\textbf`` / ``\\underline``), direction-aware: higher F1 is better, lower HD95 / ESA / DSA / PDS is better.
Ranking uses the values as displayed (rounded), so equal-looking numbers share a mark.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nnunetv2_neurino.errors import NeurinoError
from nnunetv2_neurino.io_utils import atomic_directory


@dataclass(frozen=True)
class Metric:
    """One number in a cell: summary key, label, direction, display scale and decimals."""

    key: str
    label: str
    higher_better: bool
    scale: float = 1.0
    digits: int = 2


@dataclass(frozen=True)
class Column:
    """A table column: one data set (and tracer for table 7) with its metrics."""

    dataset: str
    tracer: str | None
    metrics: tuple[Metric, ...]

    @property
    def title(self) -> str:
        return self.dataset if self.tracer is None else f"{self.dataset} · {self.tracer}"


@dataclass
class Run:
    """One evaluation folder's summary."""

    method: str
    dataset: str
    tracers: list[str]
    metrics: dict
    path: Path


@dataclass
class Table:
    """values[method][column index][metric index] (display-rounded float or None) and marks alike."""

    title: str
    methods: list[str]
    columns: list[Column]
    values: dict = field(default_factory=dict)
    marks: dict = field(default_factory=dict)


def seg_metrics() -> tuple[Metric, ...]:
    return (Metric("f1", "F1 (%)", True, 100.0), Metric("hd95", "HD95", False))


def tree_metrics(tracer: str) -> tuple[Metric, ...]:
    return (Metric(f"{tracer}/ESA", "ESA", False), Metric(f"{tracer}/DSA", "DSA", False),
            Metric(f"{tracer}/PDS", "PDS", False))


def summary_file(folder: str | os.PathLike) -> Path:
    """The summary :func:`load_runs` reads in ``folder``: a ``summary.json`` or ``summary_topology.json`` file
    given directly, ``summary_topology.json`` in an nnU-Net ``fold_N/validation`` folder (whose
    ``summary.json`` is nnU-Net's own), else ``summary.json`` (a ``neurino evaluate`` folder)."""
    folder = Path(folder)
    if folder.is_file():
        return folder
    topo = folder / "summary_topology.json"
    return topo if topo.is_file() else folder / "summary.json"


def _summary_metrics(s: dict) -> dict:
    """The statistics of a summary: ``"metrics"`` (evaluate's ``summary.json`` and current
    ``summary_topology.json``) or ``"mean"`` (``summary_topology.json`` written before the schema was one)."""
    return dict(s["metrics"] if "metrics" in s else s["mean"])


def load_runs(eval_dirs: Sequence[str | os.PathLike], names: Sequence[str] | None = None) -> list[Run]:
    """Read the summary of each folder (:func:`summary_file`); ``names`` override the method names.

    Both ``neurino evaluate``'s ``summary.json`` and the trainers' ``summary_topology.json`` (one schema:
    :func:`nnunetv2_neurino.evaluation.evaluate.write_topology_summary`) are read, older
    ``summary_topology.json`` files with their statistics under ``"mean"`` too.

    Raises
    ------
    NeurinoError : missing / unreadable summary, ``names`` of the wrong length, or two folders with the
        same (method, data set).
    """
    if names is not None and len(names) != len(eval_dirs):
        raise NeurinoError(f"names has {len(names)} entries for {len(eval_dirs)} evaluation folders")
    runs: list[Run] = []
    seen: dict[tuple[str, str], Path] = {}
    for i, d in enumerate(eval_dirs):
        path = summary_file(d)
        if not path.is_file():
            raise NeurinoError(f"{d}: no summary.json (is it a `neurino evaluate` output folder?) and no "
                               "summary_topology.json (an nnU-Net validation folder of a neurino trainer)")
        try:
            s = json.loads(path.read_text(encoding="utf-8"))
            run = Run(method=str(names[i] if names is not None else s["method"]),
                      dataset=str(s["dataset"] or path.resolve().parent.name),
                      tracers=list(s.get("tracers", [])), metrics=_summary_metrics(s), path=Path(d))
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise NeurinoError(f"{path}: not a valid evaluation summary ({type(e).__name__}: {e})") from None
        key = (run.method, run.dataset)
        if key in seen:
            raise NeurinoError(f"{d} and {seen[key]} both hold method {run.method!r} on data set "
                               f"{run.dataset!r}; pass names to tell them apart")
        seen[key] = Path(d)
        runs.append(run)
    if not runs:
        raise NeurinoError("no evaluation folders given")
    return runs


def _unique(seq):
    return list(dict.fromkeys(seq))


def _rank(values: list[float | None], higher_better: bool) -> list[str]:
    distinct = sorted({v for v in values if v is not None}, reverse=higher_better)
    best = distinct[0] if distinct else None
    second = distinct[1] if len(distinct) > 1 else None
    return ["best" if v is not None and v == best else "second" if v is not None and v == second else ""
            for v in values]


def build_table(runs: Sequence[Run], columns: Sequence[Column], title: str) -> Table:
    """Fill and rank a table: one row per method (first-appearance order), one cell per column."""
    methods = _unique(r.method for r in runs)
    by_key = {(r.method, r.dataset): r for r in runs}
    t = Table(title, methods, list(columns))
    for m in methods:
        t.values[m] = []
        for c in columns:
            run = by_key.get((m, c.dataset))
            cell = []
            for met in c.metrics:
                stat = run.metrics.get(met.key) if run is not None else None
                mean = stat.get("mean") if isinstance(stat, dict) else None
                cell.append(None if mean is None else round(float(mean) * met.scale, met.digits))
            t.values[m].append(cell)
    for m in methods:
        t.marks[m] = [[""] * len(c.metrics) for c in columns]
    for ci, c in enumerate(columns):
        for ki, met in enumerate(c.metrics):
            ranks = _rank([t.values[m][ci][ki] for m in methods], met.higher_better)
            for m, r in zip(methods, ranks):
                t.marks[m][ci][ki] = r
    return t


def compare(eval_dirs: Sequence[str | os.PathLike], names: Sequence[str] | None = None,
            lcc: bool = False) -> dict[str, Table]:
    """Tables 6 and 7 from evaluation folders.

    Parameters
    ----------
    eval_dirs : folders written by ``neurino evaluate`` (one per method × data set).
    names : method names replacing those stored in the summaries.
    lcc : use the topology metrics after keep-largest-component (``<tracer>+lcc``).

    Returns
    -------
    ``{"table6": Table, "table7": Table}`` (table 7 has a column per data set × tracer).
    """
    runs = load_runs(eval_dirs, names)
    datasets = _unique(r.dataset for r in runs)
    tracers = _unique(t for r in runs for t in r.tracers)
    t6 = build_table(runs, [Column(d, None, seg_metrics()) for d in datasets],
                     "Segmentation: F1 (%) / HD95 (higher F1, lower HD95 is better)")
    suffix = "+lcc" if lcc else ""
    title7 = "Tracing: ESA / DSA / PDS (lower is better)" + (" after keep-largest-component" if lcc else "")
    cols7 = [Column(d, t, tree_metrics(t + suffix)) for d in datasets for t in tracers]
    t7 = build_table(runs, cols7, title7)
    return {"table6": t6, "table7": t7}


def table_dict(t: Table) -> dict:
    """A table as plain data: title, and per method a list of cells ``{dataset, tracer, METRIC: value}``
    (display-rounded numbers, ``None`` where missing) with the ranks (``best`` / ``second`` / ``""``)."""
    rows = {}
    for m in t.methods:
        rows[m] = [{"dataset": c.dataset, "tracer": c.tracer,
                    **{met.label: v for met, v in zip(c.metrics, t.values[m][ci])},
                    "rank": {met.label: mk for met, mk in zip(c.metrics, t.marks[m][ci])}}
                   for ci, c in enumerate(t.columns)]
    return {"title": t.title, "methods": rows}


def _num(v: float | None, digits: int) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def to_markdown(t: Table) -> str:
    """Markdown table: best **bold**, second *italic*."""
    wrap = {"best": "**{}**", "second": "*{}*", "": "{}"}
    lines = [f"**{t.title}**", "", "| Method | " + " | ".join(c.title for c in t.columns) + " |",
             "|---|" + "---|" * len(t.columns),
             "| | " + " | ".join(" / ".join(m.label for m in c.metrics) for c in t.columns) + " |"]
    for m in t.methods:
        cells = [" / ".join(wrap[mk].format(_num(v, met.digits)) if v is not None else "–"
                            for v, mk, met in zip(t.values[m][ci], t.marks[m][ci], c.metrics))
                 for ci, c in enumerate(t.columns)]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


_TEX_ESCAPE = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
               "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}"}


def tex_escape(text: str) -> str:
    """Escape LaTeX special characters in plain text."""
    return "".join(_TEX_ESCAPE.get(ch, ch) for ch in text)


def to_latex(t: Table) -> str:
    """LaTeX ``tabular``: best ``\\textbf``, second ``\\underline``; table 7 gets a data-set header row."""
    wrap = {"best": r"\textbf{%s}", "second": r"\underline{%s}", "": "%s"}
    lines = [f"% {t.title}", r"\begin{tabular}{l" + "c" * len(t.columns) + "}", r"\hline"]
    if any(c.tracer for c in t.columns):
        groups: list[tuple[str, int]] = []
        for c in t.columns:
            if groups and groups[-1][0] == c.dataset:
                groups[-1] = (c.dataset, groups[-1][1] + 1)
            else:
                groups.append((c.dataset, 1))
        lines.append(" & " + " & ".join(rf"\multicolumn{{{n}}}{{c}}{{{tex_escape(d)}}}" for d, n in groups)
                     + r" \\")
        lines.append("Method & " + " & ".join(tex_escape(c.tracer or "") for c in t.columns) + r" \\")
    else:
        lines.append("Method & " + " & ".join(tex_escape(c.dataset) for c in t.columns) + r" \\")
    lines.append(" & " + " & ".join(" / ".join(tex_escape(m.label) for m in c.metrics) for c in t.columns)
                 + r" \\")
    lines.append(r"\hline")
    for m in t.methods:
        cells = [" / ".join((wrap[mk] % _num(v, met.digits)) if v is not None else "--"
                            for v, mk, met in zip(t.values[m][ci], t.marks[m][ci], c.metrics))
                 for ci, c in enumerate(t.columns)]
        lines.append(tex_escape(m) + " & " + " & ".join(cells) + r" \\")
    lines += [r"\hline", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def write_csv(t: Table, path: str | os.PathLike) -> None:
    """Plain numbers, one column per (data set[, tracer], metric); empty where missing."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["method"] + [f"{c.title} {m.label}" for c in t.columns for m in c.metrics])
        for m in t.methods:
            cells = [("" if v is None else f"{v:.{met.digits}f}")
                     for ci, c in enumerate(t.columns) for v, met in zip(t.values[m][ci], c.metrics)]
            w.writerow([m, *cells])


def write_comparison(tables: dict[str, Table], out: str | os.PathLike, force: bool = False) -> Path:
    """Write ``<table>.md/.csv/.tex`` for each table and ``comparison.md`` (all Markdown) into ``out``."""
    out = Path(out)
    with atomic_directory(out, force=force) as tmp:
        md = []
        for name, t in tables.items():
            (tmp / f"{name}.md").write_text(to_markdown(t), encoding="utf-8")
            (tmp / f"{name}.tex").write_text(to_latex(t), encoding="utf-8")
            write_csv(t, tmp / f"{name}.csv")
            md.append(to_markdown(t))
        (tmp / "comparison.md").write_text("\n".join(md), encoding="utf-8")
    return out
