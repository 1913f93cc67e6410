"""DINOv3 ConvNeXt inflated to 3D: the NeurINO encoder (paper, suppl. §9).

Module names follow Meta's DINOv3 layout (``downsample_layers.i``, ``stages.i.j.dwconv/norm/pwconv1/pwconv2/
gamma``) so a 2D checkpoint maps key by key (see ``inflation.py``). Tensors are ``(N, C, Z, Y, X)``; per-axis
strides are in array order ``(z, y, x)``. Activations are kept in ``torch.channels_last_3d`` memory format, so
the channels-last LayerNorm / Linear part of each block works on free views instead of permuted copies.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nnunetv2_neurino.errors import NeurinoError
from nnunetv2_neurino.networks.mednext_blocks import Stride3, channels_last

CONVNEXT_VARIANTS: dict[str, dict[str, tuple[int, ...]]] = {
    "tiny": {"depths": (3, 3, 9, 3), "dims": (96, 192, 384, 768)},
    "small": {"depths": (3, 3, 27, 3), "dims": (96, 192, 384, 768)},
}
LN_EPS = 1e-6
LAYER_SCALE_INIT = 1e-6
DWCONV_KERNEL = (3, 7, 7)


def variant_config(variant: str) -> dict[str, tuple[int, ...]]:
    """Depths and dims of ``variant`` ("tiny" or "small"); NeurinoError listing the valid names otherwise."""
    key = str(variant).lower()
    if key not in CONVNEXT_VARIANTS:
        raise NeurinoError(f"unknown DINOv3 ConvNeXt variant {variant!r}; "
                           f"valid: {', '.join(CONVNEXT_VARIANTS)}")
    return CONVNEXT_VARIANTS[key]


def stem_geometry(stride: int) -> tuple[int, int]:
    """Kernel and padding of the stem along one axis for ``stride`` 1, 2 or 4.

    Stride 2 (the paper's stem): kernel 4, padding 1. Stride 4 (the 2D stem): kernel 4, padding 0.
    Stride 1 (an unstrided anisotropic axis): kernel 1, padding 0 (a 4-wide kernel would shrink the axis).
    """
    if stride not in (1, 2, 4):
        raise NeurinoError(f"stem stride {stride}: valid per-axis values are 1, 2, 4")
    return (4, (4 - stride) // 2) if stride > 1 else (1, 0)


class LayerNormChannelsFirst(nn.Module):
    """LayerNorm over the channel axis of ``(N, C, Z, Y, X)`` (DINOv3's ``channels_first`` LayerNorm)."""

    def __init__(self, channels: int, eps: float = LN_EPS):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.layer_norm(x.permute(0, 2, 3, 4, 1), (x.shape[1],), self.weight, self.bias, self.eps)
        return y.permute(0, 4, 1, 2, 3)


class ConvNeXtBlock3D(nn.Module):
    """Depthwise 3×7×7 conv → LayerNorm → Linear(C, 4C) → GELU → Linear(4C, C) → gamma → + input."""

    def __init__(self, dim: int):
        super().__init__()
        pad = tuple(k // 2 for k in DWCONV_KERNEL)
        self.dwconv = nn.Conv3d(dim, dim, DWCONV_KERNEL, padding=pad, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=LN_EPS)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), LAYER_SCALE_INIT))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(channels_last(x)).permute(0, 2, 3, 4, 1)  # a view: the conv output is channels-last
        y = self.pwconv2(self.act(self.pwconv1(self.norm(y)))) * self.gamma
        return x + y.permute(0, 4, 1, 2, 3)


class ConvNeXt3DEncoder(nn.Module):
    """Inflated DINOv3 ConvNeXt encoder; ``forward`` returns the 4 stage outputs (fine to coarse).

    Parameters
    ----------
    variant : "tiny" (depths 3/3/9/3) or "small" (3/3/27/3); dims 96/192/384/768.
    in_channels : input channels of the volume.
    strides : 4 per-axis strides ``(z, y, x)`` for (stem, down1, down2, down3). Default: the stem stride on
        every axis, then 2. Stem entries are 1, 2 or 4; downsampling entries 1 or 2. A stride-1 axis gets
        kernel 1 there (the 2D kernel is inflated to depth 1 / collapsed on that axis).
    stem_stride : 2 (the paper's stem, k4 s2 p1) or 4 (k4 s4 p0), used when ``strides`` is None.
    """

    def __init__(self, variant: str = "tiny", in_channels: int = 1,
                 strides: Sequence[Sequence[int]] | None = None, stem_stride: int = 2):
        super().__init__()
        cfg = variant_config(variant)
        self.variant = str(variant).lower()
        self.depths, self.dims = cfg["depths"], cfg["dims"]
        if stem_stride not in (2, 4):
            raise NeurinoError(f"stem_stride {stem_stride}: valid values are 2 and 4")
        if strides is None:
            strides = [(stem_stride,) * 3] + [(2, 2, 2)] * 3
        self.strides: list[Stride3] = [tuple(int(v) for v in s) for s in strides]  # type: ignore[misc]
        if len(self.strides) != 4 or any(len(s) != 3 for s in self.strides):
            raise NeurinoError(f"encoder strides {strides!r}: expected 4 per-axis (z, y, x) triples")
        if any(v not in (1, 2) for s in self.strides[1:] for v in s):
            raise NeurinoError(f"encoder strides {strides!r}: downsampling factors must be 1 or 2")
        geo = [stem_geometry(v) for v in self.strides[0]]
        stem = nn.Conv3d(in_channels, self.dims[0], kernel_size=tuple(g[0] for g in geo),
                         stride=self.strides[0], padding=tuple(g[1] for g in geo))
        self.downsample_layers = nn.ModuleList([nn.Sequential(stem, LayerNormChannelsFirst(self.dims[0]))])
        for i in range(1, 4):
            s = self.strides[i]
            conv = nn.Conv3d(self.dims[i - 1], self.dims[i], kernel_size=s, stride=s)
            self.downsample_layers.append(nn.Sequential(LayerNormChannelsFirst(self.dims[i - 1]), conv))
        self.stages = nn.ModuleList(
            nn.Sequential(*[ConvNeXtBlock3D(d) for _ in range(n)]) for d, n in zip(self.dims, self.depths))

    @property
    def stage_strides(self) -> list[Stride3]:
        """Per-axis cumulative stride of each stage output."""
        out, acc = [], (1, 1, 1)
        for s in self.strides:
            acc = tuple(a * b for a, b in zip(acc, s))
            out.append(acc)
        return out

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``x``: ``(N, in_channels, Z, Y, X)`` → 4 tensors ``(N, dims[i], Z/s_i, Y/s_i, X/s_i)``."""
        x = x.contiguous(memory_format=torch.channels_last_3d)
        feats = []
        for down, stage in zip(self.downsample_layers, self.stages):
            x = stage(down(x))
            feats.append(x)
        return feats
