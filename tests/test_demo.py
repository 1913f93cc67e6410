"""`neurino demo --quick` end to end (nnU-Net's CLIs in subprocesses), and the demo's guards in process.

The quick demo is the second big item of the suite (besides the e2e fixture): about 3–4 minutes on 2 idle
CPU cores. Its wall time is printed (``-s``) and stored in ``demo_summary.json``.
"""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nnunetv2_neurino.demo.pipeline import (
    OUTPUTS,
    WEIGHT_VARS,
    demo_plan,
    find_weights,
    nnunet_env,
    planner_env,
    prepare_work_dir,
)
from nnunetv2_neurino.errors import NeurinoError

NEURINO = str(Path(sys.executable).parent / "neurino")


def _finite(v) -> bool:
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    work = tmp_path_factory.mktemp("demo") / "run"
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEURINO_DINOV3_WEIGHTS")}
    env.update(nnUNet_def_n_proc="2", nnUNet_n_proc_DA="0", MPLBACKEND="Agg")
    start = time.time()
    proc = subprocess.run([NEURINO, "demo", "--quick", "--no-progress", "--device", "cpu", "-o", str(work)],
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=1500)
    seconds = time.time() - start
    print(f"\nneurino demo --quick: {seconds:.0f} s wall")
    if proc.returncode != 0:
        pytest.fail(f"neurino demo --quick failed (exit {proc.returncode}):\n{proc.stdout[-6000:]}",
                    pytrace=False)
    return work, proc.stdout, seconds


def test_quick_demo_compares_both_methods(quick_demo):
    work, out, _ = quick_demo
    with open(work / "comparison" / "table6.csv", newline="") as f:
        rows = {r["method"]: r for r in csv.DictReader(f)}
    assert set(rows) == {"NeurINO-T (scratch)", "nnU-Net"}
    for method, row in rows.items():
        f1 = row["NeurinoSynthetic F1 (%)"]
        assert _finite(f1) and 0 <= float(f1) <= 100, (method, f1)
    # the printed table is the written one
    md = (work / "comparison" / "table6.md").read_text()
    assert md.strip() in out
    assert "[1/10] build the built-in data set" in out and "done in" in out


def test_quick_demo_writes_summaries_and_figures(quick_demo):
    work, _, seconds = quick_demo
    for method in ("NeurINO", "nnU-Net"):
        summary = json.loads((work / "evaluation" / method / "summary.json").read_text())
        assert summary["n_failed"] == 0 and summary["n_cases"] == 1
        assert _finite(summary["metrics"]["f1"]["mean"])
        assert summary["gt_tree_note"] == "gold-standard SWC files"  # swcTs of the built-in data set
        assert list((work / "evaluation" / method / "figures").glob("*.png"))
    trainers = {"nnUNetTrainerNeurINO_demoQuick", "nnUNetTrainer_demoQuick"}
    results = work / "nnUNet_results" / "Dataset990_NeurinoSynthetic"
    for tr in trainers:  # the after-training topology summary, for NeurINO and the stock trainer
        validation = results / f"{tr}__nnUNetPlans__3d_fullres" / "fold_0" / "validation"
        assert (validation / "summary_topology.json").is_file()
    assert (work / "figures" / "loss_curves.png").stat().st_size > 10_000
    with open(work / "figures" / "loss_curves.csv", newline="") as f:
        assert {r["run"] for r in csv.DictReader(f)} == {"NeurINO-T (scratch)", "nnU-Net"}
    demo = json.loads((work / "demo_summary.json").read_text())
    assert demo["plan"]["quick"] is True and set(demo["headline"]) == {"NeurINO", "nnU-Net"}
    assert demo["total_seconds"] <= seconds
    for key in ("plan", "train NeurINO", "train nnU-Net", "predict NeurINO", "predict nnU-Net"):
        assert demo["stage_seconds"][key] > 0


