"""Short CPU trainers for ``neurino demo``: NeurINO (from scratch or pretrained) and stock nnU-Net.

The stock ``nnUNetTrainer`` trains 1000 epochs × 250 iterations and ``nnUNetv2_train`` cannot shorten that
from the command line, so the demo trains subclasses with few epochs and iterations (class attributes,
applied by :class:`~.settings.ClassSettingsMixin`), no mirroring (training or test time) and a time box:
with ``NEURINO_TRAIN_SECONDS`` set, training stops after the first epoch that ends past that many seconds,
saving ``checkpoint_final.pth`` and running nnU-Net's final validation as usual (the log says so). The
patch size comes from the plan (the demo writes a small one into it).

``…_demo`` is the full demo (``neurino demo``), ``…_demoQuick`` the ``--quick`` one.
"""

from __future__ import annotations

import os
import time

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunetv2_neurino.errors import NeurinoError
from nnunetv2_neurino.trainers.nnUNetTrainerNeurINO import nnUNetTrainerNeurINO, nnUNetTrainerNeurINO_scratch
from nnunetv2_neurino.trainers.settings import ClassSettingsMixin, NoMirroringMixin
from nnunetv2_neurino.trainers.validation_summary import TopologySummaryMixin

TIME_BOX_ENV = "NEURINO_TRAIN_SECONDS"


class _TimeIsUp(Exception):
    pass


class TimeBoxMixin:
    """Stop training at an epoch boundary once ``$NEURINO_TRAIN_SECONDS`` (wall clock) have passed.

    Checked at the start of each epoch; the run then ends exactly as a finished one (``on_train_end``:
    final checkpoint, data loaders shut down), so nnU-Net's final validation and prediction work unchanged.
    Without the variable, nothing changes.
    """

    def _time_box_seconds(self) -> float | None:
        value = os.environ.get(TIME_BOX_ENV, "").strip()
        if not value:
            return None
        try:
            seconds = float(value)
        except ValueError:
            raise NeurinoError(f"{TIME_BOX_ENV} must be a number of seconds, got {value!r}") from None
        if seconds <= 0:
            raise NeurinoError(f"{TIME_BOX_ENV} must be > 0, got {value!r}")
        return seconds

    def on_train_start(self):
        self._time_box = self._time_box_seconds()
        self._time_box_start = time.monotonic()
        super().on_train_start()

    def on_epoch_start(self):
        box = getattr(self, "_time_box", None)
        if box is not None and self.current_epoch > 0 and time.monotonic() - self._time_box_start > box:
            raise _TimeIsUp
        super().on_epoch_start()

    def run_training(self):
        try:
            super().run_training()
        except _TimeIsUp:
            self.print_to_log_file(f"Time box of {self._time_box:.0f} s ({TIME_BOX_ENV}) reached: stopping "
                                   f"after {self.current_epoch} of {self.num_epochs} epochs",
                                   also_print_to_console=True)
            self.on_train_end()


class _DemoSettings:
    num_epochs = 30  # short epochs: the time box (checked between epochs) then cuts finely
    num_iterations_per_epoch = 10
    num_val_iterations_per_epoch = 1
    save_every = 1000  # only the final checkpoint (saves time)


class _QuickSettings:
    num_epochs = 2
    num_iterations_per_epoch = 4
    num_val_iterations_per_epoch = 1
    save_every = 1000


class nnUNetTrainerNeurINO_demo(_DemoSettings, TimeBoxMixin, NoMirroringMixin, nnUNetTrainerNeurINO_scratch):
    """NeurINO-T from scratch (no DINOv3 file), Dice + CE + TASL, ≤ 30 epochs × 10 iterations."""


class nnUNetTrainerNeurINO_demoQuick(_QuickSettings, nnUNetTrainerNeurINO_demo):
    """``neurino demo --quick``: 2 epochs × 4 iterations."""


class nnUNetTrainerNeurINO_demoPretrained(_DemoSettings, TimeBoxMixin, NoMirroringMixin,
                                          nnUNetTrainerNeurINO):
    """NeurINO-T initialised from the DINOv3 file (``NEURINO_DINOV3_WEIGHTS``), demo length."""


class nnUNetTrainerNeurINO_demoPretrainedQuick(_QuickSettings, nnUNetTrainerNeurINO_demoPretrained):
    """Pretrained NeurINO-T, ``--quick`` length."""


class nnUNetTrainer_demo(_DemoSettings, TimeBoxMixin, TopologySummaryMixin, NoMirroringMixin,
                         ClassSettingsMixin, nnUNetTrainer):
    """Stock nnU-Net (its planned U-Net, SGD, Dice + CE), demo length; also writes the topology summary."""


class nnUNetTrainer_demoQuick(_QuickSettings, nnUNetTrainer_demo):
    """Stock nnU-Net, ``--quick`` length."""
