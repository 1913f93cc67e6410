"""MedNeXt on nnU-Net v2: the baseline of the paper's tables 6 and 9, with and without TASL.

MedNeXt exists only as an nnU-Net v1 fork; these trainers build it from the shared blocks
(:func:`nnunetv2_neurino.networks.mednext.build_mednext`) for any nnU-Net v2 plan:

- the plan's strides (entries 1–4 of ``strides``) map onto MedNeXt's 4 down blocks, so anisotropic plans
  keep their per-axis downsampling; the patch is fitted to the total stride and written into the saved
  plans (:class:`~.base.OwnNetworkTrainer`), deep-supervision scales come from the network (5 outputs,
  weights 1, ½, ¼, ⅛, 1/16 normalised);
- training recipe: AdamW (lr 1e-3, weight decay 3e-5, eps 1e-4), poly schedule 0.9, gradient clipping 12,
  110 epochs — the same recipe as the NeurINO trainers (MedNeXt's own nnU-Net v1 trainers also use AdamW
  at lr 1e-3), so a MedNeXt-vs-NeurINO comparison differs only in the network. Subclass to change it.

Network settings are class attributes: ``mednext_size`` (S, B, M, L), ``mednext_kernel`` (3 or 5),
``mednext_grn``. After the final validation (also ``--val``) the trainers write
``validation/summary_topology.json`` (F1, HD95, ESA/DSA/PDS) like the NeurINO trainers. k5 models are
meant to start from a k3 checkpoint converted by ``neurino upkern``
(passed with ``-pretrained_weights``), as in MedNeXt's UpKern.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from nnunetv2_neurino.errors import NeurinoError
from nnunetv2_neurino.trainers.base import OwnNetworkTrainer
from nnunetv2_neurino.trainers.topology_loss import TopologyLossMixin
from nnunetv2_neurino.trainers.validation_summary import TopologySummaryMixin


class nnUNetTrainerMedNeXt(TopologySummaryMixin, TopologyLossMixin, OwnNetworkTrainer):
    """MedNeXt-L, kernel 3, GRN (table 6 baseline), Dice + CE.

    Built from the plan (class attributes ``mednext_size``, ``mednext_kernel``, ``mednext_grn``);
    ``build_network_architecture`` is a classmethod (it also runs at inference) and never loads weights.
    """

    topology_loss = "none"
    mednext_size: str = "L"
    mednext_kernel: int = 3
    mednext_grn: bool = True

    @classmethod
    def check_network_settings(cls) -> None:
        """Refuse an unknown size or kernel before anything is built (names the trainer and the choices)."""
        from nnunetv2_neurino.networks.mednext import MEDNEXT_KERNELS, MEDNEXT_SIZES

        if str(cls.mednext_size).upper() not in MEDNEXT_SIZES:
            raise NeurinoError(f"{cls.__name__}.mednext_size = {cls.mednext_size!r}: unknown MedNeXt size; "
                               f"valid: {', '.join(MEDNEXT_SIZES)}")
        if cls.mednext_kernel not in MEDNEXT_KERNELS:
            raise NeurinoError(f"{cls.__name__}.mednext_kernel = {cls.mednext_kernel!r}: unsupported kernel "
                               f"size; valid: {', '.join(map(str, MEDNEXT_KERNELS))}")

    @classmethod
    def network_strides(cls, configuration_manager, patch_size: Sequence[int]) -> list[tuple[int, int, int]]:
        """Per-axis (z, y, x) strides of the 4 down blocks for this plan and patch."""
        # MedNeXt's first down block plays the role of NeurINO's stem: a plan factor 2 stays 2
        return cls.plan_strides(configuration_manager, patch_size, first_stride=2)

    @classmethod
    def build_network_architecture(cls, plans_manager, configuration_manager, num_input_channels: int,
                                   num_output_channels: int,
                                   enable_deep_supervision: bool = True) -> nn.Module:
        from nnunetv2_neurino.networks.mednext import build_mednext

        cls.check_network_settings()
        strides = cls.network_strides(configuration_manager, configuration_manager.patch_size)
        return build_mednext(size=cls.mednext_size, kernel_size=cls.mednext_kernel, grn=cls.mednext_grn,
                             in_channels=num_input_channels, num_classes=num_output_channels,
                             deep_supervision=enable_deep_supervision, strides=strides)


class nnUNetTrainerMedNeXt_S(nnUNetTrainerMedNeXt):
    """MedNeXt-S, kernel 3."""

    mednext_size = "S"


class nnUNetTrainerMedNeXt_B(nnUNetTrainerMedNeXt):
    """MedNeXt-B, kernel 3."""

    mednext_size = "B"


class nnUNetTrainerMedNeXt_M(nnUNetTrainerMedNeXt):
    """MedNeXt-M, kernel 3."""

    mednext_size = "M"


class nnUNetTrainerMedNeXt_S_k5(nnUNetTrainerMedNeXt_S):
    """MedNeXt-S, kernel 5 (initialise from a k3 run with ``neurino upkern`` + ``-pretrained_weights``)."""

    mednext_kernel = 5


class nnUNetTrainerMedNeXt_B_k5(nnUNetTrainerMedNeXt_B):
    """MedNeXt-B, kernel 5."""

    mednext_kernel = 5


class nnUNetTrainerMedNeXt_M_k5(nnUNetTrainerMedNeXt_M):
    """MedNeXt-M, kernel 5."""

    mednext_kernel = 5


class nnUNetTrainerMedNeXt_L_k5(nnUNetTrainerMedNeXt):
    """MedNeXt-L, kernel 5."""

    mednext_kernel = 5


class nnUNetTrainerMedNeXt_noGRN(nnUNetTrainerMedNeXt):
    """MedNeXt-L, kernel 3, without GRN."""

    mednext_grn = False


class nnUNetTrainerMedNeXtTASL(nnUNetTrainerMedNeXt):
    """MedNeXt-L k3 GRN + official TASL (table 9's "MedNeXt + TASL")."""

    topology_loss = "official"


class nnUNetTrainerMedNeXtTASL_dTASL(nnUNetTrainerMedNeXtTASL):
    """MedNeXt-L k3 GRN + differentiable TASL (GT graph from the data pipeline) instead of the official."""

    topology_loss = "differentiable"