def test_demo_refuses_a_non_empty_folder_without_force(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    proc = subprocess.run([NEURINO, "demo", "--quick", "-o", str(tmp_path)], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=300)
    assert proc.returncode == 2
    # not a demo folder (no marker): --force would not help, so the message must not suggest it
    assert "is not empty" in proc.stdout and "--force" not in proc.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    proc = subprocess.run([NEURINO, "demo", "--quick", "--force", "-o", str(tmp_path)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    assert proc.returncode == 2 and sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_force_removes_only_the_demo_outputs(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    for name in OUTPUTS[:3]:
        (tmp_path / name / "x").mkdir(parents=True)
    (tmp_path / "demo_summary.json").write_text("{}")
    with pytest.raises(NeurinoError, match="not empty"):
        prepare_work_dir(tmp_path, force=False)
    prepare_work_dir(tmp_path, force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    (tmp_path / "file").write_text("")
    with pytest.raises(NeurinoError, match="not a folder"):
        prepare_work_dir(tmp_path / "file", force=True)


def test_subprocess_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("NEURINO_DINOV3_WEIGHTS", "/some/file.pth")
    monkeypatch.setenv("nnUNet_n_proc_DA", "0")
    env = nnunet_env(tmp_path, pretrained=False)
    assert "NEURINO_DINOV3_WEIGHTS" not in env  # scratch NeurINO: never a weights file
    assert env["nnUNet_raw"] == str(tmp_path / "nnUNet_raw") and env["nnUNet_n_proc_DA"] == "0"
    assert Path(env["nnUNet_extTrainer"]).name == "nnunet_ext"
    assert nnunet_env(tmp_path, pretrained=True)["NEURINO_DINOV3_WEIGHTS"] == "/some/file.pth"
    # nnU-Net's planner calls torch.set_num_threads(nnUNet_n_proc_DA): it needs at least 1
    assert planner_env(env)["nnUNet_n_proc_DA"] == "1"
    assert planner_env(dict(env, nnUNet_n_proc_DA="4"))["nnUNet_n_proc_DA"] == "4"


def test_demo_plans():
    quick, full = demo_plan(quick=True), demo_plan()
    assert quick.neurino_trainer == "nnUNetTrainerNeurINO_demoQuick"
    assert full.neurino_trainer == "nnUNetTrainerNeurINO_demo" and full.nnunet_trainer == "nnUNetTrainer_demo"
    assert demo_plan(pretrained=True).neurino_trainer == "nnUNetTrainerNeurINO_demoPretrained"
    assert quick.train_seconds < full.train_seconds and quick.n_train < full.n_train
    assert all(p % 16 == 0 for p in full.patch)  # NeurINO's total stride: no refit needed
    from nnunetv2_neurino import trainers

    for plan in (quick, full, demo_plan(pretrained=True), demo_plan(quick=True, pretrained=True)):
        neurino = getattr(trainers, plan.neurino_trainer)  # registered: nnU-Net's lookup finds it
        assert getattr(trainers, plan.nnunet_trainer)
        assert neurino.use_pretrained is plan.pretrained


def test_weights_variable_must_name_a_file(tmp_path, monkeypatch):
    for var in WEIGHT_VARS:
        monkeypatch.delenv(var, raising=False)
    assert find_weights() is None
    monkeypatch.setenv("NEURINO_DINOV3_WEIGHTS", str(tmp_path / "missing.pth"))
    with pytest.raises(NeurinoError, match="missing.pth is not a file"):
        find_weights()
    (tmp_path / "w.pth").write_bytes(b"x")
    monkeypatch.setenv("NEURINO_DINOV3_WEIGHTS_TINY", str(tmp_path / "w.pth"))
    assert find_weights() == tmp_path / "w.pth"  # the Tiny-specific variable wins


class _LoopBase:
    """The shape of nnU-Net's run_training loop (start, per epoch start … end, train end)."""

    num_epochs = 5

    def __init__(self):
        self.current_epoch, self.events, self.log = 0, [], []

    def on_train_start(self):
        self.events.append("start")

    def on_epoch_start(self):
        self.events.append(f"epoch {self.current_epoch}")

    def on_epoch_end(self):
        self.current_epoch += 1

    def on_train_end(self):
        self.events.append("end")

    def print_to_log_file(self, *args, **kwargs):
        self.log.append(" ".join(map(str, args)))

    def run_training(self):
        self.on_train_start()
        for _ in range(self.current_epoch, self.num_epochs):
            self.on_epoch_start()
            self.on_epoch_end()
        self.on_train_end()


def test_time_box_stops_at_an_epoch_boundary(monkeypatch):
    from nnunetv2_neurino.trainers.demo import TIME_BOX_ENV, TimeBoxMixin

    class Boxed(TimeBoxMixin, _LoopBase):
        pass

    monkeypatch.delenv(TIME_BOX_ENV, raising=False)
    t = Boxed()
    t.run_training()
    assert t.events == ["start"] + [f"epoch {i}" for i in range(5)] + ["end"] and t.log == []
    monkeypatch.setenv(TIME_BOX_ENV, "1e-9")  # already over after the first epoch
    t = Boxed()
    t.run_training()
    assert t.events == ["start", "epoch 0", "end"]  # one epoch always runs; on_train_end exactly once
    assert "stopping after 1 of 5 epochs" in t.log[0]
    monkeypatch.setenv(TIME_BOX_ENV, "soon")
    with pytest.raises(NeurinoError, match=f"{TIME_BOX_ENV} must be a number"):
        Boxed().run_training()
