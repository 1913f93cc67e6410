"""MedNeXt building blocks and the MedNeXt network (paper, suppl. §9).

One implementation of the blocks serves both MedNeXt itself (GroupNorm with one group per channel) and the
NeurINO decoder (BatchNorm3d, momentum 0.01). All tensors are ``(N, C, Z, Y, X)``; strides are per axis in
array order ``(z, y, x)`` so anisotropic plans work: an axis with stride 1 is neither down- nor upsampled.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nnunetv2_neurino.errors import NeurinoError

Stride3 = tuple[int, int, int]

# Per-level lists: encoder 0-3, bottleneck, decoder 3-0 (9 entries).
MEDNEXT_SIZES: dict[str, dict[str, list[int]]] = {
    "S": {"expansion": [2] * 9, "blocks": [2] * 9},
    "B": {"expansion": [2, 3, 4, 4, 4, 4, 4, 3, 2], "blocks": [2] * 9},
    "M": {"expansion": [2, 3, 4, 4, 4, 4, 4, 3, 2], "blocks": [3, 4, 4, 4, 4, 4, 4, 4, 3]},
    "L": {"expansion": [3, 4, 8, 8, 8, 8, 8, 4, 3], "blocks": [3, 4, 8, 8, 8, 8, 8, 4, 3]},
}
MEDNEXT_KERNELS = (3, 5)
NORMS = ("group", "batch")


def as_stride3(stride: int | Sequence[int]) -> Stride3:
    """Return ``stride`` as a per-axis ``(z, y, x)`` tuple of ints (1 or 2 each)."""
    s = (int(stride),) * 3 if isinstance(stride, int) else tuple(int(v) for v in stride)
    if len(s) != 3 or any(v not in (1, 2) for v in s):
        raise NeurinoError(f"stride {stride!r}: expected 3 per-axis factors, each 1 or 2")
    return s  # type: ignore[return-value]


def make_norm(kind: str, channels: int) -> nn.Module:
    """Norm: ``"group"`` = GroupNorm, one group per channel; ``"batch"`` = BatchNorm3d(momentum 0.01)."""
    if kind == "group":
        return nn.GroupNorm(num_groups=channels, num_channels=channels)
    if kind == "batch":
        return nn.BatchNorm3d(channels, momentum=0.01)
    raise NeurinoError(f"unknown norm {kind!r}; valid: {', '.join(NORMS)}")


class GRN(nn.Module):
    """Global response normalisation on ``(N, C, Z, Y, X)``; gamma and beta start at 0 (identity)."""

    def __init__(self, channels: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, channels, 1, 1, 1))
        self.beta = nn.Parameter(torch.zeros(1, channels, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = torch.linalg.vector_norm(x, ord=2, dim=(2, 3, 4), keepdim=True)
        n = g / (g.mean(dim=1, keepdim=True) + 1e-6)
        return self.gamma * (x * n) + self.beta + x


def channels_last(x: torch.Tensor) -> torch.Tensor:
    """``x`` in ``torch.channels_last_3d`` memory format (a no-op when it already is).

    Depthwise 3D convolutions on the CPU (oneDNN) are fast only in channels-last layout: on a contiguous
    ``(1, 48, 64, 64, 64)`` input the backward pass of a 3³ depthwise conv took 36 s, on channels-last 1.7 s
    (2 threads). Every depthwise conv therefore gets a channels-last input on the CPU; the ops after it keep
    the layout. On other devices ``x`` is returned unchanged (cuDNN picks its own layout; not measured here).
    """
    return x.contiguous(memory_format=torch.channels_last_3d) if x.device.type == "cpu" else x


def _pad_start(x: torch.Tensor, stride: Stride3) -> torch.Tensor:
    """Pad one voxel at the start of each axis whose stride is 2 (turns ``2n - 1`` into ``2n``)."""
    sz, sy, sx = (1 if s == 2 else 0 for s in stride)
    if sz or sy or sx:
        x = F.pad(x, (sx, 0, sy, 0, sz, 0))
    return x


class MedNeXtBlock(nn.Module):
    """Depthwise conv k³ → norm → 1×1 (C_in→r·C_in) → GELU → [GRN] → 1×1 (r·C_in→C_out) [+ input].

    The identity residual is added when ``in_channels == out_channels``. Subclasses change the depthwise conv
    (strided / transposed) and the residual path.

    Parameters
    ----------
    in_channels, out_channels : channel counts.
    expansion : r, the width factor of the inverted bottleneck.
    kernel_size : k of the depthwise conv (odd).
    grn : insert global response normalisation after the GELU.
    norm : ``"group"`` (MedNeXt) or ``"batch"`` (NeurINO decoder).
    """

    def __init__(self, in_channels: int, out_channels: int, expansion: int = 4, kernel_size: int = 3,
                 grn: bool = False, norm: str = "group"):
        super().__init__()
        self.conv1 = self._depthwise(in_channels, kernel_size)
        self.norm = make_norm(norm, in_channels)
        self.conv2 = nn.Conv3d(in_channels, expansion * in_channels, kernel_size=1)
        self.act = nn.GELU()
        self.grn = GRN(expansion * in_channels) if grn else None
        self.conv3 = nn.Conv3d(expansion * in_channels, out_channels, kernel_size=1)
        self.use_identity = in_channels == out_channels

    def _depthwise(self, channels: int, kernel_size: int) -> nn.Module:
        return nn.Conv3d(channels, channels, kernel_size, padding=kernel_size // 2, groups=channels)

    def _branch(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.conv2(self.norm(self.conv1(channels_last(x)))))
        if self.grn is not None:
            x = self.grn(x)
        return self.conv3(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self._branch(x)
        return y + x if self.use_identity else y


class MedNeXtDownBlock(MedNeXtBlock):
    """MedNeXt block with a strided depthwise conv and a strided 1×1 conv as residual (C_in→C_out).

    ``stride`` is per axis (z, y, x); an axis with stride 1 keeps its size.
    """

    def __init__(self, in_channels: int, out_channels: int, expansion: int = 4, kernel_size: int = 3,
                 grn: bool = False, norm: str = "group", stride: int | Sequence[int] = 2):
        self.stride = as_stride3(stride)
        super().__init__(in_channels, out_channels, expansion, kernel_size, grn, norm)
        self.use_identity = False
        self.res_conv = nn.Conv3d(in_channels, out_channels, kernel_size=1, stride=self.stride)

    def _depthwise(self, channels: int, kernel_size: int) -> nn.Module:
        return nn.Conv3d(channels, channels, kernel_size, stride=self.stride, padding=kernel_size // 2,
                         groups=channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._branch(x) + self.res_conv(x)


class MedNeXtUpBlock(MedNeXtBlock):
    """MedNeXt block with a transposed depthwise conv (stride 2) and a transposed 1×1 conv as residual.

    The transposed convs turn an axis of size n into 2n - 1; the whole block (both paths) runs at that size
    and its output is padded by one zero voxel at the start of each upsampled axis to give exactly 2n (as in
    the released MedNeXt/NeurINO code, which is what the conv+linear FLOPs of table 11 count). An axis
    with stride 1 keeps its size.
    """

    def __init__(self, in_channels: int, out_channels: int, expansion: int = 4, kernel_size: int = 3,
                 grn: bool = False, norm: str = "group", stride: int | Sequence[int] = 2):
        self.stride = as_stride3(stride)
        super().__init__(in_channels, out_channels, expansion, kernel_size, grn, norm)
        self.use_identity = False
        self.res_conv = nn.ConvTranspose3d(in_channels, out_channels, kernel_size=1, stride=self.stride)

    def _depthwise(self, channels: int, kernel_size: int) -> nn.Module:
        return nn.ConvTranspose3d(channels, channels, kernel_size, stride=self.stride,
                                  padding=kernel_size // 2, groups=channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _pad_start(self._branch(x) + self.res_conv(x), self.stride)


class OutHead(nn.Conv3d):
    """Segmentation head: a 1×1 conv from ``in_channels`` to ``num_classes`` logits."""

    def __init__(self, in_channels: int, num_classes: int):
        super().__init__(in_channels, num_classes, kernel_size=1)


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
    """MedNeXt (Roy et al. 2023) for 3D segmentation, built from the blocks above (paper, suppl. §9).

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
