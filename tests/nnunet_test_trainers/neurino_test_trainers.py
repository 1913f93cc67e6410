"""Short test trainers, found by nnU-Net through ``nnUNet_extTrainer`` (this folder) in the e2e fixture.

A separate folder: nnU-Net imports every module of an ``nnUNet_extTrainer`` folder, so the test modules
themselves must not be in it.
"""

import os

from nnunetv2_neurino.trainers.nnUNetTrainerMedNeXt import nnUNetTrainerMedNeXt_S
from nnunetv2_neurino.trainers.nnUNetTrainerNeurINO import nnUNetTrainerNeurINO_scratch
from nnunetv2_neurino.trainers.settings import NoMirroringMixin


class nnUNetTrainerNeurINO_e2eTest(NoMirroringMixin, nnUNetTrainerNeurINO_scratch):
    """NeurINO-T from scratch, a few CPU iterations; ``NEURINO_E2E_EPOCHS`` sets the epochs (for ``--c``)."""

    num_epochs = int(os.environ.get("NEURINO_E2E_EPOCHS", "2"))
    num_iterations_per_epoch = int(os.environ.get("NEURINO_E2E_ITERATIONS", "2"))
    num_val_iterations_per_epoch = 1


class _GPUCheckLength:
    """Length of the short trainings in ``benchmarks/gpu_check.sh`` (``NEURINO_GPU_CHECK_EPOCHS``)."""

    num_epochs = int(os.environ.get("NEURINO_GPU_CHECK_EPOCHS", "5"))
    num_iterations_per_epoch = int(os.environ.get("NEURINO_GPU_CHECK_ITERATIONS", "25"))
    num_val_iterations_per_epoch = 5


class nnUNetTrainerNeurINO_gpuCheck(_GPUCheckLength, nnUNetTrainerNeurINO_scratch):
    """NeurINO-T from scratch + TASL (the paper's recipe), a few epochs, nnU-Net's mirroring."""


class nnUNetTrainerMedNeXt_S_gpuCheck(_GPUCheckLength, nnUNetTrainerMedNeXt_S):
    """MedNeXt-S (k3) + Dice/CE, a few epochs."""
