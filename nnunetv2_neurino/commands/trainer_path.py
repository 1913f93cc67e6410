"""`neurino trainer-path`: the folder for nnU-Net's ``nnUNet_extTrainer`` variable."""

from __future__ import annotations

import argparse
from pathlib import Path

import nnunetv2_neurino.nnunet_ext as nnunet_ext

NAME = "trainer-path"
HELP = "print the folder to put in nnUNet_extTrainer (export nnUNet_extTrainer=$(neurino trainer-path))"


def trainer_folder() -> Path:
    """Absolute path of ``nnunetv2_neurino/nnunet_ext`` (the module re-exporting all trainers)."""
    return Path(nnunet_ext.__file__).resolve().parent


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--export", action="store_true",
                        help="print a shell line `export nnUNet_extTrainer=…` instead of the bare folder")


def run(args: argparse.Namespace) -> int:
    folder = trainer_folder()
    print(f"export nnUNet_extTrainer={folder}" if args.export else folder)
    return 0
