"""Helpers for in-process trainer tests: a minimal nnU-Net v2 plans dict (stock PlainConvUNet architecture
or a custom network), the nnUNet_* folders, a trainer on the CPU, and Y-tube batches whose targets carry the
trainer's extra topology channels at every deep-supervision scale."""

from __future__ import annotations

import copy
import os

import numpy as np
import torch
from batchgeneratorsv2.transforms.utils.deep_supervision_downsampling import DownsampleSegForDSTransform

from nnunetv2_neurino.testing.phantoms import y_tube

DATASET = "Dataset986_TopologyTrainerUnit"
DATASET_JSON = {"channel_names": {"0": "zscore"}, "labels": {"background": 0, "neurite": 1},
                "numTraining": 2, "file_ending": ".nii.gz"}
RESAMPLING = ("data", "seg", "probabilities")
ISO_STRIDES = [[1, 1, 1], [2, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2]]
WEIGHT_VARS = ("NEURINO_DINOV3_WEIGHTS", "NEURINO_DINOV3_WEIGHTS_TINY", "NEURINO_DINOV3_WEIGHTS_SMALL")


def plain_unet_architecture(strides, features=(8, 16, 32, 32, 32)) -> dict:
    """nnU-Net's ``architecture`` entry for a PlainConvUNet (what the planner writes, small widths)."""
    n = len(strides)
    return {
        "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
        "arch_kwargs": {
            "n_stages": n, "features_per_stage": list(features[:n]),
            "conv_op": "torch.nn.modules.conv.Conv3d",
            "kernel_sizes": [[3, 3, 3]] * n, "strides": [list(s) for s in strides],
            "n_conv_per_stage": [2] * n, "n_conv_per_stage_decoder": [2] * (n - 1), "conv_bias": True,
            "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
            "norm_op_kwargs": {"eps": 1e-05, "affine": True}, "dropout_op": None, "dropout_op_kwargs": None,
            "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True},
        },
        "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
    }


def make_plans(patch, strides=ISO_STRIDES, configuration="3d_fullres", architecture=None) -> dict:
    """A minimal nnU-Net v2 plans dict with one 3D configuration."""
    dim = len(patch)
    architecture = architecture or plain_unet_architecture(strides)
    return {
        "dataset_name": DATASET, "plans_name": "nnUNetPlans", "image_reader_writer": "SimpleITKIO",
        "transpose_forward": list(range(dim)), "transpose_backward": list(range(dim)),
        "original_median_spacing_after_transp": [1.0] * dim, "original_median_shape_after_transp": [64] * dim,
        "label_manager": "LabelManager", "experiment_planner_used": "ExperimentPlanner",
        "foreground_intensity_properties_per_channel": {
            "0": {"mean": 0.0, "std": 1.0, "percentile_00_5": -1.0, "percentile_99_5": 1.0}},
        "configurations": {configuration: {
            "data_identifier": "nnUNetPlans_3d_fullres", "preprocessor_name": "DefaultPreprocessor",
            "batch_size": 2, "patch_size": list(patch), "median_image_size_in_voxels": [64] * dim,
            "spacing": [1.0] * dim, "normalization_schemes": ["ZScoreNormalization"],
            "use_mask_for_norm": [False], "batch_dice": False,
            **{f"resampling_fn_{k}": "resample_data_or_seg_to_shape" for k in RESAMPLING},
            **{f"resampling_fn_{k}_kwargs": {"is_seg": k == "seg", "order": 1, "order_z": 0,
                                             "force_separate_z": None} for k in RESAMPLING},
            "architecture": architecture,
        }},
    }


def setup_nnunet_dirs(tmp_path, monkeypatch):
    """nnUNet_raw/preprocessed/results under tmp_path, no DINOv3 variables, a stub preprocessed folder."""
    for var in WEIGHT_VARS:
        monkeypatch.delenv(var, raising=False)
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.setenv(name, str(tmp_path / name))
    data = tmp_path / "nnUNet_preprocessed" / DATASET / "nnUNetPlans_3d_fullres"
    data.mkdir(parents=True)
    (data / "case.b2nd").touch()  # lets nnU-Net infer its dataset class; no data is read here
    return tmp_path


def trainer_device() -> torch.device:
    """Trainer device: ``$NEURINO_TEST_DEVICE`` (``benchmarks/gpu_check.sh`` sets ``cuda``), else the CPU."""
    return torch.device(os.environ.get("NEURINO_TEST_DEVICE", "cpu"))


def make_trainer(cls, patch=(32, 32, 32), strides=ISO_STRIDES, dataset_json=None, configuration="3d_fullres"):
    plans = make_plans(patch, strides, configuration)
    plans["continue_training"] = False  # nnU-Net 2.8 pops this key in __init__
    return cls(plans=plans, configuration=configuration, fold=0,
               dataset_json=copy.deepcopy(dataset_json or DATASET_JSON), device=trainer_device())


def y_tube_labels(patch, radius=2.0) -> np.ndarray:
    """Two Y-shaped tubes (the second shifted by 3 voxels along x): int16 (2, 1, Z, Y, X) labels 0/1."""
    one = y_tube(tuple(patch), radius)
    return np.stack([one, np.roll(one, 3, axis=2)])[:, None].astype(np.int16)


def topology_batch(trainer, seed=0, labels=None) -> dict:
    """A batch of 2 Y tubes (noisy images) whose targets went through the trainer's topology transform and
    nnU-Net's deep-supervision downsampling, exactly as its data pipeline would produce them."""
    patch = trainer.configuration_manager.patch_size
    labels = y_tube_labels(patch) if labels is None else labels
    rng = np.random.default_rng(seed)
    transform = type(trainer).topology_transform(trainer.label_manager.ignore_label) \
        if hasattr(type(trainer), "topology_transform") else None
    scales = trainer._get_deep_supervision_scales()
    per_sample = []
    for lab in labels:
        seg = torch.from_numpy(lab)
        if transform is not None:
            seg = transform(segmentation=seg)["segmentation"]
        if scales is not None:
            seg = DownsampleSegForDSTransform(ds_scales=scales)(segmentation=seg)["segmentation"]
        per_sample.append(seg)
    if scales is not None:
        target = [torch.stack([s[i] for s in per_sample]) for i in range(len(scales))]
    else:
        target = torch.stack(per_sample)
    data = torch.from_numpy(labels.astype(np.float32) + rng.normal(0, 0.5, labels.shape).astype(np.float32))
    return {"data": data, "target": target}


def grads_of_one_step(trainer, batch, monkeypatch) -> tuple[dict, float]:
    """Run ``trainer.train_step`` with the optimiser step replaced by a gradient capture."""
    grads = {}

    def capture_and_skip_step(*args, **kwargs):
        grads.update({n: p.grad.detach().clone() for n, p in trainer.network.named_parameters()
                      if p.grad is not None})

    monkeypatch.setattr(trainer.optimizer, "step", capture_and_skip_step)
    out = trainer.train_step(batch)
    return grads, float(out["loss"])
