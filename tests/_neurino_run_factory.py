"""Hand-built nnU-Net run folders for the analysis/predict tests (no training: seconds, not minutes).

A run folder has exactly what ``nnUNetv2_train`` leaves behind: ``plans.json``, ``dataset.json`` and
``fold_N/checkpoint_final.pth`` with nnU-Net's checkpoint keys, the ``logging`` dict produced by nnU-Net's
own ``MetaLogger`` (so its EMA pseudo Dice is nnU-Net's), and ``training_log_*.txt`` in the format of
``nnUNetTrainer.print_to_log_file``. The network is a stock ``PlainConvUNet`` built from the plans by
``nnUNetTrainer.build_network_architecture`` with seeded random weights.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import torch

PLANS_3D = {
    "data_identifier": "nnUNetPlans_3d_fullres", "preprocessor_name": "DefaultPreprocessor", "batch_size": 2,
    "patch_size": [16, 24, 24], "median_image_size_in_voxels": [16.0, 24.0, 24.0], "spacing": [2.0, 1.0, 1.0],
    "normalization_schemes": ["ZScoreNormalization"], "use_mask_for_norm": [False],
    "resampling_fn_data": "resample_data_or_seg_to_shape",
    "resampling_fn_seg": "resample_data_or_seg_to_shape",
    "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
    "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
    "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
    "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0,
                                           "force_separate_z": None},
    "architecture": {
        "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
        "arch_kwargs": {"n_stages": 3, "features_per_stage": [8, 16, 32],
                        "conv_op": "torch.nn.modules.conv.Conv3d",
                        "kernel_sizes": [[1, 3, 3], [3, 3, 3], [3, 3, 3]],
                        "strides": [[1, 1, 1], [1, 2, 2], [2, 2, 2]], "n_conv_per_stage": [2, 2, 2],
                        "n_conv_per_stage_decoder": [2, 2], "conv_bias": True,
                        "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
                        "norm_op_kwargs": {"eps": 1e-05, "affine": True}, "dropout_op": None,
                        "dropout_op_kwargs": None, "nonlin": "torch.nn.LeakyReLU",
                        "nonlin_kwargs": {"inplace": True}},
        "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]},
    "batch_dice": False,
}
DATASET_JSON = {"channel_names": {"0": "zscore"}, "labels": {"background": 0, "neuron": 1}, "numTraining": 4,
                "file_ending": ".nii.gz"}


def make_plans(features_per_stage: tuple[int, int, int] = (8, 16, 32)) -> dict:
    cfg = copy.deepcopy(PLANS_3D)
    cfg["architecture"]["arch_kwargs"]["features_per_stage"] = list(features_per_stage)
    return {"dataset_name": "Dataset990_Factory", "plans_name": "nnUNetPlans",
            "original_median_spacing_after_transp": [2.0, 1.0, 1.0],
            "original_median_shape_after_transp": [16, 24, 24], "image_reader_writer": "SimpleITKIO",
            "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2],
            "configurations": {"3d_fullres": cfg}, "experiment_planner_used": "ExperimentPlanner",
            "label_manager": "LabelManager",
            "foreground_intensity_properties_per_channel": {"0": {
                "max": 150.0, "mean": 120.0, "median": 120.0, "min": 90.0, "percentile_00_5": 95.0,
                "percentile_99_5": 145.0, "std": 10.0}}}


def build_network(plans: dict):
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    pm = PlansManager(plans)
    return nnUNetTrainer.build_network_architecture(pm, pm.get_configuration("3d_fullres"), 1, 2,
                                                    enable_deep_supervision=True)


def epoch_values(n_epochs: int, seed: int) -> list[tuple[float, float, float]]:
    """(train_loss, val_loss, pseudo dice) per epoch, float32 like nnU-Net's logged values."""
    rng = np.random.default_rng(seed)
    e = np.arange(n_epochs)
    tr = 0.8 * np.exp(-e / 4) + rng.uniform(0, 0.02, n_epochs)
    va = 0.7 * np.exp(-e / 5) + rng.uniform(0, 0.02, n_epochs)
    dice = 1 - np.exp(-(e + 1) / 3) + rng.uniform(0, 0.02, n_epochs)
    return [(np.float32(a), np.float32(b), np.float32(c)) for a, b, c in zip(tr, va, dice)]


