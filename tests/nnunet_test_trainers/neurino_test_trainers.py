"""Short test trainers, found by nnU-Net through ``nnUNet_extTrainer`` (this folder) in the e2e fixture.

A separate folder: nnU-Net imports every module of an ``nnUNet_extTrainer`` folder, so the test modules
themselves must not be in it.
"""

import os

from nnunetv2_neurino.trainers.nnUNetTrainerNeurINO import nnUNetTrainerNeurINO_scratch
from nnunetv2_neurino.trainers.settings import NoMirroringMixin


class nnUNetTrainerNeurINO_e2eTest(NoMirroringMixin, nnUNetTrainerNeurINO_scratch):
    """NeurINO-T from scratch, a few CPU iterations; ``NEURINO_E2E_EPOCHS`` sets the epochs (for ``--c``)."""

    num_epochs = int(os.environ.get("NEURINO_E2E_EPOCHS", "2"))
    num_iterations_per_epoch = int(os.environ.get("NEURINO_E2E_ITERATIONS", "2"))
    num_val_iterations_per_epoch = 1
