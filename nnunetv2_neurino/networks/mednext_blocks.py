"""MedNeXt building blocks (paper, suppl. §9; Roy et al. 2023), shared by MedNeXt and the NeurINO decoder.

The assembled networks live apart from their blocks (the layout of nnU-Net's dynamic-network-architectures):
:mod:`~nnunetv2_neurino.networks.mednext` builds MedNeXt from these blocks with GroupNorm (one group per
channel), :mod:`~nnunetv2_neurino.networks.neurino` builds NeurINO's decoder from them with BatchNorm3d
(momentum 0.01). All tensors are ``(N, C, Z, Y, X)``; strides are per axis in array order ``(z, y, x)`` so
anisotropic plans work: an axis with stride 1 is neither down- nor upsampled.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nnunetv2_neurino.errors import NeurinoError

Stride3 = tuple[int, int, int]

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
