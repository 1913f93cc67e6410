"""The end-to-end nnU-Net run (``trained_run``: plan → train → predict → --c → --val through nnU-Net's CLIs)
and the topology summary the NeurINO trainers write after nnU-Net's final validation."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from nnunetv2_neurino.trainers.validation_summary import TopologySummaryMixin


def _load_checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)  # our own file, written by the fixture


def test_saved_plans_hold_the_patch_fitted_to_the_network(trained_run):
    plans = json.loads((trained_run.model_dir / "plans.json").read_text())
    patch = plans["configurations"]["3d_fullres"]["patch_size"]
    assert trained_run.planned_patch == [40, 36, 36] and all(p % 16 for p in trained_run.planned_patch)
    assert patch == [32, 32, 32]  # rounded down to NeurINO's total stride (16 per axis)
    assert "not divisible by the network's total stride" in trained_run.logs["train"]


def test_final_checkpoint_names_the_trainer(trained_run):
    ckpt = _load_checkpoint(trained_run.fold_dir / "checkpoint_final.pth")
    assert ckpt["trainer_name"] == trained_run.trainer
    assert any(".seg_layers." in k for k in ckpt["network_weights"])  # heads named for -pretrained_weights


def test_prediction_of_the_test_case_has_the_image_shape(trained_run):
    images = sorted(trained_run.test_images.glob("*_0000.nii.gz"))
    assert images, "the fixture wrote no test image"
    for image in images:
        case = image.name[: -len("_0000.nii.gz")]
        pred = trained_run.predictions / f"{case}.nii.gz"
        assert pred.is_file(), f"no prediction for {case}"
        pred_arr = sitk.GetArrayFromImage(sitk.ReadImage(str(pred)))
        img_arr = sitk.GetArrayFromImage(sitk.ReadImage(str(image)))
        assert pred_arr.shape == img_arr.shape
        assert set(np.unique(pred_arr)) <= {0, 1}


def test_continue_trains_to_the_new_epoch_count(trained_run):
    ckpt = _load_checkpoint(trained_run.fold_dir / "checkpoint_final.pth")
    assert ckpt["current_epoch"] == 3  # 2 epochs, then --c with NEURINO_E2E_EPOCHS=3
    epochs_run = [int(m) for m in re.findall(r": Epoch (\d+)\s*$", trained_run.logs["continue"], re.M)]
    assert epochs_run == [2]  # resumed: only the new epoch is trained
    assert len(ckpt["logging"]["train_losses"]) == 3


def test_val_writes_nnunet_summary_and_topology_summary(trained_run):
    validation = trained_run.fold_dir / "validation"
    summary = json.loads((validation / "summary.json").read_text())
    assert "foreground_mean" in summary
    topo_file = validation / "summary_topology.json"
    assert topo_file.is_file()
    assert "Topology summary (F1, HD95, ESA/DSA/PDS)" in trained_run.logs["validate"]
    topo = json.loads(topo_file.read_text())
    assert topo["n_cases"] == 1 and topo["per_case"][0]["case"] == "tubes_003"
    # the voxel F1 equals nnU-Net's Dice of the same case (F1 and Dice are the same quantity)
    nnunet_dice = summary["metric_per_case"][0]["metrics"]["1"]["Dice"]
    assert math.isclose(topo["per_case"][0]["f1"], nnunet_dice, rel_tol=1e-6, abs_tol=1e-9)
    assert topo["gt_dir"].endswith("gt_segmentations")


# ---- the mixin in process (fast): paths nnU-Net gives it, values, and "never breaks validation" ----

class _FakeTrainerBase:
    """The parts of nnUNetTrainer the mixin uses; its 'validation' writes nothing."""

    local_rank = 0

    def __init__(self, output_folder: Path, preprocessed: Path, dataset_name: str):
        self.output_folder = str(output_folder)
        self.preprocessed_dataset_folder_base = str(preprocessed)
        self.plans_manager = type("PM", (), {"dataset_name": dataset_name})()
        self.logged: list[str] = []
        self.validated = False

    def perform_actual_validation(self, save_probabilities: bool = False):
        self.validated = True

    def print_to_log_file(self, *args, also_print_to_console=False, **kwargs):
        self.logged.append(" ".join(str(a) for a in args))


class _FakeTrainer(TopologySummaryMixin, _FakeTrainerBase):
    pass


def _write(arr: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(arr.astype(np.uint8)), str(path))


def test_mixin_scores_validation_against_preprocessed_gt(tmp_path, monkeypatch):
    ds = "Dataset555_Mixin"
    monkeypatch.setenv("nnUNet_preprocessed", str(tmp_path / "pre"))
    monkeypatch.setenv("nnUNet_raw", str(tmp_path / "raw"))  # no swcTr there: GT masks are traced
    fold = tmp_path / "results" / ds / "nnUNetTrainerX__nnUNetPlans__3d_fullres" / "fold_0"
    gt = np.zeros((16, 16, 16), np.uint8)
    gt[8, 8, 2:14] = 1  # a 12-voxel line
    pred = gt.copy()
    pred[8, 8, 2:5] = 0  # 9 of 12 found, no false positive: F1 = 2·9 / (9 + 12) = 6/7
    _write(gt, tmp_path / "pre" / ds / "gt_segmentations" / "case_a.nii.gz")
    _write(pred, fold / "validation" / "case_a.nii.gz")
    trainer = _FakeTrainer(fold, tmp_path / "pre" / ds, ds)
    trainer.perform_actual_validation()
    assert trainer.validated
    topo = json.loads((fold / "validation" / "summary_topology.json").read_text())
    assert math.isclose(topo["per_case"][0]["f1"], 6 / 7, rel_tol=1e-9)
    assert topo["gt_swc_dir"] is None and topo["dataset"] == "Mixin"
    assert any("Topology summary" in line for line in trainer.logged)


def test_mixin_failure_is_logged_and_validation_goes_on(tmp_path):
    fold = tmp_path / "Dataset556_Broken" / "T__P__3d_fullres" / "fold_0"
    (fold / "validation").mkdir(parents=True)
    trainer = _FakeTrainer(fold, tmp_path / "does_not_exist", "Dataset556_Broken")
    trainer.perform_actual_validation()  # must not raise
    assert trainer.validated
    assert not (fold / "validation" / "summary_topology.json").exists()
    assert any("Topology summary NOT written" in line for line in trainer.logged)


def test_mixin_can_be_switched_off(tmp_path):
    class Off(_FakeTrainer):
        topology_summary = False

    trainer = Off(tmp_path, tmp_path / "missing", "Dataset557_Off")
    trainer.perform_actual_validation()
    assert trainer.validated and trainer.logged == []
