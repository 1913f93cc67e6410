"""The MedNeXt network (Roy et al. 2023; paper, suppl. §9), assembled from :mod:`.mednext_blocks`.

All tensors are ``(N, C, Z, Y, X)``; strides are per axis in array order ``(z, y, x)`` so anisotropic plans
work: an axis with stride 1 is neither down- nor upsampled.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from nnunetv2_neurino.errors import NeurinoError
from nnunetv2_neurino.networks.mednext_blocks import (
    MedNeXtBlock,
    MedNeXtDownBlock,
    MedNeXtUpBlock,
    OutHead,
    Stride3,
    as_stride3,
)

# Per-level lists: encoder 0-3, bottleneck, decoder 3-0 (9 entries).
MEDNEXT_SIZES: dict[str, dict[str, list[int]]] = {
    "S": {"expansion": [2] * 9, "blocks": [2] * 9},
    "B": {"expansion": [2, 3, 4, 4, 4, 4, 4, 3, 2], "blocks": [2] * 9},
    "M": {"expansion": [2, 3, 4, 4, 4, 4, 4, 3, 2], "blocks": [3, 4, 4, 4, 4, 4, 4, 4, 3]},
    "L": {"expansion": [3, 4, 8, 8, 8, 8, 8, 4, 3], "blocks": [3, 4, 8, 8, 8, 8, 8, 4, 3]},
}
MEDNEXT_KERNELS = (3, 5)


def _stack(n: int, channels: int, expansion: int, kernel_size: int, grn: bool, norm: str) -> nn.Sequential:
    return nn.Sequential(*[MedNeXtBlock(channels, channels, expansion, kernel_size, grn, norm)
                           for _ in range(n)])


class MedNeXtEncoder(nn.Module):
    """1×1 stem to C channels, then 4 levels (C, 2C, 4C, 8C) of blocks, each followed by a down block."""

    def __init__(self, in_channels: int, channels: int, expansion: list[int], blocks: list[int],
                 kernel_size: int, grn: bool, norm: str, strides: list[Stride3]):
        super().__init__()
        self.stem = nn.Conv3d(in_channels, channels, kernel_size=1)
        widths = [channels * 2**i for i in range(5)]
        self.stages = nn.ModuleList(
            _stack(blocks[i], widths[i], expansion[i], kernel_size, grn, norm) for i in range(4))
        self.downs = nn.ModuleList(
            MedNeXtDownBlock(widths[i], widths[i + 1], expansion[i + 1], kernel_size, grn, norm, strides[i])
            for i in range(4))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Return the 4 skip features (before each down block) and the input of the bottleneck."""
        x = self.stem(x)
        skips = []
        for stage, down in zip(self.stages, self.downs):
            x = stage(x)
            skips.append(x)
            x = down(x)
        return skips + [x]


class MedNeXtDecoder(nn.Module):
    """Bottleneck at 16C, 4 levels (up block, + skip, blocks), heads at every level and the bottleneck.

    ``deep_supervision`` (settable) makes ``forward`` return 5 logits maps, full resolution first;
    otherwise it returns the full-resolution logits only.
    """

    def __init__(self, channels: int, num_classes: int, expansion: list[int], blocks: list[int],
                 kernel_size: int, grn: bool, norm: str, strides: list[Stride3], deep_supervision: bool):
        super().__init__()
        widths = [channels * 2**i for i in range(5)]
        self.deep_supervision = deep_supervision
        self.bottleneck = _stack(blocks[4], widths[4], expansion[4], kernel_size, grn, norm)
        # index i = decoder level i (list entry 8 - i)
        self.ups = nn.ModuleList(
            MedNeXtUpBlock(widths[i + 1], widths[i], expansion[8 - i], kernel_size, grn, norm, strides[i])
            for i in range(4))
        self.stages = nn.ModuleList(
            _stack(blocks[8 - i], widths[i], expansion[8 - i], kernel_size, grn, norm) for i in range(4))
        self.seg_layers = nn.ModuleList(OutHead(widths[i], num_classes) for i in range(5))

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
        x = self.bottleneck(feats[4])
        outs = [self.seg_layers[4](x)] if self.deep_supervision else []
        for i in range(3, -1, -1):
            x = self.stages[i](self.ups[i](x) + feats[i])
            if self.deep_supervision or i == 0:
                outs.append(self.seg_layers[i](x))
        return outs[::-1] if self.deep_supervision else outs[0]


class MedNeXt(nn.Module):
    """MedNeXt (Roy et al. 2023) for 3D segmentation, built from :mod:`.mednext_blocks` (paper, suppl. §9).

    Input ``(N, in_channels, Z, Y, X)`` with each axis divisible by the total stride; output logits
    ``(N, num_classes, Z, Y, X)`` or, with deep supervision, a list of 5 maps at ``output_strides``.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 2, channels: int = 32,
                 expansion: list[int] | None = None, blocks: list[int] | None = None, kernel_size: int = 3,
                 grn: bool = True, deep_supervision: bool = True, norm: str = "group",
                 strides: Sequence[int | Sequence[int]] | None = None):
        super().__init__()
        expansion = expansion or MEDNEXT_SIZES["L"]["expansion"]
        blocks = blocks or MEDNEXT_SIZES["L"]["blocks"]
        if len(expansion) != 9 or len(blocks) != 9:
            raise NeurinoError("MedNeXt expansion and blocks lists need 9 entries (encoder 0-3, bottleneck, "
                               "decoder 3-0)")
        strides = [(2, 2, 2)] * 4 if strides is None else [as_stride3(s) for s in strides]
        if len(strides) != 4:
            raise NeurinoError(f"MedNeXt needs 4 per-axis strides (one per down block), got {len(strides)}")
        self.kernel_size = kernel_size
        self.strides = strides
        args = (expansion, blocks, kernel_size, grn, norm, strides)
        self.encoder = MedNeXtEncoder(in_channels, channels, *args)
        self.decoder = MedNeXtDecoder(channels, num_classes, *args, deep_supervision)

    @property
    def output_strides(self) -> list[Stride3]:
        """Per-output per-axis cumulative stride, full resolution first (5 entries)."""
        out = [(1, 1, 1)]
        for s in self.strides:
            out.append(tuple(a * b for a, b in zip(out[-1], s)))
        return out

    @property
    def total_stride(self) -> Stride3:
        """Per-axis factor every input axis must be divisible by."""
        return self.output_strides[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        return self.decoder(self.encoder(x))


def build_mednext(size: str = "L", kernel_size: int = 3, grn: bool = True, in_channels: int = 1,
                  num_classes: int = 2, deep_supervision: bool = True,
                  strides: Sequence[int | Sequence[int]] | None = None, norm: str = "group") -> MedNeXt:
    """Build MedNeXt-``size`` (S, B, M or L) with depthwise kernel 3 or 5.

    ``strides`` is None (2 on every axis at every level) or 4 per-axis tuples, one per down block.
    """
    key = str(size).upper()
    if key not in MEDNEXT_SIZES:
        raise NeurinoError(f"unknown MedNeXt size {size!r}; valid: {', '.join(MEDNEXT_SIZES)}")
    if kernel_size not in MEDNEXT_KERNELS:
        raise NeurinoError(f"unsupported MedNeXt kernel size {kernel_size!r}; valid: "
                           f"{', '.join(map(str, MEDNEXT_KERNELS))}")
    cfg = MEDNEXT_SIZES[key]
    return MedNeXt(in_channels, num_classes, 32, list(cfg["expansion"]), list(cfg["blocks"]), kernel_size,
                   grn, deep_supervision, norm, strides)
