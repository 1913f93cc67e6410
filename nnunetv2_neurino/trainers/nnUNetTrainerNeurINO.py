"""NeurINO trainers: DINOv3 ConvNeXt inflated to 3D + MedNeXt decoder, Dice + CE + official TASL.

Each variant is a subclass changing class attributes; ``nnUNetv2_train`` passes no options to trainers.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from nnunetv2_neurino.trainers.base import OwnNetworkTrainer
from nnunetv2_neurino.trainers.topology_loss import TopologyLossMixin
from nnunetv2_neurino.trainers.validation_summary import TopologySummaryMixin
from nnunetv2_neurino.trainers.weights import DINOv3WeightsMixin


class nnUNetTrainerNeurINO(TopologySummaryMixin, TopologyLossMixin, DINOv3WeightsMixin, OwnNetworkTrainer):
    """NeurINO-T (DINOv3 ConvNeXt-Tiny, average inflation, stride-2 stem), Dice + CE + official TASL.

    The network is built from the plan (:class:`~.base.OwnNetworkTrainer`: the plan's strides are mapped
    onto the network's 4 strided layers, the patch is fitted to the total stride). Class attributes:
    ``variant`` (``"tiny"``, ``"small"``), ``inflation`` (``"average"``, ``"center"``), ``stem_stride``
    (2 or 4), ``use_pretrained`` (:class:`~.weights.DINOv3WeightsMixin`), ``topology_loss`` and its settings
    (:class:`~.topology_loss.TopologyLossMixin`). After nnU-Net's final validation (also ``--val``) it
    writes ``validation/summary_topology.json`` (F1, HD95, ESA/DSA/PDS;
    :class:`~.validation_summary.TopologySummaryMixin`).
    """

    topology_loss = "official"
    variant: str = "tiny"
    inflation: str = "average"
    stem_stride: int = 2

    @classmethod
    def network_strides(cls, configuration_manager, patch_size: Sequence[int]) -> list[tuple[int, int, int]]:
        """Per-layer (z, y, x) strides of stem + 3 downsamplings for this plan and patch."""
        return cls.plan_strides(configuration_manager, patch_size, cls.stem_stride)

    @classmethod
    def build_network_architecture(cls, plans_manager, configuration_manager, num_input_channels: int,
                                   num_output_channels: int,
                                   enable_deep_supervision: bool = True) -> nn.Module:
        from nnunetv2_neurino.networks.neurino import build_neurino

        patch = configuration_manager.patch_size
        return build_neurino(variant=cls.variant, in_channels=num_input_channels,
                             num_classes=num_output_channels,
                             deep_supervision=enable_deep_supervision, stem_stride=cls.stem_stride,
                             inflation=cls.inflation, weights=None,
                             strides=cls.network_strides(configuration_manager, patch))


class nnUNetTrainerNeurINO_S(nnUNetTrainerNeurINO):
    """NeurINO-S: DINOv3 ConvNeXt-Small encoder."""

    variant = "small"


class nnUNetTrainerNeurINO_center(nnUNetTrainerNeurINO):
    """Centre inflation (2D kernel in the middle depth slot) instead of average inflation."""

    inflation = "center"


class nnUNetTrainerNeurINO_stride4(nnUNetTrainerNeurINO):
    """Stride-4 stem (table 8's 4× row; total stride 32)."""

    stem_stride = 4


class nnUNetTrainerNeurINO_scratch(nnUNetTrainerNeurINO):
    """Random initialisation, no DINOv3 file (fig. 7 ablation; fine-tuning with -pretrained_weights)."""

    use_pretrained = False


class nnUNetTrainerNeurINO_noTASL(nnUNetTrainerNeurINO):
    """Dice + CE only (any label set)."""

    topology_loss = "none"
