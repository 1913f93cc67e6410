"""Re-exports every trainer of the plugin for nnU-Net's trainer lookup (``nnUNet_extTrainer``).

nnU-Net imports the modules of this folder as top-level modules; re-exporting (instead of pointing the
variable at the package folder) keeps one class object per trainer. Nothing else belongs here.
"""

from nnunetv2_neurino.trainers import *
