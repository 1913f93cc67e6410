"""Class-attribute settings for nnU-Net trainers (``nnUNetv2_train`` cannot pass options to a trainer).

nnU-Net's ``nnUNetTrainer.__init__`` sets its hyperparameters as *instance* attributes, which would shadow
class attributes of a subclass. :class:`ClassSettingsMixin` copies the class attributes listed in
``NNUNET_SETTINGS`` onto the instance after nnU-Net's ``__init__``, so a variant is written as::

    class nnUNetTrainerNeurINO_short(nnUNetTrainerNeurINO):
        num_epochs = 2
        num_iterations_per_epoch = 2
"""

from __future__ import annotations

import torch
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

from nnunetv2_neurino.errors import NeurinoError

#: nnU-Net's default ``device`` argument (the ``__init__`` signatures of mixins must stay nnU-Net's)
DEFAULT_DEVICE = torch.device("cuda")

#: nnU-Net instance hyperparameters that a subclass may set as class attributes.
NNUNET_SETTINGS = (
    "initial_lr", "weight_decay", "num_epochs", "num_iterations_per_epoch", "num_val_iterations_per_epoch",
    "oversample_foreground_percent", "probabilistic_oversampling", "save_every", "enable_deep_supervision",
)


class ClassSettingsMixin:
    """Apply class attributes named in ``NNUNET_SETTINGS`` over nnU-Net's instance defaults.

    Also refuses configurations that are not 3D (``only_3d = True``) before nnU-Net creates any folder.
    """

    only_3d: bool = True

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = DEFAULT_DEVICE):
        if self.only_3d:
            patch = PlansManager(plans).get_configuration(configuration).patch_size
            if len(patch) != 3:
                raise NeurinoError(
                    f"{type(self).__name__} is a 3D trainer but configuration '{configuration}' has a "
                    f"{len(patch)}D patch {list(patch)}; train a 3D configuration such as 3d_fullres "
                    f"(nnUNetv2_train DATASET 3d_fullres FOLD -tr {type(self).__name__})")
        super().__init__(plans, configuration, fold, dataset_json, device)
        for name in NNUNET_SETTINGS:
            value = getattr(type(self), name, None)
            if value is not None:
                setattr(self, name, value)


class NoMirroringMixin:
    """No mirroring augmentation in training and no test-time mirroring (quick runs)."""

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        configure = super().configure_rotation_dummyDA_mirroring_and_inital_patch_size
        rotation, dummy_2d, initial_patch, _ = configure()
        self.inference_allowed_mirroring_axes = None
        return rotation, dummy_2d, initial_patch, None
