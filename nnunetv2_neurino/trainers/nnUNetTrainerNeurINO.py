"""NeurINO trainers: DINOv3 ConvNeXt inflated to 3D + MedNeXt decoder, Dice + CE + official TASL.

Each variant is a subclass changing class attributes; ``nnUNetv2_train`` passes no options to trainers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from torch import nn

from nnunetv2_neurino.errors import NeurinoError
from nnunetv2_neurino.trainers.deep_supervision import NetworkStridesDeepSupervisionMixin
from nnunetv2_neurino.trainers.patch import PatchFitMixin
from nnunetv2_neurino.trainers.settings import AdamWPolyMixin, ClassSettingsMixin
from nnunetv2_neurino.trainers.topology_loss import TopologyLossMixin
from nnunetv2_neurino.trainers.validation_summary import TopologySummaryMixin
from nnunetv2_neurino.trainers.weights import DINOv3WeightsMixin


class NeurINONetworkMixin(PatchFitMixin):
    """Builds NeurINO from the plan: ``variant``, ``stem_stride``, ``inflation`` are class attributes.

    The plan's strides are mapped onto the network's 4 strided layers (anisotropic data). The
    builder is a classmethod (static with respect to the instance) and never loads weights: it also runs
    at inference.
    """

    variant: str = "tiny"
    inflation: str = "average"
    stem_stride: int = 2

    @classmethod
    def neurino_strides(cls, configuration_manager, patch_size: Sequence[int]):
        """Per-layer (z, y, x) strides of stem + 3 downsamplings for this plan and patch."""
        from nnunetv2_neurino.networks.neurino import neurino_strides_from_plan

        if len(patch_size) != 3:
            raise NeurinoError(f"{cls.__name__} is 3D only; the configuration's patch is {list(patch_size)} "
                               f"(use a 3d_fullres configuration)")
        strides = neurino_strides_from_plan(configuration_manager.pool_op_kernel_sizes, list(patch_size),
                                            cls.stem_stride)
        return strides  # the patch itself is fitted by PatchFitMixin (rounded down, see patch.py)

    @classmethod
    def network_total_stride(cls, configuration_manager, patch_size: Sequence[int]) -> list[int]:
        strides = np.asarray(cls.neurino_strides(configuration_manager, patch_size), dtype=int)
        return [int(s) for s in strides.prod(axis=0)]

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
                             strides=cls.neurino_strides(configuration_manager, patch))


class nnUNetTrainerNeurINO(TopologySummaryMixin, TopologyLossMixin, DINOv3WeightsMixin, NeurINONetworkMixin,
                           NetworkStridesDeepSupervisionMixin, AdamWPolyMixin,
                           ClassSettingsMixin, nnUNetTrainer):
    """NeurINO-T (DINOv3 ConvNeXt-Tiny, average inflation, stride-2 stem), Dice + CE + official TASL.

    After nnU-Net's final validation (also ``--val``) it writes ``validation/summary_topology.json``
    (F1, HD95, ESA/DSA/PDS; :class:`~.validation_summary.TopologySummaryMixin`).
    """

    topology_loss = "official"


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
