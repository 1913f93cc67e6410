"""Base of the trainers that build a network of this package (NeurINO, MedNeXt), hooks in life-cycle order.

:class:`OwnNetworkTrainer` holds what every such trainer needs: nnU-Net settings as class attributes
(:class:`~.settings.ClassSettingsMixin`, also used alone by the stock demo trainer), the patch fitted to the
network's total stride and written into the saved plans (:mod:`.patch`), deep supervision from the network's
own output strides with the released weights 1, ½, ¼, … (:mod:`.deep_supervision`), Dice + CE in fp32, and
the released recipe: AdamW (lr 1e-3, weight decay 3e-5, eps 1e-4) with a poly schedule (0.9), 110 epochs
(suppl. §9). Gradient clipping (``grad_clip``) belongs to the training step of
:class:`~.topology_loss.TopologyLossMixin`.

nnU-Net calls the hooks below in this order; the methods of the class follow it:

1. ``__init__``: :meth:`check_network_settings` (before nnU-Net's ``__init__``: nothing is written for a bad
   setting), then the 3D check and the class-attribute settings (:class:`~.settings.ClassSettingsMixin`);
2. ``initialize()``: :meth:`configure_plans` (patch / batch size of a trainer config) → the patch is fitted
   to :meth:`network_total_stride` → nnU-Net's ``initialize`` calls :meth:`build_network_architecture`,
   :meth:`configure_optimizers`, :meth:`_get_deep_supervision_scales` and :meth:`_build_loss` →
   :meth:`on_network_built` (pretrained weights);
3. ``on_train_start`` / validation: :meth:`set_deep_supervision_enabled`.

A subclass implements :meth:`network_strides` and :meth:`build_network_architecture` (classmethods: they
also run at inference and never load weights).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from nnunetv2.training.loss.compound_losses import DC_and_BCE_loss, DC_and_CE_loss
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss
from nnunetv2.training.lr_scheduler.polylr import PolyLRScheduler
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from torch import nn

from nnunetv2_neurino.errors import NeurinoError
from nnunetv2_neurino.trainers.deep_supervision import (
    Float32Loss,
    halving_weights,
    scales_from_output_strides,
    unwrap_network,
)
from nnunetv2_neurino.trainers.patch import fit_patch_to_network, write_patch_size
from nnunetv2_neurino.trainers.settings import DEFAULT_DEVICE, ClassSettingsMixin


class OwnNetworkTrainer(ClassSettingsMixin, nnUNetTrainer):
    """nnU-Net trainer for a network of this package: settings, patch fit, deep supervision, AdamW/poly.

    Class attributes
    ----------------
    initial_lr, weight_decay, num_epochs : nnU-Net's, set on the instance (released recipe defaults).
    adam_eps, poly_exponent : AdamW epsilon and exponent of the poly learning-rate schedule.
    ds_weights : deep-supervision weights, full resolution first; None = 1, ½, ¼, … normalised.
    """

    initial_lr: float = 1e-3
    weight_decay: float = 3e-5
    num_epochs: int = 110
    adam_eps: float = 1e-4
    poly_exponent: float = 0.9
    ds_weights: Sequence[float] | None = None

    # -- 1. creation -----------------------------------------------------------------------------------
    @classmethod
    def check_network_settings(cls) -> None:
        """Refuse invalid network class attributes (before anything is built or written); default: none."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = DEFAULT_DEVICE):
        type(self).check_network_settings()
        super().__init__(plans, configuration, fold, dataset_json, device)

    # -- 2. initialize(): plans, patch, network, optimiser, loss, weights -----------------------------
    def configure_plans(self) -> None:
        """Change the plans' configuration (patch, batch size) before the patch is fitted; default none."""

    def initialize(self):
        if not self.was_initialized:
            self.configure_plans()
            planned = [int(p) for p in self.configuration_manager.patch_size]
            fitted = fit_patch_to_network(
                planned, lambda p: self.network_total_stride(self.configuration_manager, p))
            if fitted != planned:
                self.print_to_log_file(f"Patch size {planned} is not divisible by the network's total "
                                       f"stride: using {fitted} (written into the saved plans)")
                write_patch_size(self, fitted)
        super().initialize()
        self.on_network_built()

    def on_network_built(self) -> None:
        """Runs at the end of ``initialize()`` (network, optimiser and loss exist); default nothing."""

    @classmethod
    def plan_strides(cls, configuration_manager, patch_size: Sequence[int],
                     first_stride: int) -> list[tuple[int, int, int]]:
        """Per-axis (z, y, x) strides of the network's 4 strided stages for this plan and patch.

        The plan's ``pool_op_kernel_sizes`` are mapped onto the stages (anisotropic plans keep their
        per-axis downsampling); ``first_stride`` is the first stage's nominal stride (NeurINO's stem).
        """
        from nnunetv2_neurino.networks.neurino import neurino_strides_from_plan

        if len(patch_size) != 3:
            raise NeurinoError(f"{cls.__name__} is 3D only; the configuration's patch is {list(patch_size)} "
                               f"(use a 3d_fullres configuration)")
        return neurino_strides_from_plan(configuration_manager.pool_op_kernel_sizes, list(patch_size),
                                         first_stride)

    @classmethod
    def network_strides(cls, configuration_manager, patch_size: Sequence[int]) -> list[tuple[int, int, int]]:
        """Per-stage (z, y, x) strides of the network built for this plan and patch (subclasses)."""
        raise NotImplementedError

    @classmethod
    def network_total_stride(cls, configuration_manager, patch_size: Sequence[int]) -> list[int]:
        """Total downsampling per axis (z, y, x): the product of :meth:`network_strides`."""
        strides = np.asarray(cls.network_strides(configuration_manager, patch_size), dtype=int)
        return [int(s) for s in strides.prod(axis=0)]

    @classmethod
    def build_network_architecture(cls, plans_manager, configuration_manager, num_input_channels: int,
                                   num_output_channels: int,
                                   enable_deep_supervision: bool = True) -> nn.Module:
        """The network for this plan (subclasses); never loads weights (it also runs at inference)."""
        raise NotImplementedError

    def _plain_network(self) -> nn.Module:
        return unwrap_network(self.network)

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(self.network.parameters(), lr=self.initial_lr,
                                      weight_decay=self.weight_decay, eps=self.adam_eps)
        scheduler = PolyLRScheduler(optimizer, self.initial_lr, self.num_epochs, exponent=self.poly_exponent)
        return optimizer, scheduler

    def _get_deep_supervision_scales(self):
        if not self.enable_deep_supervision:
            return None
        return scales_from_output_strides(self._plain_network().output_strides)

    def _deep_supervision_weights(self, n_outputs: int) -> np.ndarray:
        if self.ds_weights is None:
            return halving_weights(n_outputs)
        weights = np.asarray(self.ds_weights, dtype=np.float64)[:n_outputs]
        if len(weights) != n_outputs:
            raise ValueError(f"{type(self).__name__}.ds_weights has {len(self.ds_weights)} entries for "
                             f"{n_outputs} network outputs")
        return weights / weights.sum()

    def _build_segmentation_loss(self) -> nn.Module:
        """Dice + CE (Dice + BCE for regions) per output, as nnU-Net builds it."""
        if self.label_manager.has_regions:
            return DC_and_BCE_loss({}, {"batch_dice": self.configuration_manager.batch_dice, "do_bg": True,
                                        "smooth": 1e-5, "ddp": self.is_ddp},
                                   use_ignore_label=self.label_manager.ignore_label is not None,
                                   dice_class=MemoryEfficientSoftDiceLoss)
        return DC_and_CE_loss({"batch_dice": self.configuration_manager.batch_dice, "smooth": 1e-5,
                               "do_bg": False, "ddp": self.is_ddp}, {}, weight_ce=1, weight_dice=1,
                              ignore_label=self.label_manager.ignore_label,
                              dice_class=MemoryEfficientSoftDiceLoss)

    def _build_loss(self):
        loss = self._build_segmentation_loss()
        if self.enable_deep_supervision:
            n_outputs = len(self._get_deep_supervision_scales())
            loss = DeepSupervisionWrapper(loss, self._deep_supervision_weights(n_outputs))
        return Float32Loss(loss)

    # -- 3. on_train_start / validation ----------------------------------------------------------------
    def set_deep_supervision_enabled(self, enabled: bool):
        network = self._plain_network()
        decoder = getattr(network, "decoder", network)
        decoder.deep_supervision = enabled
