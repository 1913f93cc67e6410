"""Topology losses in nnU-Net trainers: ground truth from the data pipeline, loss terms beside Dice + CE.

nnU-Net's loader keeps only ``image`` and ``segmentation``, so what a topology loss needs from
the label is computed in the trainer's own data pipeline and carried as extra integer ``segmentation``
channels:

- ``topology = "differentiable"`` appends :class:`~nnunetv2_neurino.losses.transforms.TopologyGraphTransform`
  (GT node ids, branch ids → target ``[label, nodes, branches]``);
- ``topology = "skeleton_recall"`` appends
  :class:`~nnunetv2_neurino.losses.transforms.SkeletonRecallTubeTransform` (target ``[label, tube]``).

The transform is inserted into nnU-Net's own training pipeline **after** the spatial augmentation,
mirroring and ``RemoveLabelTansform(-1, 0)`` and **before** ``DownsampleSegForDSTransform``, so the
channels follow every augmentation of the label and are downsampled with it for deep supervision. The
validation pipeline is left as nnU-Net builds it (label only): the logged validation loss is Dice + CE, as
for every other trainer, and nnU-Net's pseudo-Dice code sees the single label channel it expects.

The loss is :class:`~nnunetv2_neurino.losses.compound.TopologyCompoundLoss`: Dice + CE on channel 0 at
every deep-supervision scale with exactly the weights of the parent trainer's loss (nnU-Net's 1, ½, ¼, …
with the lowest output at 0, or the network-stride weights of NeurINO/MedNeXt), plus the topology term,
all in fp32 (autocast off; :class:`~nnunetv2_neurino.trainers.deep_supervision.Float32Loss`).

Both topology modes (and the official TASL) are defined for one foreground class:
:class:`BinaryLabelsMixin` refuses any other ``dataset.json`` label set when the trainer is created,
before nnU-Net creates an output folder or starts training.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from batchgeneratorsv2.transforms.base.basic_transform import BasicTransform
from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms
from batchgeneratorsv2.transforms.utils.deep_supervision_downsampling import DownsampleSegForDSTransform
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper

from nnunetv2_neurino.errors import NeurinoError
from nnunetv2_neurino.trainers.deep_supervision import Float32Loss
from nnunetv2_neurino.trainers.settings import _CUDA

#: topology modes a trainer can select through its ``topology`` class attribute.
PIPELINE_TOPOLOGIES = ("none", "differentiable", "skeleton_recall")


def check_binary_labels(dataset_json: dict, trainer_name: str) -> None:
    """Refuse a data set whose labels are not background + exactly one foreground class.

    Parameters
    ----------
    dataset_json : the data set's ``dataset.json`` as a dict (its ``labels`` entry is checked).
    trainer_name : named in the message.

    Raises
    ------
    NeurinoError
        When ``labels`` is missing, declares regions (list values), or has zero or several foreground
        classes. An ``ignore`` label is allowed.
    """
    labels = dataset_json.get("labels") if isinstance(dataset_json, dict) else None
    if not isinstance(labels, dict):
        raise NeurinoError(f"{trainer_name}: dataset.json has no 'labels' dictionary")
    regions = {k: v for k, v in labels.items() if isinstance(v, (list, tuple))}
    foreground = sorted({int(v) for k, v in labels.items()
                         if k not in ("background", "ignore") and not isinstance(v, (list, tuple))} - {0})
    if regions or len(foreground) != 1:
        why = (f"regions {regions}" if regions else
               f"{len(foreground)} foreground classes {foreground}")
        raise NeurinoError(
            f"{trainer_name} trains a topology loss for one foreground structure (neurites): dataset.json "
            f"'labels' must be background + one class (optionally 'ignore'), got {labels} ({why}). "
            f"Merge the foreground labels into one class, or use a trainer without a topology loss "
            f"(e.g. nnUNetTrainer, nnUNetTrainerMedNeXt, nnUNetTrainerNeurINO_noTASL).")


class BinaryLabelsMixin:
    """Check ``dataset.json`` labels (:func:`check_binary_labels`) before nnU-Net's ``__init__`` runs.

    ``requires_binary_labels = False`` in a subclass without a topology loss switches the check off.
    """

    requires_binary_labels: bool = True

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = _CUDA):
        if self.requires_binary_labels:
            check_binary_labels(dataset_json, type(self).__name__)
        super().__init__(plans, configuration, fold, dataset_json, device)


def insert_before_ds_downsampling(pipeline: BasicTransform, transform: BasicTransform) -> ComposeTransforms:
    """Insert ``transform`` into nnU-Net's composed pipeline just before ``DownsampleSegForDSTransform``.

    Without deep supervision (no downsampling transform) it is appended at the end. Returns the same
    ``ComposeTransforms`` object, modified.
    """
    if not isinstance(pipeline, ComposeTransforms):
        raise TypeError(f"expected nnU-Net's ComposeTransforms pipeline, got {type(pipeline).__name__}")
    steps = list(pipeline.transforms)
    where = next((i for i, t in enumerate(steps) if isinstance(t, DownsampleSegForDSTransform)), len(steps))
    steps.insert(where, transform)
    pipeline.transforms = steps
    return pipeline


def split_parent_loss(loss: torch.nn.Module) -> tuple[torch.nn.Module, Sequence[float] | None]:
    """(Dice + CE module, deep-supervision weights or None) of a trainer's ``_build_loss`` result.

    Accepts nnU-Net's ``DeepSupervisionWrapper(DC_and_CE_loss)`` and this package's
    ``Float32Loss(DeepSupervisionWrapper(...))`` (or either without deep supervision).
    """
    if isinstance(loss, Float32Loss):
        loss = loss.loss
    if isinstance(loss, DeepSupervisionWrapper):
        return loss.loss, tuple(float(w) for w in loss.weight_factors)
    return loss, None


class TopologyLossMixin:
    """Dice + CE + a topology term whose ground truth comes from the data pipeline (module docstring).

    Class attributes
    ----------------
    topology : ``"differentiable"`` (differentiable TASL), ``"skeleton_recall"`` or ``"none"``.
    tasl_lambdas : (λ_node, λ_edge, λ_path) of the differentiable TASL, default (1.0, 0.5, 0.5).
    dtasl_tau, dtasl_pairs, dtasl_dilation : softmin temperature τ, sampled node pairs K per sample and
        path-corridor radius r_d (voxels) of the differentiable TASL.
    dtasl_seed : seed of the pair sampling (None: fresh randomness every run).
    skeleton_recall_weight : weight of L_SR (default 1).
    """

    topology: str = "differentiable"
    tasl_lambdas: tuple[float, float, float] = (1.0, 0.5, 0.5)
    dtasl_tau: float = 0.1
    dtasl_pairs: int = 4
    dtasl_dilation: float = 3.0
    dtasl_seed: int | None = None
    skeleton_recall_weight: float = 1.0

    @classmethod
    def topology_transform(cls, ignore_label: int | None = None) -> BasicTransform | None:
        """The data-pipeline transform appending this trainer's ground-truth channels (None for ``none``)."""
        from nnunetv2_neurino.losses.transforms import SkeletonRecallTubeTransform, TopologyGraphTransform

        if cls.topology not in PIPELINE_TOPOLOGIES:
            raise NeurinoError(f"{cls.__name__}.topology = {cls.topology!r}; valid: "
                               f"{', '.join(PIPELINE_TOPOLOGIES)}")
        if cls.topology == "differentiable":
            return TopologyGraphTransform(ignore_label=ignore_label)
        if cls.topology == "skeleton_recall":
            return SkeletonRecallTubeTransform(ignore_label=ignore_label)
        return None

    @classmethod
    def get_training_transforms(cls, patch_size, rotation_for_DA, deep_supervision_scales, mirror_axes,
                                do_dummy_2d_data_aug, use_mask_for_norm=None, is_cascaded=False,
                                foreground_labels=None, regions=None, ignore_label=None) -> BasicTransform:
        """nnU-Net's training pipeline with the topology transform inserted before the DS downsampling."""
        pipeline = super().get_training_transforms(
            patch_size, rotation_for_DA, deep_supervision_scales, mirror_axes, do_dummy_2d_data_aug,
            use_mask_for_norm=use_mask_for_norm, is_cascaded=is_cascaded, foreground_labels=foreground_labels,
            regions=regions, ignore_label=ignore_label)
        transform = cls.topology_transform(ignore_label)
        if transform is None:
            return pipeline
        if regions is not None:
            raise NeurinoError(f"{cls.__name__}: topology losses need a label (not region) data set")
        return insert_before_ds_downsampling(pipeline, transform)

    def _topology_loss_modules(self) -> dict:
        from nnunetv2_neurino.losses.skeleton_recall import SkeletonRecallLoss
        from nnunetv2_neurino.losses.tasl import DifferentiableTASL

        node, edge, path = self.tasl_lambdas
        differentiable = DifferentiableTASL(seed=self.dtasl_seed, lambda_node=node, lambda_edge=edge,
                                            lambda_path=path, tau=self.dtasl_tau, n_pairs=self.dtasl_pairs,
                                            dilation_radius=self.dtasl_dilation)
        skeleton_recall = SkeletonRecallLoss()
        skeleton_recall.weight = float(self.skeleton_recall_weight)
        return {"differentiable": differentiable, "skeleton_recall": skeleton_recall}

    def _build_loss(self):
        from nnunetv2_neurino.losses.compound import TopologyCompoundLoss

        dcce, weights = split_parent_loss(super()._build_loss())
        if weights is not None:
            weights = tuple(float(w) for w in np.asarray(weights, dtype=np.float64))
        loss = TopologyCompoundLoss(dcce, weights, topology=self.topology,
                                    ignore_label=self.label_manager.ignore_label,
                                    **self._topology_loss_modules())
        return Float32Loss(loss)
