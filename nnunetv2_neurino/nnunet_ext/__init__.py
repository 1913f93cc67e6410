"""The folder ``nnUNet_extTrainer`` points at (``neurino trainer-path``); see ``neurino_trainers.py``."""
