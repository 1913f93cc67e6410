"""`neurino demo --quick` end to end (nnU-Net's CLIs in subprocesses), and the demo's guards in process.

The quick demo is the second big item of the suite (besides the e2e fixture): 2.5–5 minutes on 2 idle
CPU cores (much longer on a busy machine). Its wall time is printed (``-s``) and stored in
``demo_summary.json``. The plan, the safety stop and its "not comparable" marker are tested in process.
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
    NOT_COMPARABLE,
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
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=3600)
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
    demo = json.loads((work / "demo_summary.json").read_text())
    # the safety stop fires only on a hopelessly slow machine; when it did, the row must say so
    names = {"NeurINO": "NeurINO-T (scratch)", "nnU-Net": "nnU-Net"}
    expected = {f"{name} [{NOT_COMPARABLE}]" if key in demo["stopped_early"] else name
                for key, name in names.items()}
    assert set(rows) == expected
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
    plan = demo_plan(quick=True)
    for key, record in demo["training"].items():  # the same fixed budget for both, seeded
        assert record["planned_iterations"] == plan.iterations == demo["plan"]["iterations"]
        assert record["seed"] == 0 and record["safety_seconds"] == plan.safety_seconds
        assert record["stopped_early"] is (key in demo["stopped_early"])
        if not record["stopped_early"]:
            assert record["iterations_done"] == plan.iterations
    assert demo["comparable"] is not demo["stopped_early"] and demo["failed_cases"] == {}
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


def test_demo_plans_train_both_methods_for_the_same_iterations():
    from nnunetv2_neurino import trainers

    quick, full = demo_plan(quick=True), demo_plan()
    assert quick.neurino_trainer == "nnUNetTrainerNeurINO_demoQuick"
    assert full.neurino_trainer == "nnUNetTrainerNeurINO_demo" and full.nnunet_trainer == "nnUNetTrainer_demo"
    assert demo_plan(pretrained=True).neurino_trainer == "nnUNetTrainerNeurINO_demoPretrained"
    assert quick.iterations < full.iterations and quick.n_train < full.n_train
    assert all(p % 16 == 0 for p in full.patch)  # NeurINO's total stride: no refit needed
    for plan in (quick, full, demo_plan(pretrained=True), demo_plan(quick=True, pretrained=True)):
        neurino = getattr(trainers, plan.neurino_trainer)  # registered: nnU-Net's lookup finds it
        stock = getattr(trainers, plan.nnunet_trainer)
        assert neurino.use_pretrained is plan.pretrained
        # what ClassSettingsMixin puts on the trainer instance is the plan's budget, for both methods
        for trainer in (neurino, stock):
            assert (trainer.num_epochs, trainer.num_iterations_per_epoch) == (plan.epochs,
                                                                              plan.iterations_per_epoch)
        # the safety stop is checked between epochs: the hard subprocess limit leaves room for one more
        # epoch and nnU-Net's validation after it
        assert plan.stage_timeout >= plan.safety_seconds + 300
    assert demo_plan(safety_seconds=5).safety_seconds == 5
    with pytest.raises(NeurinoError, match="safety stop must be > 0"):
        demo_plan(safety_seconds=0)


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
    num_iterations_per_epoch = 3
    local_rank = 0

    def __init__(self, output_folder: Path):
        self.output_folder = str(output_folder)
        self.current_epoch, self.events, self.log = 0, [], []

    def initialize(self):
        self.events.append("initialize")

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


def _loop_trainer():
    from nnunetv2_neurino.trainers.demo import DemoRunMixin

    class Loop(DemoRunMixin, _LoopBase):
        pass

    return Loop


def test_safety_stop_ends_at_an_epoch_boundary_and_records_it(tmp_path, monkeypatch):
    from nnunetv2_neurino.trainers.demo import SAFETY_STOP_ENV, TrainingRecord

    Loop = _loop_trainer()
    monkeypatch.delenv(SAFETY_STOP_ENV, raising=False)
    t = Loop(tmp_path / "full")
    t.run_training()
    assert t.events == ["start"] + [f"epoch {i}" for i in range(5)] + ["end"] and t.log == []
    record = TrainingRecord.read(tmp_path / "full")
    assert not record.stopped_early and record.iterations_done == record.planned_iterations == 15
    assert record.safety_seconds is None

    monkeypatch.setenv(SAFETY_STOP_ENV, "1e-9")  # already over after the first epoch
    t = Loop(tmp_path / "stopped")
    t.run_training()
    assert t.events == ["start", "epoch 0", "end"]  # one epoch always runs; on_train_end exactly once
    assert "stopping after 1 of 5 epochs" in t.log[0] and "not comparable" in t.log[0]
    record = TrainingRecord.read(tmp_path / "stopped")
    assert record.stopped_early and (record.epochs_done, record.iterations_done) == (1, 3)
    assert record.planned_iterations == 15 and record.safety_seconds == 1e-9

    monkeypatch.setenv(SAFETY_STOP_ENV, "soon")
    with pytest.raises(NeurinoError, match=f"{SAFETY_STOP_ENV} must be a number of seconds"):
        Loop(tmp_path / "bad").run_training()
    with pytest.raises(NeurinoError, match="cannot read the training record"):
        TrainingRecord.read(tmp_path / "bad")


def test_training_seed_repeats_initialisation_and_sampling(tmp_path, monkeypatch):
    import numpy as np
    import torch

    from nnunetv2_neurino.trainers.demo import SEED_ENV

    class Draws(_loop_trainer()):
        def initialize(self):  # what nnU-Net does after the seed: build the network, sample patches
            super().initialize()
            self.draws = (torch.rand(4).tolist(), np.random.rand(4).tolist())

    def draws() -> tuple:
        t = Draws(tmp_path)
        t.initialize()
        np.random.rand(10), torch.rand(10)  # whatever ran in between does not matter
        return t.draws

    monkeypatch.delenv(SEED_ENV, raising=False)
    first = draws()
    assert draws() == first  # the class default seed (0)
    monkeypatch.setenv(SEED_ENV, "0")
    assert draws() == first
    monkeypatch.setenv(SEED_ENV, "7")
    seven = draws()
    assert seven == draws() and seven != first
    monkeypatch.setenv(SEED_ENV, "-1")
    with pytest.raises(NeurinoError, match=f"{SEED_ENV} must be >= 0"):
        draws()


def test_a_safety_stopped_run_is_marked_not_comparable_in_table_and_summary(tmp_path, monkeypatch):
    """Training records → labels → evaluation → comparison tables → demo_summary.json, as run_demo does.

    The training is nnU-Net's loop shape (no network), the rest is the demo's own code on real files:
    the built-in data set's test case, its label as the prediction of both methods.
    """
    import shutil

    from nnunetv2_neurino.data.synthetic.dataset import write_neuron_dataset
    from nnunetv2_neurino.demo.pipeline import (
        DATASET_NAME,
        DemoResult,
        compare_methods,
        evaluate_methods,
        mark_stopped_runs,
        write_summary,
    )
    from nnunetv2_neurino.trainers.demo import SAFETY_STOP_ENV, TrainingRecord

    work = tmp_path / "demo"
    raw_ds = write_neuron_dataset(work / "nnUNet_raw", 990, DATASET_NAME, n_train=1, n_test=1,
                                  shape=(32, 32, 32), seed=3, progress=False)
    result = DemoResult(work_dir=work, plan=demo_plan(quick=True, safety_seconds=1e-9))
    Loop = _loop_trainer()
    folds = {}
    for key, limit in (("NeurINO", str(result.plan.safety_seconds)), ("nnU-Net", "")):
        monkeypatch.setenv(SAFETY_STOP_ENV, limit)
        folds[key] = tmp_path / key / "fold_0"
        Loop(folds[key]).run_training()
        result.training[key] = TrainingRecord.read(folds[key])
        shutil.copytree(raw_ds / "labelsTs", work / "predictions" / key)
    labels = mark_stopped_runs(result, {"NeurINO": "NeurINO-T (scratch)", "nnU-Net": "nnU-Net"})
    evaluate_methods(result, labels, work / "predictions", raw_ds, progress=False)
    printed: list[str] = []
    compare_methods(result, labels, folds, printed.append)
    summary = json.loads(write_summary(result).read_text())

    marked = f"NeurINO-T (scratch) [{NOT_COMPARABLE}]"
    with open(work / "comparison" / "table6.csv", newline="") as f:
        rows = {r["method"]: r for r in csv.DictReader(f)}
    assert set(rows) == {marked, "nnU-Net"}
    assert float(rows["nnU-Net"]["NeurinoSynthetic F1 (%)"]) == pytest.approx(100)  # label vs itself
    assert marked in "\n".join(printed) and marked in (work / "comparison" / "table6.md").read_text()
    assert summary["stopped_early"] == ["NeurINO"] and summary["comparable"] is False
    assert summary["training"]["NeurINO"]["stopped_early"] is True
    assert summary["training"]["nnU-Net"]["stopped_early"] is False
    assert summary["training"]["nnU-Net"]["iterations_done"] == summary["training"]["nnU-Net"][
        "planned_iterations"]
    assert summary["failed_cases"] == {} and any(NOT_COMPARABLE in n for n in summary["notes"])


def test_json_prints_the_demo_summary_and_sends_stage_lines_to_stderr(tmp_path, monkeypatch, capsys):
    import nnunetv2_neurino.demo.pipeline as pipeline
    from nnunetv2_neurino.cli import main
    from nnunetv2_neurino.trainers.demo import QUICK_BUDGET

    def fake_run_demo(work_dir, quick, force, device, seed, progress, echo, safety_seconds):
        echo("| method | F1 |")                                   # a stage line / table row
        return pipeline.DemoResult(work_dir=Path(work_dir), plan=pipeline.demo_plan(quick=quick, seed=seed),
                                   stage_seconds={"plan": 1.5}, data_source="built-in")

    monkeypatch.setattr(pipeline, "run_demo", fake_run_demo)
    out = tmp_path / "demo"
    assert main(["demo", "-o", str(out), "--quick", "--device", "cpu", "--seed", "3", "--json"]) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)                              # stdout: one JSON document, nothing else
    assert "| method | F1 |" in captured.err
    assert doc["work_dir"] == str(out) and doc["plan"]["seed"] == 3 and doc["stage_seconds"] == {"plan": 1.5}
    assert doc["comparable"] is True and doc["plan"]["iterations"] == QUICK_BUDGET.iterations
