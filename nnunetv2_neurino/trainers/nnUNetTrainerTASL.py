"""TASL for any backbone (paper, suppl. §6): stock nnU-Net + official TASL, and the ``_dTASL`` variants.

- ``nnUNetTrainerTASL``: nnU-Net's own network from whatever plan is given (``-p nnUNetPlans``,
  ``-p nnUNetResEncUNetMPlans``, …) and nnU-Net's own recipe (SGD, 1000 epochs, its deep-supervision
  weights), plus the official TASL: ∇L = (1 + β·TASL)·∇(Dice + CE), TASL computed on the CPU in a
  background thread from the detached full-resolution prediction while the backward pass runs
  (:class:`~nnunetv2_neurino.trainers.topology_loss.TopologyLossMixin`). It differs from
  ``nnUNetTrainer`` only by the loss: table 9's "nnUNet + TASL".
- ``…_dTASL``: the same trainer with the official TASL replaced by the differentiable TASL (suppl. §6): the
  ground-truth skeleton graph (node ids, branch ids) is computed in the data pipeline after the spatial
  augmentation and carried as 2 extra ``segmentation`` channels, which are sliced off before Dice + CE at
  every deep-supervision scale; the path term is computed every step from the current prediction
  (:mod:`~nnunetv2_neurino.trainers.topology_pipeline`). The TASL is added with weight 1.

A ``_dTASL`` variant exists for every TASL trainer of the package: ``nnUNetTrainerTASL_dTASL`` here, the
NeurINO ones below, ``nnUNetTrainerMedNeXtTASL_dTASL`` in ``nnUNetTrainerMedNeXt.py``. All refuse a data
set whose labels are not background + one class, before training starts, and write
``validation/summary_topology.json`` after the final validation.
"""

from __future__ import annotations

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunetv2_neurino.trainers.nnUNetTrainerNeurINO import (
    nnUNetTrainerNeurINO,
    nnUNetTrainerNeurINO_center,
    nnUNetTrainerNeurINO_S,
    nnUNetTrainerNeurINO_scratch,
    nnUNetTrainerNeurINO_stride4,
)
from nnunetv2_neurino.trainers.topology_loss import TopologyLossMixin
from nnunetv2_neurino.trainers.validation_summary import TopologySummaryMixin


class nnUNetTrainerTASL(TopologySummaryMixin, TopologyLossMixin, nnUNetTrainer):
    """Stock nnU-Net network and recipe + official TASL (λ 1/0.5/0.5, β 0.1, full-resolution output)."""

    topology_loss = "official"


class nnUNetTrainerTASL_dTASL(nnUNetTrainerTASL):
    """Stock nnU-Net network and recipe + differentiable TASL."""

    topology_loss = "differentiable"


class nnUNetTrainerNeurINO_dTASL(nnUNetTrainerNeurINO):
    """NeurINO-T (pretrained DINOv3-T, average inflation, stride-2 stem) + differentiable TASL."""

    topology_loss = "differentiable"


class nnUNetTrainerNeurINO_S_dTASL(nnUNetTrainerNeurINO_S):
    """NeurINO-S + differentiable TASL."""

    topology_loss = "differentiable"


class nnUNetTrainerNeurINO_center_dTASL(nnUNetTrainerNeurINO_center):
    """NeurINO-T, centre inflation + differentiable TASL."""

    topology_loss = "differentiable"


class nnUNetTrainerNeurINO_stride4_dTASL(nnUNetTrainerNeurINO_stride4):
    """NeurINO-T, stride-4 stem + differentiable TASL."""

    topology_loss = "differentiable"


class nnUNetTrainerNeurINO_scratch_dTASL(nnUNetTrainerNeurINO_scratch):
    """NeurINO-T from random initialisation + differentiable TASL."""

    topology_loss = "differentiable"
