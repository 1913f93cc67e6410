"""`neurino evaluate` / `evaluate_folders` / `write_topology_summary` on a tiny synthetic nnU-Net folder."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from nnunetv2_neurino.cli import main

Y_SWC = "1 3 16 4 16 1.5 -1\n2 3 16 16 16 1.5 1\n3 3 6 28 16 1.5 2\n4 3 26 28 16 1.5 2\n"


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """caseA = perfect, caseB = cut at the junction + a false-positive blob, caseC = corrupt prediction."""
    from nnunetv2_neurino.data.readers import write_nifti
    from nnunetv2_neurino.data.render import render_swc
    from nnunetv2_neurino.swc import read_swc

    root = tmp_path_factory.mktemp("eval")
    pred_dir = root / "Dataset501_Toy" / "nnUNetTrainerToy__nnUNetPlans__3d_fullres" / "fold_0" / "validation"
    dirs = {k: root / k for k in ("gt", "img", "swc")}
    dirs["pred"] = pred_dir
    for d in dirs.values():
        d.mkdir(parents=True)
    gt = render_swc(read_swc(Y_SWC), (32, 32, 32))
    cut = gt.copy()
    cut[:, 14:18, :] = False
    cut[2:5, 2:5, 2:5] = True
    rng = np.random.default_rng(0)
    masks = {"caseA": gt, "caseB": cut}
    for name, p in masks.items():
        write_nifti(pred_dir / f"{name}.nii.gz", p.astype(np.uint8))
        image = (gt * 100 + rng.normal(size=gt.shape)).astype(np.float32)
        write_nifti(dirs["img"] / f"{name}_0000.nii.gz", image)
        (dirs["swc"] / f"{name}.swc").write_text(Y_SWC)
    for name in ("caseA", "caseB", "caseC"):
        write_nifti(dirs["gt"] / f"{name}.nii.gz", gt.astype(np.uint8))
    (pred_dir / "caseC.nii.gz").write_bytes(b"not a nifti file")
    (pred_dir / "summary.json").write_text("{}")  # nnU-Net's own file: must be ignored as a case
    return dirs, gt, masks


@pytest.fixture(scope="module")
def evaluated(folders):
    dirs, _, _ = folders
    out = dirs["gt"].parent / "out"
    rc = main(["evaluate", "--pred", str(dirs["pred"]), "--gt", str(dirs["gt"]), "--images", str(dirs["img"]),
               "--gt-swc", str(dirs["swc"]), "-o", str(out)])
    with open(out / "cases.csv", newline="") as f:
        rows = {r["case"]: r for r in csv.DictReader(f)}
    return rc, out, rows, json.loads((out / "summary.json").read_text())


def test_rows_and_failure_reported(evaluated):
    rc, out, rows, summary = evaluated
    assert rc == 1  # documented: a failed case makes the exit status 1, outputs still written
    assert sorted(rows) == ["caseA", "caseB", "caseC"]
    assert rows["caseC"]["status"] == "failed" and "caseC.nii.gz" in rows["caseC"]["error"]
    assert summary["n_failed"] == 1 and summary["failed"][0]["case"] == "caseC" and summary["n_ok"] == 2
    assert summary["method"] == "nnUNetTrainerToy" and summary["dataset"] == "Toy"


def test_perfect_and_cut_case_values(evaluated, folders):
    _, _, rows, _ = evaluated
    _, gt, masks = folders
    a, b = rows["caseA"], rows["caseB"]
    assert float(a["f1"]) == 1 and float(a["hd95"]) == 0 and float(a["builtin/PDS"]) < 0.05
    cut = masks["caseB"]
    assert float(b["f1"]) == pytest.approx(2 * (cut & gt).sum() / (cut.sum() + gt.sum()), rel=1e-5)
    assert float(b["precision"]) == pytest.approx((cut & gt).sum() / cut.sum(), rel=1e-5)
    # keep-largest-component drops the blob and the cut-off side: fewer nodes, more of GT unmatched
    assert int(b["builtin+lcc/nodes"]) < int(b["builtin/nodes"])
    assert float(b["builtin+lcc/PDS21"]) > float(b["builtin/PDS21"])
    assert float(b["builtin/PDS"]) > float(a["builtin/PDS"])
    assert a["gt_tree"] == "swc file"


def test_summary_means_match_cases(evaluated):
    _, _, rows, summary = evaluated
    ok = [r for r in rows.values() if r["status"] == "ok"]
    for key in ("f1", "hd95", "builtin/ESA", "builtin/DSA", "builtin+lcc/PDS"):
        vals = np.array([float(r[key]) for r in ok])
        assert summary["metrics"][key]["mean"] == pytest.approx(vals.mean(), rel=1e-5)
        assert summary["metrics"][key]["std"] == pytest.approx(vals.std(), rel=1e-5, abs=1e-6)
        assert summary["metrics"][key]["n"] == 2


def test_report_and_figures(evaluated):
    _, out, _, _ = evaluated
    report = (out / "report.md").read_text()
    assert "MONAI" in report and "neuron_distance" in report and "caseC" in report and "+lcc" in report
    assert "gold-standard SWC files" in report
    from matplotlib.image import imread

    def has(rgb, colour) -> bool:
        return bool(np.any(np.all(np.abs(rgb - np.asarray(colour) / 255) < 0.02, axis=-1)))

    for case in ("caseA", "caseB"):
        png = out / "figures" / f"{case}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"figures/{case}.png" in report
        rgb = imread(png)[..., :3]
        # MIP overlay (yellow = agree) and the traced tree (magenta) over the GT tree (green) are drawn
        assert has(rgb, (255, 255, 0)) and has(rgb, (255, 0, 255)) and has(rgb, (0x22, 0xCC, 0x44)), case
    # caseB: the false-positive blob is red, the cut is green (false negative) in the overlay
    rgb = imread(out / "figures" / "caseB.png")[..., :3]
    assert has(rgb, (255, 0, 0)) and has(rgb, (0, 255, 0))
    assert not has(imread(out / "figures" / "caseA.png")[..., :3], (255, 0, 0))
    assert not (out / "figures" / "caseC.png").exists()


def test_existing_output_needs_force(evaluated, folders, capsys):
    dirs, _, _ = folders
    _, out, _, _ = evaluated
    rc = main(["evaluate", "--pred", str(dirs["pred"]), "--gt", str(dirs["gt"]), "-o", str(out)])
    assert rc == 2 and "--force" in capsys.readouterr().err


def test_traced_gt_without_swc_parallel(folders, tmp_path):
    from nnunetv2_neurino.evaluation import evaluate_folders

    dirs, _, _ = folders
    s = evaluate_folders(dirs["pred"], dirs["gt"], tmp_path / "o", workers=2, figures=False, progress=False,
                         method="M", dataset="D")
    assert (s["method"], s["dataset"], s["n_failed"]) == ("M", "D", 1)
    assert "traced from the ground-truth masks" in s["gt_tree_note"]
    with open(tmp_path / "o" / "cases.csv", newline="") as f:
        rows = {r["case"]: r for r in csv.DictReader(f)}
    # the perfect case traces the identical mask twice: identical trees
    assert float(rows["caseA"]["builtin/ESA"]) < 1e-5 and float(rows["caseA"]["builtin/PDS"]) == 0
    assert rows["caseA"]["gt_tree"] == "traced GT mask"
    assert not (tmp_path / "o" / "figures").exists()
    report = (tmp_path / "o" / "report.md").read_text()
    assert "traced from the ground-truth masks with the same tracer (no gold SWCs)" in report


def test_names_from_nnunet_predict_folder_and_gt_path(folders, tmp_path, capsys):
    """Outside nnUNet_results: the data set comes from the plans.json nnUNetv2_predict writes beside its
    predictions, else from DatasetXXX_NAME in the ground-truth path; the method is the folder name."""
    import shutil

    from nnunetv2_neurino.evaluation import evaluate_folders
    from nnunetv2_neurino.nnunet_layout import names_from_results_path

    dirs, _, _ = folders
    pred, gt = tmp_path / "my_predictions", tmp_path / "Dataset503_Fly" / "labelsTs"
    pred.mkdir()
    gt.mkdir(parents=True)
    shutil.copy(dirs["pred"] / "caseA.nii.gz", pred)
    shutil.copy(dirs["gt"] / "caseA.nii.gz", gt)
    s = evaluate_folders(pred, gt, tmp_path / "o1", figures=False, progress=True)
    assert (s["method"], s["dataset"], s["n_ok"]) == ("my_predictions", "Fly", 1)
    err = capsys.readouterr().err
    assert "evaluate" in err and "1/1" in err                       # the tqdm progress bar
    (pred / "plans.json").write_text(json.dumps({"dataset_name": "Dataset502_Mouse",
                                                 "plans_name": "nnUNetResEncUNetMPlans"}))
    s = evaluate_folders(pred, gt, tmp_path / "o2", figures=False, progress=False)
    assert s["dataset"] == "Mouse" and s["nnunet"]["dataset"] == "Dataset502_Mouse"
    assert s["nnunet"]["plans"] == "nnUNetResEncUNetMPlans"
    (pred / "plans.json").write_text("{not json")                   # unreadable: ignored, not a crash
    assert names_from_results_path(pred)["dataset"] is None


def test_write_topology_summary(folders):
    from nnunetv2_neurino.evaluation import write_topology_summary

    dirs, _, _ = folders
    path = write_topology_summary(dirs["pred"], gt_dir=dirs["gt"], gt_swc_dir=dirs["swc"])
    assert path == dirs["pred"] / "summary_topology.json"
    data = json.loads(path.read_text())
    assert data["n_cases"] == 3 and data["n_failed"] == 1 and data["method"] == "nnUNetTrainerToy"
    f1 = [r["f1"] for r in data["per_case"] if r["status"] == "ok"]
    assert data["metrics"]["f1"]["mean"] == pytest.approx(np.mean(f1))


def test_unknown_tracer_and_missing_folder(folders, tmp_path, capsys):
    dirs, _, _ = folders
    assert main(["evaluate", "--pred", str(dirs["pred"]), "--gt", str(dirs["gt"]), "--tracer", "magic",
                 "-o", str(tmp_path / "x")]) == 2
    assert "magic" in capsys.readouterr().err
    assert main(["evaluate", "--pred", str(tmp_path / "none"), "--gt", str(dirs["gt"]), "-o",
                 str(tmp_path / "y")]) == 2
    assert "none" in capsys.readouterr().err and not (tmp_path / "y").exists()


def test_vaa3d_tracer_without_vaa3d_stops_before_work(folders, tmp_path, monkeypatch, capsys):
    dirs, _, _ = folders
    monkeypatch.delenv("VAA3D_BIN", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))                       # no vaa3d anywhere
    assert main(["evaluate", "--pred", str(dirs["pred"]), "--gt", str(dirs["gt"]), "--tracer", "builtin",
                 "vaa3d-neutube", "-o", str(tmp_path / "z")]) == 2
    assert "vaa3d.org" in capsys.readouterr().err and not (tmp_path / "z").exists()


def test_vaa3d_tracer_columns_with_stand_in_executable(folders, tmp_path, monkeypatch):
    """A stand-in `vaa3d` writes a fixed two-node stem; its scores land in the vaa3d-app2 columns."""
    from nnunetv2_neurino.evaluation import evaluate_folders
    from nnunetv2_neurino.metrics.neuron_distance import neuron_distance
    from nnunetv2_neurino.swc import read_swc

    stem = "1 3 16 4 16 1 -1\n2 3 16 16 16 1 1\n"
    exe = tmp_path / "vaa3d"
    swc_file = tmp_path / "stem.swc"
    swc_file.write_text(stem)
    exe.write_text('#!/bin/sh\nwhile [ $# -gt 0 ]; do if [ "$1" = "-o" ]; then out="$2"; fi; shift; done\n'
                   f'cp "{swc_file}" "$out"\n')
    exe.chmod(0o755)
    monkeypatch.setenv("VAA3D_BIN", str(exe))
    dirs, _, _ = folders
    s = evaluate_folders(dirs["pred"], dirs["gt"], tmp_path / "o", gt_swc_dir=dirs["swc"], figures=False,
                         tracers=["builtin", "vaa3d-app2"], progress=False)
    expected = neuron_distance(read_swc(stem), read_swc(Y_SWC))
    with open(tmp_path / "o" / "cases.csv", newline="") as f:
        rows = {r["case"]: r for r in csv.DictReader(f)}
    for case in ("caseA", "caseB"):
        assert float(rows[case]["vaa3d-app2/ESA"]) == pytest.approx(expected["ESA"], rel=1e-5)
        assert float(rows[case]["vaa3d-app2/PDS21"]) == pytest.approx(expected["PDS21"], rel=1e-5)
        assert int(rows[case]["vaa3d-app2+lcc/nodes"]) == 2
    assert s["metrics"]["vaa3d-app2/DSA"]["mean"] == pytest.approx(expected["DSA"], rel=1e-5)


def test_compare_reads_evaluate_output(evaluated):
    from nnunetv2_neurino.evaluation import compare

    _, out, rows, summary = evaluated
    tables = compare([out])
    f1 = np.mean([float(r["f1"]) for r in rows.values() if r["status"] == "ok"])
    assert tables["table6"].methods == ["nnUNetTrainerToy"] and tables["table6"].columns[0].dataset == "Toy"
    assert tables["table6"].values["nnUNetTrainerToy"][0][0] == pytest.approx(round(100 * f1, 2))
    assert tables["table7"].columns[0].tracer == "builtin"
    pds = summary["metrics"]["builtin/PDS"]["mean"]
    assert tables["table7"].values["nnUNetTrainerToy"][0][2] == round(pds, 2)


def test_root_at_gold_reroots_traced_trees_and_reports_the_distance(evaluated, folders, tmp_path, capsys):
    """Issue 10 §5: with the gold tree rooted at a branch tip, the traced root (at the stem's end) lies far
    from it; --root-at-gold moves each traced root to its node nearest the gold root. ESA/DSA/PDS do not
    depend on roots, so they stay the same."""
    from nnunetv2_neurino.tracing.trace import trace_mask

    dirs, _, masks = folders
    swc = tmp_path / "swc_tip_root"
    swc.mkdir()
    tip_rooted = "3 3 6 28 16 1.5 -1\n2 3 16 16 16 1.5 3\n1 3 16 4 16 1.5 2\n4 3 26 28 16 1.5 2\n"
    for case in ("caseA", "caseB", "caseC"):
        (swc / f"{case}.swc").write_text(tip_rooted)
    gold_root = np.array([6.0, 28.0, 16.0])
    traced = trace_mask(masks["caseA"])                  # the tracer evaluate runs, on the same mask
    default_dist = float(np.min(np.linalg.norm(traced.xyz[traced.parent_index < 0] - gold_root, axis=1)))
    nearest = float(np.min(np.linalg.norm(traced.xyz - gold_root, axis=1)))
    assert default_dist > 10 and nearest < 2
    runs = {}
    for flag in ([], ["--root-at-gold"]):
        out = tmp_path / ("seeded" if flag else "default")
        rc = main(["evaluate", "--pred", str(dirs["pred"]), "--gt", str(dirs["gt"]), "--gt-swc", str(swc),
                   *flag, "--no-figures", "-o", str(out)])
        assert rc == 1 and "root " in capsys.readouterr().out            # caseC is still the corrupt one
        with open(out / "cases.csv", newline="") as f:
            runs[bool(flag)] = {r["case"]: r for r in csv.DictReader(f)}
        assert json.loads((out / "summary.json").read_text())["root_at_gold"] is bool(flag)
    default, seeded = runs[False], runs[True]
    assert float(default["caseA"]["builtin/root_dist"]) == pytest.approx(default_dist, abs=1e-4)
    assert float(seeded["caseA"]["builtin/root_dist"]) == pytest.approx(nearest, abs=1e-4)
    for case in ("caseA", "caseB"):
        assert float(seeded[case]["builtin/root_dist"]) <= float(default[case]["builtin/root_dist"])
        for key in ("ESA", "DSA", "PDS"):
            col = f"builtin/{key}"
            assert float(seeded[case][col]) == pytest.approx(float(default[case][col]))
    assert main(["evaluate", "--pred", str(dirs["pred"]), "--gt", str(dirs["gt"]), "--root-at-gold",
                 "-o", str(tmp_path / "no_swc")]) == 2
    assert "--gt-swc" in capsys.readouterr().err and not (tmp_path / "no_swc").exists()


def test_nnunet_layout_names_and_gold_swc_folder(tmp_path, monkeypatch):
    from nnunetv2_neurino.nnunet_layout import (
        dataset_folder_name,
        fold_id,
        raw_swc_dir,
        split_trainer_folder_name,
    )

    assert dataset_folder_name(7, "Gold") == "Dataset007_Gold"
    assert [fold_id(n) for n in ("fold_0", "fold_12", "fold_all", "fold_x", "fold_")] == ["0", "12", "all",
                                                                                        None, None]
    assert split_trainer_folder_name("T__P__3d_fullres") == ("T", "P", "3d_fullres")
    assert split_trainer_folder_name("T__P") is None and split_trainer_folder_name("T____C") is None
    monkeypatch.delenv("nnUNet_raw", raising=False)
    assert raw_swc_dir("Dataset007_Gold") is None
    monkeypatch.setenv("nnUNet_raw", str(tmp_path))
    assert raw_swc_dir("Dataset007_Gold") is None                        # no swcTr folder
    (tmp_path / "Dataset007_Gold" / "swcTr").mkdir(parents=True)
    assert raw_swc_dir("Dataset007_Gold") == tmp_path / "Dataset007_Gold" / "swcTr"
    assert raw_swc_dir("Dataset007_Gold", "Ts") is None
