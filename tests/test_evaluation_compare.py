"""`neurino compare`: tables 6 / 7 built from evaluation summaries, ranked like the paper's tables."""

from __future__ import annotations

import csv
import json

import pytest

from nnunetv2_neurino.cli import main
from nnunetv2_neurino.evaluation.comparison import compare, tex_escape

# Paper supplement tables 6 and 7 (Drosophila / Mouse; SmartTracing and NeuTube for Drosophila)
T6 = {"nnUNet": {"Drosophila": (47.20, 3.20), "Mouse": (52.05, 10.12)},
      "MedNeXt": {"Drosophila": (47.74, 3.15), "Mouse": (50.61, 13.77)},
      "NeurINO_T": {"Drosophila": (50.06, 3.07), "Mouse": (52.50, 9.50)},
      "NeurINO_S": {"Drosophila": (50.19, 3.02), "Mouse": (52.73, 9.24)}}
T7 = {"nnUNet": {"smart": (1.67, 4.48, 0.20), "neutube": (1.87, 4.67, 0.24)},
      "MedNeXt": {"smart": (1.68, 4.44, 0.20), "neutube": (1.90, 4.61, 0.23)},
      "NeurINO_T": {"smart": (1.62, 4.29, 0.20), "neutube": (1.75, 4.18, 0.21)},
      "NeurINO_S": {"smart": (1.65, 4.40, 0.21), "neutube": (1.84, 4.31, 0.22)}}


def _stat(v):
    return {"mean": v, "std": 0.0, "n": 3, "n_nan": 0}


def _summary(method, dataset, f1, hd95, trees=None):
    metrics = {"f1": _stat(f1 / 100), "hd95": _stat(hd95)}
    for tracer, (esa, dsa, pds) in (trees or {}).items():
        metrics.update({f"{tracer}/ESA": _stat(esa), f"{tracer}/DSA": _stat(dsa), f"{tracer}/PDS": _stat(pds),
                        f"{tracer}+lcc/ESA": _stat(esa + 1), f"{tracer}+lcc/DSA": _stat(dsa),
                        f"{tracer}+lcc/PDS": _stat(pds)})
    return {"method": method, "dataset": dataset, "tracers": list(trees or {}), "metrics": metrics}


@pytest.fixture()
def eval_dirs(tmp_path):
    dirs = []
    for method, per_ds in T6.items():
        for ds, (f1, hd) in per_ds.items():
            d = tmp_path / f"{method}_{ds}"
            d.mkdir()
            trees = T7[method] if ds == "Drosophila" else None
            (d / "summary.json").write_text(json.dumps(_summary(method, ds, f1, hd, trees)))
            dirs.append(d)
    return dirs


def test_table6_marks_match_paper(eval_dirs):
    t6 = compare(eval_dirs)["table6"]
    assert t6.methods == list(T6) and [c.dataset for c in t6.columns] == ["Drosophila", "Mouse"]
    for ci in range(2):  # both data sets: NeurINO-S best, NeurINO-T second, for F1 (higher) and HD95 (lower)
        assert t6.marks["NeurINO_S"][ci] == ["best", "best"]
        assert t6.marks["NeurINO_T"][ci] == ["second", "second"]
        assert t6.marks["nnUNet"][ci] == ["", ""]
    assert t6.values["NeurINO_T"][0] == [50.06, 3.07]


def test_table7_ties_and_directions(eval_dirs):
    t7 = compare(eval_dirs)["table7"]
    assert [c.title for c in t7.columns] == ["Drosophila · smart", "Drosophila · neutube", "Mouse · smart",
                                             "Mouse · neutube"]
    # SmartTracing: ESA T best, S second; PDS 0.20 is shared by three methods (all best), S second
    assert t7.marks["NeurINO_T"][0] == ["best", "best", "best"]
    assert t7.marks["NeurINO_S"][0] == ["second", "second", "second"]
    assert t7.marks["nnUNet"][0] == ["", "", "best"] and t7.marks["MedNeXt"][0] == ["", "", "best"]
    # NeuTube: PDS 0.21 (T) best, 0.22 (S) second
    assert t7.marks["NeurINO_T"][1][2] == "best" and t7.marks["NeurINO_S"][1][2] == "second"
    assert t7.values["nnUNet"][2] == [None, None, None]  # no tracing run on Mouse
    lcc = compare(eval_dirs, lcc=True)["table7"]
    assert lcc.values["NeurINO_T"][0][0] == pytest.approx(2.62)


def test_cli_outputs(eval_dirs, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", *map(str, eval_dirs), "-o", str(out)]) == 0
    md = (out / "table6.md").read_text()
    assert "**50.19** / **3.02**" in md and "*50.06* / *3.07*" in md and "| nnUNet | 47.20 / 3.20 |" in md
    tex = (out / "table7.tex").read_text()
    assert r"NeurINO\_T & \textbf{1.62} / \textbf{4.29} / \textbf{0.20}" in tex
    assert r"\underline{1.65}" in tex and r"\multicolumn{2}{c}{Drosophila}" in tex
    with open(out / "table6.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["method", "Drosophila F1 (%)", "Drosophila HD95", "Mouse F1 (%)", "Mouse HD95"]
    assert rows[3] == ["NeurINO_T", "50.06", "3.07", "52.50", "9.50"]
    assert (out / "comparison.md").is_file() and "Tracing" in capsys.readouterr().out


def test_bad_inputs_exit_2(eval_dirs, tmp_path, capsys):
    assert main(["compare", str(eval_dirs[0]), str(eval_dirs[0]), "-o", str(tmp_path / "a")]) == 2
    assert "--names" in capsys.readouterr().err
    assert main(["compare", str(eval_dirs[0]), "--names", "x", "y", "-o", str(tmp_path / "b")]) == 2
    assert main(["compare", str(tmp_path), "-o", str(tmp_path / "c")]) == 2
    assert "summary.json" in capsys.readouterr().err
    assert main(["compare", str(eval_dirs[0]), str(eval_dirs[0]), "--names", "x", "y", "-o",
                 str(tmp_path / "d")]) == 0


def test_tex_escape():
    assert tex_escape("a_b & 50% #1") == r"a\_b \& 50\% \#1"
