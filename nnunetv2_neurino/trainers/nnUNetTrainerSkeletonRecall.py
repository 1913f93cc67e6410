"""Skeleton Recall (baseline of the paper's table 9): the established topology loss of the nnU-Net world.

``nnUNetTrainerSkeletonRecall``: nnU-Net's own network and recipe from whatever plan is given, plus
L_SR = 1 − (Σ T·p + ε)/(Σ T + ε) at every deep-supervision scale (nnU-Net's weights), added with weight 1.
The tube T (label skeleton dilated with a 2-step cross, masked by the label) is computed on the CPU in the
training data pipeline after spatial augmentation and travels as an extra ``segmentation`` channel,
downsampled with the label for deep supervision and sliced off before Dice + CE
(:mod:`~nnunetv2_neurino.trainers.topology_pipeline`).

The name does not collide with nnunetv2 2.8.1, which ships no Skeleton Recall trainer (nnU-Net's lookup
scans its own package first, so a colliding name would silently pick nnU-Net's class).
``nnUNetTrainerNeurINO_SkeletonRecall`` puts the same loss on NeurINO-T (instead of TASL) for comparisons.
"""

from __future__ import annotations

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunetv2_neurino.trainers.nnUNetTrainerNeurINO import nnUNetTrainerNeurINO
from nnunetv2_neurino.trainers.topology_loss import TopologyLossMixin
from nnunetv2_neurino.trainers.validation_summary import TopologySummaryMixin


class nnUNetTrainerSkeletonRecall(TopologySummaryMixin, TopologyLossMixin, nnUNetTrainer):
    """Stock nnU-Net network and recipe, Dice + CE + Skeleton Recall (weight 1)."""

    topology_loss = "skeleton_recall"


class nnUNetTrainerNeurINO_SkeletonRecall(nnUNetTrainerNeurINO):
    """NeurINO-T, Dice + CE + Skeleton Recall instead of TASL."""

    topology_loss = "skeleton_recall"
