"""nnU-Net v2 trainers of the plugin (found by nnU-Net through ``nnunetv2_neurino/nnunet_ext/``).

Every setting is a class attribute: a variant is a subclass that changes a few of them.
"""

from nnunetv2_neurino.trainers.nnUNetTrainerNeurINO import (
    nnUNetTrainerNeurINO,
    nnUNetTrainerNeurINO_center,
    nnUNetTrainerNeurINO_noTASL,
    nnUNetTrainerNeurINO_S,
    nnUNetTrainerNeurINO_scratch,
    nnUNetTrainerNeurINO_stride4,
    nnUNetTrainerNeurINODemo,
)

__all__ = [
    "nnUNetTrainerNeurINO",
    "nnUNetTrainerNeurINO_S",
    "nnUNetTrainerNeurINO_center",
    "nnUNetTrainerNeurINO_stride4",
    "nnUNetTrainerNeurINO_scratch",
    "nnUNetTrainerNeurINO_noTASL",
    "nnUNetTrainerNeurINODemo",
]
