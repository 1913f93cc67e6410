"""NeurINO: inflated DINOv3 ConvNeXt encoder + MedNeXt-block decoder (paper, suppl. §9).

Tensors are ``(N, C, Z, Y, X)``; strides are per axis in array order ``(z, y, x)``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from torch import nn

from nnunetv2_neurino.errors import NeurinoError
from nnunetv2_neurino.networks.convnext3d import ConvNeXt3DEncoder
from nnunetv2_neurino.networks.mednext_blocks import MedNeXtBlock, MedNeXtUpBlock, OutHead, Stride3

DECODER_EXPANSION = 2
DECODER_KERNEL = 3
DECODER_BLOCKS = 2


def _pair(channels: int) -> nn.Sequential:
    return nn.Sequential(*[MedNeXtBlock(channels, channels, DECODER_EXPANSION, DECODER_KERNEL, False, "batch")
                           for _ in range(DECODER_BLOCKS)])


def _up(c_in: int, c_out: int, stride: Stride3) -> MedNeXtUpBlock:
    return MedNeXtUpBlock(c_in, c_out, DECODER_EXPANSION, DECODER_KERNEL, False, "batch", stride)


def _split_stem_stride(stem: Stride3) -> tuple[Stride3, Stride3]:
    """Split the stem's per-axis stride (1, 2 or 4) over up_0 and the extra up-block of the stride-4 stem."""
    first = tuple(min(s, 2) for s in stem)
    return first, tuple(s // f for s, f in zip(stem, first))  # type: ignore[return-value]


class NeurINODecoder(nn.Module):
    """Bottleneck (2 blocks at dims[3]), up_3..up_1 with additive skips, up_0 to dims[0]/2 (no skip).

    With a stride-4 stem (``extra_up`` set) one more up-block (dims[0]/2 → dims[0]/4) reaches full
    resolution before the first head. Heads (``seg_layers``): full resolution first, then the outputs of
    the 96-, 192-, 384-channel levels and the bottleneck. All norms are BatchNorm3d (momentum 0.01).

    Parameters
    ----------
    dims : encoder stage widths (96, 192, 384, 768).
    num_classes : output channels of every head.
    up_strides : per-axis strides of up_3, up_2, up_1, up_0 (mirroring down3, down2, down1, stem).
    extra_up : per-axis stride of the extra up-block (stride-4 stem) or None.
    deep_supervision : settable; True → list of 5 logits maps, full resolution first; False → one tensor.
    """

    def __init__(self, dims: Sequence[int], num_classes: int, up_strides: Sequence[Stride3],
                 extra_up: Stride3 | None = None, deep_supervision: bool = True):
        super().__init__()
        self.deep_supervision = deep_supervision
        d0, d1, d2, d3 = dims
        self.bottleneck = _pair(d3)
        self.up_3, self.stage_3 = _up(d3, d2, up_strides[0]), _pair(d2)
        self.up_2, self.stage_2 = _up(d2, d1, up_strides[1]), _pair(d1)
        self.up_1, self.stage_1 = _up(d1, d0, up_strides[2]), _pair(d0)
        self.up_0, self.stage_0 = _up(d0, d0 // 2, up_strides[3]), _pair(d0 // 2)
        self.up_extra = _up(d0 // 2, d0 // 4, extra_up) if extra_up is not None else None
        full = d0 // 4 if extra_up is not None else d0 // 2
        self.seg_layers = nn.ModuleList(OutHead(c, num_classes) for c in (full, d0, d1, d2, d3))

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
        """``feats``: the 4 encoder stage outputs → logits (list when deep supervision is on)."""
        ds = self.deep_supervision
        x = self.bottleneck(feats[3])
        outs = [self.seg_layers[4](x)] if ds else []
        x = self.stage_3(self.up_3(x) + feats[2])
        if ds:
            outs.append(self.seg_layers[3](x))
        x = self.stage_2(self.up_2(x) + feats[1])
        if ds:
            outs.append(self.seg_layers[2](x))
        x = self.stage_1(self.up_1(x) + feats[0])
        if ds:
            outs.append(self.seg_layers[1](x))
        x = self.stage_0(self.up_0(x))
        if self.up_extra is not None:
            x = self.up_extra(x)
        outs.append(self.seg_layers[0](x))
        return outs[::-1] if ds else outs[0]


class NeurINO(nn.Module):
    """Inflated DINOv3 ConvNeXt encoder (``.encoder``) + MedNeXt-block decoder (``.decoder``).

    Input ``(N, in_channels, Z, Y, X)``, each axis divisible by ``total_stride``; output logits
    ``(N, num_classes, Z, Y, X)`` or, with ``decoder.deep_supervision``, 5 maps at ``output_strides``.
    """

    def __init__(self, variant: str = "tiny", in_channels: int = 1, num_classes: int = 2,
                 deep_supervision: bool = True, stem_stride: int = 2,
                 strides: Sequence[Sequence[int]] | None = None):
        super().__init__()
        self.encoder = ConvNeXt3DEncoder(variant, in_channels, strides, stem_stride)
        s = self.encoder.strides
        up0, extra = _split_stem_stride(s[0])
        self.stem_stride = stem_stride
        self.decoder = NeurINODecoder(self.encoder.dims, num_classes, [s[3], s[2], s[1], up0],
                                      extra if stem_stride == 4 else None, deep_supervision)

    @property
    def output_strides(self) -> list[Stride3]:
        """Per-output per-axis cumulative stride, full resolution first (5 entries)."""
        return [(1, 1, 1)] + self.encoder.stage_strides

    @property
    def total_stride(self) -> Stride3:
        """Per-axis factor every input axis must be divisible by."""
        return self.encoder.stage_strides[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        bad = [n for n, t in zip(x.shape[2:], self.total_stride) if n % t]
        if bad:
            raise NeurinoError(f"input spatial shape {tuple(x.shape[2:])} is not divisible by the network's "
                               f"total stride {self.total_stride} (z, y, x)")
        return self.decoder(self.encoder(x))


def build_neurino(variant: str = "tiny", in_channels: int = 1, num_classes: int = 2,
                  deep_supervision: bool = True, stem_stride: int = 2, inflation: str = "average",
                  weights: str | os.PathLike | None = None,
                  strides: Sequence[Sequence[int]] | None = None) -> NeurINO:
    """Build NeurINO-T/S; with ``weights`` (a 2D DINOv3 checkpoint path) load and inflate the encoder.

    ``strides``: 4 per-axis ``(z, y, x)`` strides for (stem, down1, down2, down3), e.g. from
    :func:`neurino_strides_from_plan`; None = isotropic. ``inflation``: "average" or "center".
    """
    net = NeurINO(variant, in_channels, num_classes, deep_supervision, stem_stride, strides)
    if weights is not None:
        from nnunetv2_neurino.networks.inflation import load_dinov3_into_encoder
        load_dinov3_into_encoder(net.encoder, weights, variant, inflation)
    return net


def neurino_strides_from_plan(plan_strides: Sequence[Sequence[int]], patch_size: Sequence[int],
                              stem_stride: int = 2) -> list[Stride3]:
    """Map an nnU-Net plan's ``strides`` onto NeurINO's 4 strided layers (anisotropic data).

    Parameters
    ----------
    plan_strides : the configuration's ``strides`` list (per stage, per axis z, y, x; entry 0 is the
        unstrided first stage ``[1, 1, 1]``). Entries 1-4 give the factors of the stem and the three
        downsamplings; each factor is 1 or 2.
    patch_size : the patch size (z, y, x) in voxels; used only to fill layers the plan lacks.
    stem_stride : 2 or 4: the stem's stride on an axis whose plan factor is 2.

    Returns
    -------
    list of 4 per-axis ``(z, y, x)`` triples for (stem, down1, down2, down3). Where the plan has fewer than 4
    strided stages, a missing layer gets 2 on an axis while the patch stays divisible by the cumulative
    stride, else 1.

    Notes
    -----
    The patch is not changed here: the trainers fit it to the total stride (the product of these triples)
    with :func:`nnunetv2_neurino.trainers.patch.fit_patch_to_network`, the one place that rounds it (down,
    staying within nnU-Net's memory-based plan).
    """
    if stem_stride not in (2, 4):
        raise NeurinoError(f"stem_stride {stem_stride}: valid values are 2 and 4")
    patch = [int(p) for p in patch_size]
    if len(patch) != 3 or any(p < 1 for p in patch):
        raise NeurinoError(f"patch_size {list(patch_size)!r}: expected 3 positive sizes (z, y, x)")
    given = [tuple(int(v) for v in s) for s in list(plan_strides)[1:5]]
    for s in given:
        if len(s) != 3 or any(v not in (1, 2) for v in s):
            raise NeurinoError(f"plan strides {[list(s) for s in plan_strides]!r}: entries must be (z, y, x) "
                               "triples of 1 or 2")
    out: list[Stride3] = []
    acc = [1, 1, 1]
    for layer in range(4):
        if layer < len(given):
            factors = list(given[layer])
        else:  # the plan has fewer strided stages: 2 while the patch stays divisible
            factors = [2 if patch[a] % (acc[a] * 2) == 0 else 1 for a in range(3)]
        if layer == 0:
            factors = [stem_stride if f == 2 else 1 for f in factors]
        out.append(tuple(factors))  # type: ignore[arg-type]
        acc = [a * f for a, f in zip(acc, factors)]
    return out
