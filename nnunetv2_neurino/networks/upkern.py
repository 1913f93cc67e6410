"""UpKern (MedNeXt, Roy et al. 2023): initialise a kernel-5 MedNeXt from a trained kernel-3 one.

Every depthwise kernel ``(C, 1, 3, 3, 3)`` is resized trilinearly (``torch.nn.functional.interpolate``,
``align_corners=False``) to ``(C, 1, 5, 5, 5)``; every other tensor (1×1 convs, norms, GRN, heads) is copied.
The resampled kernel sums to a different value than the original (≈4.6× for random kernels); the
GroupNorm right after each depthwise conv removes such a per-channel gain, which is why no rescaling is
applied.

The source must be a MedNeXt of this package (``networks/mednext.py`` key names), given as an nnU-Net
checkpoint (``{"network_weights": ..., "trainer_name": ..., ...}``) or a plain state dict; its size
(S/B/M/L), GRN, norm, input channels and classes are recognised from its keys and shapes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F

from nnunetv2_neurino.errors import NeurinoError
from nnunetv2_neurino.io_utils import safe_torch_load
from nnunetv2_neurino.networks.mednext import MEDNEXT_KERNELS, MEDNEXT_SIZES, build_mednext

_STEM = "encoder.stem.weight"
_FIRST_DW = "encoder.stages.0.0.conv1.weight"
_HEAD = "decoder.seg_layers.0.weight"


def _template(size: str, kernel_size: int, grn: bool, norm: str, in_channels: int,
              num_classes: int) -> dict[str, torch.Size]:
    with torch.device("meta"):
        net = build_mednext(size, kernel_size, grn, in_channels, num_classes, True, None, norm)
    return {k: v.shape for k, v in net.state_dict().items()}


def identify_mednext(state: Mapping[str, torch.Tensor], source: str = "state dict") -> dict[str, object]:
    """Recognise a MedNeXt state dict of this package.

    Returns
    -------
    dict with ``size`` ("S"/"B"/"M"/"L"), ``kernel_size``, ``grn``, ``norm``, ``in_channels``,
    ``num_classes``.

    Raises
    ------
    NeurinoError naming ``source`` when the keys or shapes are not those of any MedNeXt configuration.
    """
    missing = [k for k in (_STEM, _FIRST_DW, _HEAD) if k not in state]
    if missing:
        first = next(iter(state), "(no keys)")
        raise NeurinoError(f"{source}: not a MedNeXt checkpoint of this package (no key {missing[0]!r}; "
                           f"first key {first!r}). UpKern converts MedNeXt kernel-3 models "
                           "(nnUNetTrainerMedNeXt*)")
    in_channels = int(state[_STEM].shape[1])
    num_classes = int(state[_HEAD].shape[0])
    kernel = int(state[_FIRST_DW].shape[-1])
    if kernel not in MEDNEXT_KERNELS:
        raise NeurinoError(f"{source}: depthwise kernel {kernel} is not a MedNeXt kernel "
                           f"({', '.join(map(str, MEDNEXT_KERNELS))})")
    have = {k: v.shape for k, v in state.items()}
    best: tuple[int, str] | None = None
    for size in MEDNEXT_SIZES:
        for grn in (True, False):
            for norm in ("group", "batch"):
                want = _template(size, kernel, grn, norm, in_channels, num_classes)
                if want == have:
                    return {"size": size, "kernel_size": kernel, "grn": grn, "norm": norm,
                            "in_channels": in_channels, "num_classes": num_classes}
                diff = [k for k in want if have.get(k) != want[k]] + [k for k in have if k not in want]
                if best is None or len(diff) < best[0]:
                    best = (len(diff), f"MedNeXt-{size} (GRN {'on' if grn else 'off'}, {norm} norm): "
                                       f"first differing key {diff[0]!r}")
    raise NeurinoError(f"{source}: keys and shapes match no MedNeXt configuration (sizes "
                       f"{', '.join(MEDNEXT_SIZES)}); closest {best[1] if best else '-'}")


def upkern_state_dict(state: Mapping[str, torch.Tensor], kernel_size: int = 5,
                      source: str = "state dict") -> tuple[dict[str, torch.Tensor], dict[str, object]]:
    """Resize the depthwise kernels of a MedNeXt state dict to ``kernel_size``; copy everything else.

    Returns
    -------
    (new_state, config): the state dict of the ``kernel_size`` model (same keys) and the recognised
    configuration of the source (see :func:`identify_mednext`).
    """
    cfg = identify_mednext(state, source)
    if kernel_size not in MEDNEXT_KERNELS:
        raise NeurinoError(f"target kernel {kernel_size}: valid MedNeXt kernels are "
                           f"{', '.join(map(str, MEDNEXT_KERNELS))}")
    if kernel_size <= int(cfg["kernel_size"]):  # type: ignore[arg-type]
        raise NeurinoError(f"{source}: the model already has kernel {cfg['kernel_size']}; UpKern enlarges "
                           "kernels (e.g. 3 -> 5)")
    want = _template(cfg["size"], kernel_size, cfg["grn"], cfg["norm"],  # type: ignore[arg-type]
                     cfg["in_channels"], cfg["num_classes"])  # type: ignore[arg-type]
    out: dict[str, torch.Tensor] = {}
    for k, shape in want.items():
        w = state[k]
        if w.shape != shape:
            if w.ndim != 5 or w.shape[1] != 1 or w.shape[0] != shape[0]:
                raise NeurinoError(f"{source}: key {k!r} with shape {tuple(w.shape)} is not a depthwise "
                                   f"kernel but the kernel-{kernel_size} model needs {tuple(shape)}")
            w = F.interpolate(w.float(), size=tuple(shape[2:]), mode="trilinear",
                              align_corners=False).to(w.dtype)
        out[k] = w.detach().clone()
    return out, cfg


def load_mednext_weights(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], str | None]:
    """Read an nnU-Net checkpoint (``network_weights``) or a plain state dict, without arbitrary unpickling.

    Returns (state dict on the CPU, trainer name or None).
    """
    p = Path(path)
    if not p.is_file():
        raise NeurinoError(f"{p}: checkpoint not found")
    obj = safe_torch_load(p)
    trainer = None
    if isinstance(obj, Mapping) and "network_weights" in obj:
        trainer = obj.get("trainer_name")
        obj = obj["network_weights"]
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise NeurinoError(f"{p}: expected an nnU-Net checkpoint (with 'network_weights') or a state dict of "
                           "tensors")
    state = dict(obj)
    for prefix in ("module.", "_orig_mod."):
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state, trainer if isinstance(trainer, str) else None
