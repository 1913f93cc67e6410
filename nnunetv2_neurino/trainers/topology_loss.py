"""The topology loss of a trainer: one class attribute selects it, its own attributes configure it.

``topology_loss`` (no default: every trainer states it) is one of :data:`TOPOLOGY_LOSSES`:

- ``"none"``: the parent trainer's Dice + CE, any label set;
- ``"official"``: the official TASL (paper, suppl. §6): ∇L = (1 + β·TASL)·∇(Dice + CE), TASL computed on the
  CPU in a background thread from the detached full-resolution prediction while the backward pass runs
  (:class:`~nnunetv2_neurino.losses.official_step.OfficialTASLStep`); the loss module is the parent's;
- ``"differentiable"``: Dice + CE + the differentiable TASL, ground-truth graph from the data pipeline;
- ``"skeleton_recall"``: Dice + CE + Skeleton Recall at every deep-supervision scale, tube from the pipeline.

For the last two the loss is :class:`~nnunetv2_neurino.losses.compound.TopologyCompoundLoss`: Dice + CE on
channel 0 at every deep-supervision scale with exactly the weights of the parent trainer's loss, plus the
topology term, in fp32 (:class:`~nnunetv2_neurino.trainers.deep_supervision.Float32Loss`); its ground
truth comes from :mod:`~nnunetv2_neurino.trainers.topology_pipeline`.

Each loss has its own attributes (:data:`LOSS_SETTINGS`). When the trainer is created, before nnU-Net's
``__init__`` (so before anything is written), :func:`check_topology_settings` refuses an unknown
``topology_loss``, malformed λ / β / weights, and a setting of a loss that is not selected (it would be
silently ignored); a topology loss also requires a binary label set (:func:`~.labels.check_binary_labels`).

The mixin also owns the training step of its trainers (Dice + CE backward, the official TASL gradient
scale when selected, gradient clipping at ``grad_clip``, optimiser step).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from batchgeneratorsv2.transforms.base.basic_transform import BasicTransform
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from nnunetv2.utilities.helpers import dummy_context
from torch import autocast

from nnunetv2_neurino.errors import NeurinoError
from nnunetv2_neurino.trainers.deep_supervision import Float32Loss
from nnunetv2_neurino.trainers.labels import check_binary_labels
from nnunetv2_neurino.trainers.settings import DEFAULT_DEVICE
from nnunetv2_neurino.trainers.topology_pipeline import insert_before_ds_downsampling, topology_transform

#: values of a trainer's ``topology_loss``
TOPOLOGY_LOSSES = ("none", "official", "differentiable", "skeleton_recall")
#: the class attributes that configure each topology loss (and only it)
LOSS_SETTINGS: dict[str, tuple[str, ...]] = {
    "official": ("official_tasl_lambdas", "official_tasl_beta"),
    "differentiable": ("dtasl_lambdas", "dtasl_tau", "dtasl_pairs", "dtasl_dilation", "dtasl_seed"),
    "skeleton_recall": ("skeleton_recall_weight",),
}
#: losses whose ground truth comes from the data pipeline (and whose term is part of the loss module)
PIPELINE_LOSSES = ("differentiable", "skeleton_recall")


def _non_negative(value, where: str) -> float:
    number = not isinstance(value, bool) and isinstance(value, (int, float))
    if not number or not math.isfinite(value) or value < 0:
        raise NeurinoError(f"{where} must be a finite number >= 0, got {value!r}")
    return float(value)


def _lambdas(value, where: str) -> tuple[float, float, float]:
    if not isinstance(value, (tuple, list)) or len(value) != 3:
        raise NeurinoError(f"{where} must be (λ_node, λ_edge, λ_path), got {value!r}")
    return tuple(_non_negative(v, where) for v in value)


def check_topology_settings(cls: type) -> None:
    """Refuse a trainer class whose topology-loss attributes are invalid (message names class and attribute).

    Checks ``topology_loss`` against :data:`TOPOLOGY_LOSSES`, the λ triples, β, τ, K, r_d and the Skeleton
    Recall weight, and that no attribute of :data:`LOSS_SETTINGS` differs from its default for a loss
    the trainer does not use.
    """
    name = cls.__name__
    if cls.topology_loss not in TOPOLOGY_LOSSES:
        raise NeurinoError(f"{name}.topology_loss = {cls.topology_loss!r}: choose one of "
                           f"{', '.join(repr(v) for v in TOPOLOGY_LOSSES)}")
    for loss, attributes in LOSS_SETTINGS.items():
        if loss == cls.topology_loss:
            continue
        changed = [a for a in attributes if getattr(cls, a) != getattr(TopologyLossMixin, a)]
        if changed:
            raise NeurinoError(f"{name}.{changed[0]} = {getattr(cls, changed[0])!r} configures the {loss} "
                               f"loss, but {name}.topology_loss = {cls.topology_loss!r}: it would be "
                               f"ignored. Set topology_loss = {loss!r} or remove {changed[0]}.")
    _lambdas(cls.official_tasl_lambdas, f"{name}.official_tasl_lambdas")
    _lambdas(cls.dtasl_lambdas, f"{name}.dtasl_lambdas")
    _non_negative(cls.official_tasl_beta, f"{name}.official_tasl_beta")
    _non_negative(cls.skeleton_recall_weight, f"{name}.skeleton_recall_weight")
    if _non_negative(cls.dtasl_tau, f"{name}.dtasl_tau") == 0:
        raise NeurinoError(f"{name}.dtasl_tau must be > 0, got {cls.dtasl_tau!r}")
    if isinstance(cls.dtasl_pairs, bool) or not isinstance(cls.dtasl_pairs, int) or cls.dtasl_pairs < 1:
        raise NeurinoError(f"{name}.dtasl_pairs must be an integer >= 1, got {cls.dtasl_pairs!r}")
    _non_negative(cls.dtasl_dilation, f"{name}.dtasl_dilation")


def split_parent_loss(loss: torch.nn.Module) -> tuple[torch.nn.Module, Sequence[float] | None]:
    """(Dice + CE module, deep-supervision weights or None) of a trainer's ``_build_loss`` result.

    Accepts nnU-Net's ``DeepSupervisionWrapper(DC_and_CE_loss)`` and this package's
    ``Float32Loss(DeepSupervisionWrapper(...))`` (or either without deep supervision).
    """
    if isinstance(loss, Float32Loss):
        loss = loss.loss
    if isinstance(loss, DeepSupervisionWrapper):
        return loss.loss, tuple(float(w) for w in np.asarray(loss.weight_factors, dtype=np.float64))
    return loss, None


class TopologyLossMixin:
    """Select and configure the topology loss with class attributes (see the module docstring).

    Class attributes
    ----------------
    topology_loss : one of :data:`TOPOLOGY_LOSSES`; no default.
    official_tasl_lambdas, official_tasl_beta : (λ_node, λ_edge, λ_path) and β of the official TASL.
    dtasl_lambdas : (λ_node, λ_edge, λ_path) of the differentiable TASL.
    dtasl_tau, dtasl_pairs, dtasl_dilation : softmin temperature τ, sampled node pairs K per sample and
        path-corridor radius r_d (voxels) of the differentiable TASL.
    dtasl_seed : seed of its pair sampling (None: fresh randomness every run).
    skeleton_recall_weight : weight of L_SR.
    grad_clip : gradient-norm clipping of the training step (nnU-Net's 12).
    """

    topology_loss: str | None = None
    official_tasl_lambdas: tuple[float, float, float] = (1.0, 0.5, 0.5)
    official_tasl_beta: float = 0.1
    dtasl_lambdas: tuple[float, float, float] = (1.0, 0.5, 0.5)
    dtasl_tau: float = 0.1
    dtasl_pairs: int = 4
    dtasl_dilation: float = 3.0
    dtasl_seed: int | None = None
    skeleton_recall_weight: float = 1.0
    grad_clip: float = 12.0

    # -- creation: settings and labels are checked before nnU-Net's __init__ writes anything --------
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = DEFAULT_DEVICE):
        check_topology_settings(type(self))
        if self.topology_loss != "none":
            check_binary_labels(dataset_json, type(self).__name__)
        super().__init__(plans, configuration, fold, dataset_json, device)

    # -- initialize(): the loss ----------------------------------------------------------------------
    def _build_loss(self):
        loss = super()._build_loss()
        if self.topology_loss not in PIPELINE_LOSSES:
            return loss  # none / official: the parent's Dice + CE (official TASL scales its gradients)
        from nnunetv2_neurino.losses.compound import TopologyCompoundLoss
        from nnunetv2_neurino.losses.skeleton_recall import SkeletonRecallLoss
        from nnunetv2_neurino.losses.tasl_differentiable import DifferentiableTASL

        dcce, weights = split_parent_loss(loss)
        node, edge, path = self.dtasl_lambdas
        differentiable = DifferentiableTASL(seed=self.dtasl_seed, lambda_node=node, lambda_edge=edge,
                                            lambda_path=path, tau=self.dtasl_tau, n_pairs=self.dtasl_pairs,
                                            dilation_radius=self.dtasl_dilation)
        skeleton_recall = SkeletonRecallLoss()
        skeleton_recall.weight = float(self.skeleton_recall_weight)
        loss = TopologyCompoundLoss(dcce, weights, topology=self.topology_loss,
                                    differentiable=differentiable, skeleton_recall=skeleton_recall)
        return Float32Loss(loss)

    # -- on_train_start(): the training data pipeline ------------------------------------------------
    @classmethod
    def topology_transform(cls, ignore_label: int | None = None) -> BasicTransform | None:
        """The pipeline transform appending this trainer's ground-truth channels (None: it needs none)."""
        return topology_transform(cls.topology_loss, ignore_label)

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

    # -- every iteration: the training step ------------------------------------------------------------
    def _official_tasl_step(self):
        if getattr(self, "_neurino_official_step", None) is None:
            from nnunetv2_neurino.losses.official_step import OfficialTASLStep
            from nnunetv2_neurino.losses.tasl_official import OfficialTASL

            node, edge, path = self.official_tasl_lambdas
            official = OfficialTASL(lambda_node=node, lambda_edge=edge, lambda_path=path,
                                    beta=self.official_tasl_beta)
            self._neurino_official_step = OfficialTASLStep(official, self.label_manager.ignore_label)
        return self._neurino_official_step

    def train_step(self, batch: dict) -> dict:
        """Dice + CE (+ topology term) backward, official TASL gradient scale, clipping, optimiser step."""
        data = batch["data"].to(self.device, non_blocking=True)
        target = batch["target"]
        if isinstance(target, list):
            target = [t.to(self.device, non_blocking=True) for t in target]
        else:
            target = target.to(self.device, non_blocking=True)

        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.device.type, enabled=True) if self.device.type == "cuda" else dummy_context():
            output = self.network(data)
            loss = self.loss(output, target)
        official = self._official_tasl_step() if self.topology_loss == "official" else None
        if official is not None:
            official.start(output, target)  # TASL runs in its thread during the backward pass

        if self.grad_scaler is not None:
            self.grad_scaler.scale(loss).backward()
            self.grad_scaler.unscale_(self.optimizer)
        else:
            loss.backward()
        factor = official.finish(self.network.parameters()) if official is not None else 1.0
        torch.nn.utils.clip_grad_norm_(self.network.parameters(), self.grad_clip)
        if self.grad_scaler is not None:
            self.grad_scaler.step(self.optimizer)
            self.grad_scaler.update()
        else:
            self.optimizer.step()
        return {"loss": np.asarray(loss.detach().float().cpu().numpy() * factor)}
