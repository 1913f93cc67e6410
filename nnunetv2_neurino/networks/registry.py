"""The architectures the package registers (``neurino model-info``, the paper's table 11).

``ARCHITECTURES`` maps a display name to an :class:`Architecture`: a builder taking the number of input
channels, and whether the network has an RGB (3-channel) stem count worth reporting. Every entry is built
as the paper's table 11 counts it: 2 classes, deep supervision on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from torch import nn

from nnunetv2_neurino.errors import NeurinoError
from nnunetv2_neurino.networks.mednext import build_mednext
from nnunetv2_neurino.networks.neurino import build_neurino


@dataclass(frozen=True)
class Architecture:
    """A registered network.

    Attributes
    ----------
    name : display name, e.g. "NeurINO-T".
    builder : ``builder(in_channels) -> nn.Module`` (2 classes, deep supervision on, random weights).
    rgb_stem : True for DINOv3-inflated encoders, whose paper count uses the 3-channel (RGB) stem.
        MedNeXt has no pretrained RGB stem: its ``params_rgb_stem`` is reported as null.
    description : one line for the table.
    """

    name: str
    builder: Callable[[int], nn.Module]
    rgb_stem: bool
    description: str

    def build(self, in_channels: int = 1) -> nn.Module:
        return self.builder(in_channels)


def _neurino(variant: str, stem_stride: int, in_channels: int) -> nn.Module:
    return build_neurino(variant, in_channels=in_channels, num_classes=2, deep_supervision=True,
                         stem_stride=stem_stride)


def _mednext(size: str, kernel_size: int, in_channels: int) -> nn.Module:
    return build_mednext(size, kernel_size=kernel_size, grn=True, in_channels=in_channels, num_classes=2,
                         deep_supervision=True)


def _entries() -> list[Architecture]:
    out = [
        Architecture("NeurINO-T", partial(_neurino, "tiny", 2), True,
                     "DINOv3 ConvNeXt-T encoder inflated to 3D, stride-2 stem, MedNeXt-block decoder"),
        Architecture("NeurINO-S", partial(_neurino, "small", 2), True,
                     "DINOv3 ConvNeXt-S encoder inflated to 3D, stride-2 stem, MedNeXt-block decoder"),
        Architecture("NeurINO-T-stride4", partial(_neurino, "tiny", 4), True,
                     "NeurINO-T with the 2D stride-4 stem (table 8's 4x row)"),
    ]
    for size in ("S", "B", "M", "L"):
        out.append(Architecture(f"MedNeXt-{size}", partial(_mednext, size, 3), False,
                                f"MedNeXt-{size}, kernel 3, GRN, deep supervision"))
    out.append(Architecture("MedNeXt-L-k5", partial(_mednext, "L", 5), False,
                            "MedNeXt-L, kernel 5 (UpKern target), GRN, deep supervision"))
    return out


ARCHITECTURES: dict[str, Architecture] = {a.name: a for a in _entries()}


def get_architecture(name: str) -> Architecture:
    """The registered architecture ``name`` (case-insensitive); NeurinoError listing the valid names."""
    for key, arch in ARCHITECTURES.items():
        if key.lower() == str(name).lower():
            return arch
    raise NeurinoError(f"unknown architecture {name!r}; registered: {', '.join(ARCHITECTURES)}")
