"""Trainers whose settings come from the JSON files of the installed ``trainer_configs`` package.

``nnUNetv2_train`` passes no options to a trainer, so each config is reachable as a trainer subclass that
names it (``config_name = "paper32"`` → ``trainer_configs/paper32.json``). When the class is created the
config is read (:func:`~.config_schema.load_trainer_config`, strict: an unknown or mistyped key is an
error naming the key and the file) and its ``settings`` become class attributes (epochs, iterations,
AdamW/poly recipe). At run time :class:`TrainerConfigMixin` (for an :class:`~.base.OwnNetworkTrainer`)

- writes the config's ``patch_size`` and ``batch_size`` into the plans in the
  :meth:`~.base.OwnNetworkTrainer.configure_plans` hook, before the patch is fitted to the network and the
  network is built (so the saved ``plans.json`` and the predictor use them),
- checks that the plan's intensity normalisation is the config's (normalisation happens in nnU-Net's
  preprocessing, which a trainer cannot change: a mismatch is an error saying how to re-plan),
- sets rotation range, mirror axes and the enlarged initial patch (nnU-Net's ``get_patch_size``) from the
  config, and
- sets the probabilities and ranges of the transforms in nnU-Net's own training pipeline
  (``get_training_transforms``) from the config's ``augmentation`` section
  (:func:`~.config_augmentation.apply_augmentation_config`).

The keys are documented in ``trainer_configs/README.md``.
"""

from __future__ import annotations

from nnunetv2_neurino.errors import NeurinoError
from nnunetv2_neurino.trainers.config_augmentation import apply_augmentation_config
from nnunetv2_neurino.trainers.config_schema import TrainerConfig, load_trainer_config
from nnunetv2_neurino.trainers.nnUNetTrainerNeurINO import nnUNetTrainerNeurINO
from nnunetv2_neurino.trainers.patch import write_patch_size


class TrainerConfigMixin:
    """Take settings, patch, batch size, normalisation check and augmentation from a ``trainer_configs`` file.

    A subclass sets ``config_name``; the config is loaded when the class is created and its ``settings``
    become class attributes (applied to the instance by :class:`~.settings.ClassSettingsMixin`).
    """

    config_name: str | None = None
    trainer_config: TrainerConfig | None = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "config_name" in cls.__dict__ and cls.config_name:
            cls.trainer_config = load_trainer_config(cls.config_name)
            for key, value in cls.trainer_config.settings.items():
                setattr(cls, key, value)

    def configure_plans(self) -> None:
        super().configure_plans()
        cfg = self.trainer_config
        if cfg is not None:
            if len(cfg.patch_size) != len(self.configuration_manager.patch_size):
                raise NeurinoError(f"{cfg.source}: patch_size {list(cfg.patch_size)} does not match the "
                                   f"{len(self.configuration_manager.patch_size)}D configuration "
                                   f"'{self.configuration_name}'")
            schemes = list(self.configuration_manager.normalization_schemes)
            if cfg.normalization and any(s != cfg.normalization for s in schemes):
                raise NeurinoError(
                    f"{cfg.source}: the config needs {cfg.normalization} but the plan normalises with "
                    f"{schemes}. Normalisation happens in nnU-Net's preprocessing: name the channel(s) in "
                    f"dataset.json's channel_names so nnU-Net picks it (e.g. \"zscore\" for "
                    f"ZScoreNormalization; \"CT\" selects CTNormalization) and run "
                    f"nnUNetv2_plan_and_preprocess again")
            write_patch_size(self, cfg.patch_size)
            if cfg.batch_size is not None:
                plan_config = self.plans_manager.plans["configurations"][self.configuration_name]
                plan_config["batch_size"] = cfg.batch_size
                self.configuration_manager.configuration["batch_size"] = cfg.batch_size
            self.print_to_log_file(f"Trainer config {cfg.source}: patch {list(cfg.patch_size)}, batch "
                                   f"{cfg.batch_size}, settings {cfg.settings}")

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        rotation, dummy_2d, initial_patch, mirror_axes = \
            super().configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        cfg = self.trainer_config
        if cfg is None:
            return rotation, dummy_2d, initial_patch, mirror_axes
        from nnunetv2.training.data_augmentation.compute_initial_patch_size import get_patch_size

        patch = self.configuration_manager.patch_size
        rotation = cfg.rotation_radians
        mirror_axes = cfg.mirror_axes
        initial_patch = get_patch_size(patch[-len(patch):], rotation, rotation, rotation,
                                       tuple(cfg.augmentation["scaling"]["range"]))
        if dummy_2d:
            initial_patch[0] = patch[0]
        self.inference_allowed_mirroring_axes = mirror_axes
        return rotation, dummy_2d, initial_patch, mirror_axes

    @classmethod
    def get_training_transforms(cls, *args, **kwargs):
        pipeline = super().get_training_transforms(*args, **kwargs)
        if cls.trainer_config is None:
            return pipeline
        return apply_augmentation_config(pipeline, cls.trainer_config)


class nnUNetTrainerNeurINO_paper32(TrainerConfigMixin, nnUNetTrainerNeurINO):
    """NeurINO-T with the paper's setup at 32³ patches (``trainer_configs/paper32.json``)."""

    config_name = "paper32"


class nnUNetTrainerNeurINO_paper64(TrainerConfigMixin, nnUNetTrainerNeurINO):
    """NeurINO-T with the paper's setup at 64³ patches (``trainer_configs/paper64.json``)."""

    config_name = "paper64"
