"""nnU-Net v2 trainers of the plugin (found by nnU-Net through ``nnunetv2_neurino/nnunet_ext/``).

Every setting is a class attribute: a variant is a subclass that changes a few of them.

- :class:`~.base.OwnNetworkTrainer`: base of the NeurINO and MedNeXt trainers (settings, patch fit,
  network-strides deep supervision, AdamW/poly; hooks in life-cycle order);
- orthogonal mixins: :class:`~.topology_loss.TopologyLossMixin` (``topology_loss`` and its settings, the
  training step), :class:`~.weights.DINOv3WeightsMixin`, :class:`~.validation_summary.TopologySummaryMixin`,
  :class:`~.configs.TrainerConfigMixin`, :class:`~.demo.DemoRunMixin`, :class:`~.settings.NoMirroringMixin`.
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
from nnunetv2_neurino.trainers.nnUNetTrainerMedNeXt import (
    nnUNetTrainerMedNeXt,
    nnUNetTrainerMedNeXt_B,
    nnUNetTrainerMedNeXt_B_k5,
    nnUNetTrainerMedNeXt_L_k5,
    nnUNetTrainerMedNeXt_M,
    nnUNetTrainerMedNeXt_M_k5,
    nnUNetTrainerMedNeXt_noGRN,
    nnUNetTrainerMedNeXt_S,
    nnUNetTrainerMedNeXt_S_k5,
    nnUNetTrainerMedNeXtTASL,
    nnUNetTrainerMedNeXtTASL_dTASL,
)
from nnunetv2_neurino.trainers.nnUNetTrainerNeurINO import (
    nnUNetTrainerNeurINO,
    nnUNetTrainerNeurINO_center,
    nnUNetTrainerNeurINO_noTASL,
    nnUNetTrainerNeurINO_S,
    nnUNetTrainerNeurINO_scratch,
    nnUNetTrainerNeurINO_stride4,
)
from nnunetv2_neurino.trainers.nnUNetTrainerSkeletonRecall import (
    nnUNetTrainerNeurINO_SkeletonRecall,
    nnUNetTrainerSkeletonRecall,
)
from nnunetv2_neurino.trainers.nnUNetTrainerTASL import (
    nnUNetTrainerNeurINO_center_dTASL,
    nnUNetTrainerNeurINO_dTASL,
    nnUNetTrainerNeurINO_S_dTASL,
    nnUNetTrainerNeurINO_scratch_dTASL,
    nnUNetTrainerNeurINO_stride4_dTASL,
    nnUNetTrainerTASL,
    nnUNetTrainerTASL_dTASL,
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
    "nnUNetTrainerMedNeXt",
    "nnUNetTrainerMedNeXt_S",
    "nnUNetTrainerMedNeXt_B",
    "nnUNetTrainerMedNeXt_M",
    "nnUNetTrainerMedNeXt_S_k5",
    "nnUNetTrainerMedNeXt_B_k5",
    "nnUNetTrainerMedNeXt_M_k5",
    "nnUNetTrainerMedNeXt_L_k5",
    "nnUNetTrainerMedNeXt_noGRN",
    "nnUNetTrainerMedNeXtTASL",
    "nnUNetTrainerMedNeXtTASL_dTASL",
    "nnUNetTrainerTASL",
    "nnUNetTrainerTASL_dTASL",
    "nnUNetTrainerNeurINO_dTASL",
    "nnUNetTrainerNeurINO_S_dTASL",
    "nnUNetTrainerNeurINO_center_dTASL",
    "nnUNetTrainerNeurINO_stride4_dTASL",
    "nnUNetTrainerNeurINO_scratch_dTASL",
    "nnUNetTrainerSkeletonRecall",
    "nnUNetTrainerNeurINO_SkeletonRecall",
]
