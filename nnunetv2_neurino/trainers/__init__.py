"""nnU-Net v2 trainers of the plugin (found by nnU-Net through ``nnunetv2_neurino/nnunet_ext/``).

Every setting is a class attribute: a variant is a subclass that changes a few of them.
"""

from nnunetv2_neurino.trainers.configs import nnUNetTrainerNeurINO_paper32, nnUNetTrainerNeurINO_paper64
from nnunetv2_neurino.trainers.demo import (
    nnUNetTrainer_demo,
    nnUNetTrainer_demoQuick,
    nnUNetTrainerNeurINO_demo,
    nnUNetTrainerNeurINO_demoPretrained,
    nnUNetTrainerNeurINO_demoPretrainedQuick,
    nnUNetTrainerNeurINO_demoQuick,
)
from nnunetv2_neurino.trainers.nnUNetTrainerNeurINO import (
    nnUNetTrainerNeurINO,
    nnUNetTrainerNeurINO_center,
    nnUNetTrainerNeurINO_noTASL,
    nnUNetTrainerNeurINO_S,
    nnUNetTrainerNeurINO_scratch,
    nnUNetTrainerNeurINO_stride4,
)

__all__ = [
    "nnUNetTrainerNeurINO",
    "nnUNetTrainerNeurINO_S",
    "nnUNetTrainerNeurINO_center",
    "nnUNetTrainerNeurINO_stride4",
    "nnUNetTrainerNeurINO_scratch",
    "nnUNetTrainerNeurINO_noTASL",
    "nnUNetTrainerNeurINO_paper32",
    "nnUNetTrainerNeurINO_paper64",
    "nnUNetTrainerNeurINO_demo",
    "nnUNetTrainerNeurINO_demoQuick",
    "nnUNetTrainerNeurINO_demoPretrained",
    "nnUNetTrainerNeurINO_demoPretrainedQuick",
    "nnUNetTrainer_demo",
    "nnUNetTrainer_demoQuick",
]
