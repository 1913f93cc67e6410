"""`neurino upkern K3_CHECKPOINT -o K5_INIT.pth`: MedNeXt kernel 3 → kernel 5 initialisation (UpKern).

The output holds ``{"network_weights": state dict of the kernel-5 MedNeXt, "upkern": {...}}``, which is what
``nnUNetv2_train DATASET CONFIG FOLD -tr nnUNetTrainerMedNeXt…k5 -pretrained_weights K5_INIT.pth`` reads
(nnU-Net copies every key except ``.seg_layers.`` and requires equal shapes — hence the conversion).
"""

from __future__ import annotations

import argparse

import torch

from nnunetv2_neurino.io_utils import atomic_file
from nnunetv2_neurino.networks.upkern import load_mednext_weights, upkern_state_dict

NAME = "upkern"
HELP = "MedNeXt kernel-3 checkpoint -> kernel-5 initialisation for nnUNetv2_train -pretrained_weights"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="kernel-3 MedNeXt: nnU-Net checkpoint_final.pth or a state dict")
    parser.add_argument("-o", "--output", required=True, help="output .pth for -pretrained_weights")
    parser.add_argument("--kernel-size", type=int, default=5, help="target depthwise kernel (default 5)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing output file")


def run(args: argparse.Namespace) -> int:
    from nnunetv2_neurino.io_utils import check_output_paths

    check_output_paths([args.output], [args.checkpoint])
    state, trainer = load_mednext_weights(args.checkpoint)
    new, cfg = upkern_state_dict(state, args.kernel_size, source=str(args.checkpoint))
    n_resized = sum(1 for k in new if new[k].shape != state[k].shape)
    meta = {"source": str(args.checkpoint), "source_trainer_name": trainer, "kernel_size": args.kernel_size,
            "source_kernel_size": cfg["kernel_size"], "size": cfg["size"], "grn": cfg["grn"],
            "norm": cfg["norm"], "in_channels": cfg["in_channels"], "num_classes": cfg["num_classes"]}
    with atomic_file(args.output, force=args.force) as tmp:
        torch.save({"network_weights": new, "upkern": meta}, tmp)
    print(f"MedNeXt-{cfg['size']} kernel {cfg['kernel_size']} -> {args.kernel_size}: {n_resized} depthwise "
          f"kernels resized trilinearly, {len(new) - n_resized} tensors copied; wrote {args.output}\n"
          f"use: nnUNetv2_train DATASET CONFIG FOLD -tr <kernel-{args.kernel_size} MedNeXt trainer> "
          f"-pretrained_weights {args.output}")
    return 0