def log_text(values: list[tuple[float, float, float]], first_epoch: int = 0, unfinished: bool = False) -> str:
    """Training log text as nnUNetTrainer.print_to_log_file writes it (timestamps, rounded values)."""
    lines = ["", "#######################################################################", "Please cite ...",
             "2026-01-01 10:00:00.000001: Using splits from existing split file: x/splits_final.json "]
    for i, (tr, va, d) in enumerate(values):
        ep = first_epoch + i
        ts = f"2026-01-01 10:{ep // 60:02d}:{ep % 60:02d}.123456:"
        lines += [f"{ts}  ", f"{ts} Epoch {ep} ", f"{ts} Current learning rate: 0.01 ",
                  f"{ts} train_loss {str(np.round(tr, 4))} ", f"{ts} val_loss {str(np.round(va, 4))} ",
                  f"{ts} Pseudo dice {[np.round(d, 4)]} ", f"{ts} Epoch time: 1.23 s "]
    if unfinished:
        ep = first_epoch + len(values)
        lines += ["2026-01-01 11:00:00.000001:  ", f"2026-01-01 11:00:00.000001: Epoch {ep} ",
                  "2026-01-01 11:00:00.000002: Current learning rate: 0.001 "]
    return "\n".join(lines) + "\n"


def nnunet_logging(values: list[tuple[float, float, float]]) -> dict:
    """The checkpoint 'logging' dict, produced by nnU-Net's MetaLogger from ``values``."""
    from nnunetv2.training.logging.nnunet_logger import MetaLogger

    logger = MetaLogger("/nonexistent", resume=False)
    for ep, (tr, va, d) in enumerate(values):
        logger.log("epoch_start_timestamps", 1.0e9 + ep, ep)
        logger.log("lrs", 0.01 * (1 - ep / 100) ** 0.9, ep)
        logger.log("train_losses", tr, ep)
        logger.log("mean_fg_dice", d, ep)
        logger.log("dice_per_class_or_region", [d], ep)
        logger.log("val_losses", va, ep)
        logger.log("epoch_end_timestamps", 1.0e9 + ep + 0.5, ep)
    return logger.get_checkpoint()


def make_run(results: Path, trainer: str = "nnUNetTrainer", folds=(0,), ckpt_epochs: int = 3,
             log_epochs: int | None = None, seed: int = 0, features_per_stage=(8, 16, 32),
             checkpoint_trainer_name: str | None = None, fg_bias: float | None = None) -> Path:
    """Write ``results/Dataset990_Factory/TRAINER__nnUNetPlans__3d_fullres`` and return that trainer folder.

    Parameters
    ----------
    ckpt_epochs : epochs in the checkpoint's logging (0: no checkpoint at all).
    log_epochs : finished epochs in the text log (default = ckpt_epochs); more simulates a run still
        training (its log also ends with an unfinished epoch).
    checkpoint_trainer_name : ``trainer_name`` stored in the checkpoint (default: ``trainer``).
    fg_bias : if given, added to the full-resolution head's foreground bias (pushes predictions).
    """
    plans = make_plans(features_per_stage)
    tdir = results / "Dataset990_Factory" / f"{trainer}__nnUNetPlans__3d_fullres"
    tdir.mkdir(parents=True, exist_ok=True)
    (tdir / "plans.json").write_text(json.dumps(plans))
    (tdir / "dataset.json").write_text(json.dumps(DATASET_JSON))
    log_epochs = ckpt_epochs if log_epochs is None else log_epochs
    for k, fold in enumerate(folds):
        fdir = tdir / f"fold_{fold}"
        fdir.mkdir(exist_ok=True)
        values = epoch_values(max(ckpt_epochs, log_epochs), seed + k)
        (fdir / "training_log_2026_1_1_10_00_00.txt").write_text(
            log_text(values[:log_epochs], unfinished=log_epochs > ckpt_epochs))
        if ckpt_epochs == 0:
            continue
        torch.manual_seed(seed + k)
        net = build_network(plans)
        if fg_bias is not None:
            with torch.no_grad():
                net.decoder.seg_layers[-1].bias[1] += fg_bias
        ckpt = {
            "network_weights": net.state_dict(),
            "optimizer_state": torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.99).state_dict(),
            "grad_scaler_state": None,
            "logging": nnunet_logging(values[:ckpt_epochs]),
            "_best_ema": None,
            "current_epoch": ckpt_epochs,
            "init_args": {"plans": plans, "configuration": "3d_fullres", "fold": fold,
                          "dataset_json": DATASET_JSON, "device": torch.device("cpu")},
            "trainer_name": checkpoint_trainer_name or trainer,
            "inference_allowed_mirroring_axes": (0, 1, 2),
        }
        torch.save(ckpt, fdir / "checkpoint_final.pth")
    return tdir


def tube_volume(shape=(16, 24, 24), seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(image float32, label uint8): a bright 3-voxel-thick rod along x plus one along z, on noise."""
    rng = np.random.default_rng(seed)
    lab = np.zeros(shape, np.uint8)
    zc, yc = shape[0] // 2, shape[1] // 2
    lab[zc - 1:zc + 2, yc - 1:yc + 2, 2:shape[2] - 2] = 1
    lab[2:shape[0] - 2, yc - 1:yc + 2, shape[2] // 2 - 1:shape[2] // 2 + 2] = 1
    img = (lab * 60.0 + rng.normal(100.0, 10.0, shape)).astype(np.float32)
    return img, lab
