"""2D DINOv3 ConvNeXt checkpoints → the inflated 3D encoder (the paper's supplement §9; I3D inflation).

Reads Meta ``.pth``, timm and HF transformers key layouts (``.pth`` via ``torch.load(weights_only=True)`` or
``.safetensors``), detects the layout, renames everything to Meta's names (which ``ConvNeXt3DEncoder`` uses),
checks variant and shapes, and inflates 2D kernels to the encoder's 3D kernels. Checkpoints are untrusted:
nothing but tensors is ever unpickled. Every problem raises :class:`NeurinoError` naming the file and key.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from nnunetv2_neurino.errors import NeurinoError
from nnunetv2_neurino.io_utils import safe_torch_load
from nnunetv2_neurino.networks.convnext3d import variant_config

LAYOUTS = ("meta", "timm", "hf")
INFLATION_MODES = ("average", "center")
ENV_BY_VARIANT = {"tiny": "NEURINO_DINOV3_WEIGHTS_TINY", "small": "NEURINO_DINOV3_WEIGHTS_SMALL"}
ENV_ANY = "NEURINO_DINOV3_WEIGHTS"

MISSING_WEIGHTS_MESSAGE = (
    "NeurINO-{letter} starts from the 2D DINOv3 ConvNeXt-{name} weights, which cannot be downloaded "
    "here or at run time. Get Meta's file dinov3_convnext_{variant}_pretrain_lvd1689m-*.pth from the "
    "DINOv3 release page (https://github.com/facebookresearch/dinov3, after accepting the DINOv3 licence; "
    "timm or HF transformers copies in .pth or .safetensors work too) and pass it with\n"
    "    export {env}=/path/to/dinov3_convnext_{variant}_pretrain_lvd1689m-XXXX.pth\n"
    "(or {env_any} for either variant). To fine-tune an existing NeurINO model instead, train with "
    "-tr nnUNetTrainerNeurINO_scratch -pretrained_weights /path/to/checkpoint_final.pth "
    "(its weights replace the initialisation, so no DINOv3 file is needed)."
)

# One row per parameter group: (Meta name, timm name, HF name). "{i}"/"{j}" are stage/block indices.
# Specific rows come first (the stem before the generic downsampling rows).
_RULES: list[tuple[str, str | None, str | None]] = [
    ("downsample_layers.0.0.", "stem.0.", "stages.0.downsample_layers.0."),
    ("downsample_layers.0.1.", "stem.1.", "stages.0.downsample_layers.1."),
    ("downsample_layers.{i}.0.", "stages.{i}.downsample.0.", "stages.{i}.downsample_layers.0."),
    ("downsample_layers.{i}.1.", "stages.{i}.downsample.1.", "stages.{i}.downsample_layers.1."),
    ("stages.{i}.{j}.dwconv.", "stages.{i}.blocks.{j}.conv_dw.", "stages.{i}.layers.{j}.depthwise_conv."),
    ("stages.{i}.{j}.norm.", "stages.{i}.blocks.{j}.norm.", "stages.{i}.layers.{j}.layer_norm."),
    ("stages.{i}.{j}.pwconv1.", "stages.{i}.blocks.{j}.mlp.fc1.", "stages.{i}.layers.{j}.pointwise_conv1."),
    ("stages.{i}.{j}.pwconv2.", "stages.{i}.blocks.{j}.mlp.fc2.", "stages.{i}.layers.{j}.pointwise_conv2."),
    ("stages.{i}.{j}.gamma", "stages.{i}.blocks.{j}.gamma", "stages.{i}.layers.{j}.gamma"),
    ("stages.{i}.{j}.gamma", None, "stages.{i}.layers.{j}.layer_scale_parameter"),
    ("norm.", "head.norm.", "layer_norm."),
    ("norms.{i}.", None, None),
]
# Canonical keys the 3D forward does not use (the 2D backbone's final norm) and timm's classifier.
_UNUSED = re.compile(r"^(norm\.|norms\.\d+\.|head\.)")
_WRAPPER_PREFIXES = ("module.", "_orig_mod.", "model.", "backbone.", "encoder.", "convnext.")
_CONTAINER_KEYS = ("state_dict", "model", "teacher", "network_weights")


def _pattern(template: str) -> re.Pattern[str]:
    rx = re.escape(template).replace(r"\{i\}", r"(?P<i>\d+)").replace(r"\{j\}", r"(?P<j>\d+)")
    return re.compile("^" + rx)


_COMPILED = [(meta, {lay: _pattern(t) for lay, t in zip(LAYOUTS, (meta, timm, hf)) if t is not None},
              {lay: t for lay, t in zip(LAYOUTS, (meta, timm, hf))}) for meta, timm, hf in _RULES]


def _rename(key: str, src: str, dst: str) -> str | None:
    """Rename ``key`` from layout ``src`` to layout ``dst``; None when no rule matches."""
    for _meta, patterns, templates in _COMPILED:
        rx = patterns.get(src)
        target = templates.get(dst)
        if rx is None or target is None:
            continue
        m = rx.match(key)
        if m:
            g = m.groupdict()
            return target.format(**g) + key[m.end():]
    return None


def detect_layout(state_dict: Mapping[str, object], source: str = "state dict") -> str:
    """Return "meta", "timm" or "hf" for a 2D ConvNeXt state dict (keys without wrapper prefixes)."""
    keys = list(state_dict)
    if any(k.startswith("downsample_layers.") for k in keys):
        return "meta"
    if any(k.startswith("stem.") or re.match(r"^stages\.\d+\.blocks\.", k) for k in keys):
        return "timm"
    if any(re.match(r"^stages\.\d+\.(layers|downsample_layers)\.", k) for k in keys):
        return "hf"
    first = keys[0] if keys else "(no keys)"
    raise NeurinoError(f"{source}: unknown checkpoint layout (first key {first!r}); expected a DINOv3 "
                       "ConvNeXt state dict in Meta (downsample_layers.*), timm (stem.*, "
                       "stages.i.blocks.*) or HF transformers (stages.i.layers.*) naming")


def _strip_wrappers(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    changed = True
    while changed and sd:
        changed = False
        for p in _WRAPPER_PREFIXES:
            if all(k.startswith(p) for k in sd):
                sd = {k[len(p):]: v for k, v in sd.items()}
                changed = True
    return sd


def read_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a ``.pth`` (tensors only, ``weights_only=True``) or ``.safetensors`` file into a flat state dict.

    A dict nested under ``state_dict`` / ``model`` / ``teacher`` / ``network_weights`` is unwrapped, and
    wrapper prefixes (``module.``, ``model.``, ``backbone.``, ...) shared by all keys are removed.
    """
    p = Path(path)
    if not p.is_file():
        raise NeurinoError(f"{p}: DINOv3 weights file not found")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file
        try:
            obj: object = load_file(str(p), device="cpu")
        except Exception as e:  # safetensors raises its own error types for bad headers
            raise NeurinoError(f"{p}: corrupt or unreadable safetensors file ({e})") from e
    else:
        obj = safe_torch_load(p)
    for _ in range(3):
        if isinstance(obj, Mapping):
            inner = next((obj[k] for k in _CONTAINER_KEYS if isinstance(obj.get(k), Mapping)), None)
            if inner is not None:
                obj = inner
    if not isinstance(obj, Mapping):
        raise NeurinoError(f"{p}: expected a state dict (names → tensors), got {type(obj).__name__}")
    bad = next((k for k, v in obj.items() if not isinstance(v, torch.Tensor)), None)
    if bad is not None:
        raise NeurinoError(f"{p}: entry {bad!r} is a {type(obj[bad]).__name__}, not a tensor")
    return _strip_wrappers(dict(obj))


def expected_2d_shapes(variant: str) -> dict[str, tuple[int, ...]]:
    """Meta-layout keys and shapes of the 2D DINOv3 ConvNeXt backbone (stem input channels given as -1)."""
    cfg = variant_config(variant)
    dims, depths = cfg["dims"], cfg["depths"]
    shapes: dict[str, tuple[int, ...]] = {
        "downsample_layers.0.0.weight": (dims[0], -1, 4, 4), "downsample_layers.0.0.bias": (dims[0],),
        "downsample_layers.0.1.weight": (dims[0],), "downsample_layers.0.1.bias": (dims[0],)}
    for i in range(1, 4):
        b = f"downsample_layers.{i}."
        shapes |= {b + "0.weight": (dims[i - 1],), b + "0.bias": (dims[i - 1],),
                   b + "1.weight": (dims[i], dims[i - 1], 2, 2), b + "1.bias": (dims[i],)}
    for i, (d, n) in enumerate(zip(dims, depths)):
        for j in range(n):
            b = f"stages.{i}.{j}."
            shapes |= {b + "dwconv.weight": (d, 1, 7, 7), b + "dwconv.bias": (d,), b + "norm.weight": (d,),
                       b + "norm.bias": (d,), b + "pwconv1.weight": (4 * d, d), b + "pwconv1.bias": (4 * d,),
                       b + "pwconv2.weight": (d, 4 * d), b + "pwconv2.bias": (d,), b + "gamma": (d,)}
    return shapes


def _stage_depths(keys: list[str]) -> dict[int, int]:
    """Number of blocks per stage, from Meta-layout keys ``stages.i.j.*``."""
    out: dict[int, int] = {}
    for k in keys:
        m = re.match(r"^stages\.(\d+)\.(\d+)\.", k)
        if m:
            i, j = int(m.group(1)), int(m.group(2))
            out[i] = max(out.get(i, 0), j + 1)
    return out


def load_dinov3_state_dict(path: str | os.PathLike, variant: str) -> dict[str, torch.Tensor]:
    """Read a 2D DINOv3 ConvNeXt checkpoint in any supported layout; return it in Meta naming, validated.

    The 2D backbone's final norm and timm's classifier head are dropped (the 3D forward does not use them).
    Raises NeurinoError naming the file and the first offending key (in the file's own naming) for an
    unknown layout, the wrong variant, a missing or unexpected key or a shape mismatch.
    """
    variant = str(variant).lower()
    cfg = variant_config(variant)
    raw = read_checkpoint(path)
    layout = detect_layout(raw, str(path))
    canon: dict[str, torch.Tensor] = {}
    original: dict[str, str] = {}
    for k, v in raw.items():
        new = k if layout == "meta" else _rename(k, layout, "meta")
        if new is None and layout == "timm" and k.startswith("head."):
            continue
        if new is None:
            raise NeurinoError(f"{path}: unexpected key {k!r} for a {layout}-layout DINOv3 ConvNeXt file")
        if _UNUSED.match(new):
            continue
        canon[new], original[new] = v, k
    names = {"tiny": "Tiny", "small": "Small"}
    by_stage2_depth = {variant_config(n)["depths"][2]: n for n in names}
    depths = _stage_depths(list(canon))
    for i, want in enumerate(cfg["depths"]):
        have = depths.get(i, 0)
        if have == want:
            continue
        holds = by_stage2_depth.get(have) if i == 2 else None
        what = f"ConvNeXt-{names[holds]} weights" if holds else f"a ConvNeXt with {have} blocks in stage {i}"
        if have > want:  # the first block the requested variant does not have
            key = original[next(k for k in canon if k.startswith(f"stages.{i}.{want}."))]
        else:  # the first block the file lacks
            key = _rename(f"stages.{i}.{have}.dwconv.weight", "meta", layout) or f"stages.{i}.{have}"
        raise NeurinoError(f"{path}: wrong variant: the file holds {what} (stage {i} has {have} blocks) but "
                           f"variant {variant!r} (ConvNeXt-{names[variant]}) needs {want}; first offending "
                           f"key {key!r}")
    shapes = expected_2d_shapes(variant)
    for k, shape in shapes.items():
        if k not in canon:
            name = _rename(k, "meta", layout) if layout != "meta" else k
            raise NeurinoError(f"{path}: missing key {name!r} ({layout} layout, "
                               f"DINOv3 ConvNeXt-{names[variant]})")
        got = tuple(canon[k].shape)
        if len(got) != len(shape) or any(w not in (-1, g) for w, g in zip(shape, got)):
            want = tuple("C" if w == -1 else w for w in shape)
            raise NeurinoError(f"{path}: shape mismatch for key {original[k]!r}: file has {got}, "
                               f"ConvNeXt-{names[variant]} needs {want}")
    extra = next((k for k in canon if k not in shapes), None)
    if extra is not None:
        raise NeurinoError(f"{path}: unexpected key {original[extra]!r} for DINOv3 ConvNeXt-{names[variant]}")
    return canon


def inflate_conv2d_to_3d(weight2d: torch.Tensor, depth: int, mode: str = "average") -> torch.Tensor:
    """Inflate a 2D conv kernel ``(O, I, KH, KW)`` to 3D ``(O, I, depth, KH, KW)``.

    ``average`` (I3D): the kernel repeated along depth and divided by ``depth`` (a volume constant along
    depth gives the 2D response). ``center``: the kernel in slot ``depth // 2``, zeros elsewhere (every depth
    slice of the response equals the 2D response of that slice).
    """
    if weight2d.ndim != 4:
        raise NeurinoError(f"expected a 2D conv kernel (O, I, KH, KW), got shape {tuple(weight2d.shape)}")
    if depth < 1:
        raise NeurinoError(f"inflation depth must be >= 1, got {depth}")
    if mode == "average":
        return weight2d.unsqueeze(2).repeat(1, 1, depth, 1, 1) / depth
    if mode == "center":
        out = weight2d.new_zeros(weight2d.shape[:2] + (depth,) + weight2d.shape[2:])
        out[:, :, depth // 2] = weight2d
        return out
    raise NeurinoError(f"unknown inflation mode {mode!r}; valid: {', '.join(INFLATION_MODES)}")


def adapt_input_channels(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Map a stem kernel ``(O, C_rgb, ...)`` to ``in_channels`` inputs.

    Unchanged when the counts agree; otherwise the mean over the source channels, repeated for each input
    channel and divided by ``in_channels`` (so ``in_channels`` copies of one image give the response of that
    image as a grey RGB picture).
    """
    if weight.shape[1] == in_channels:
        return weight
    mean = weight.mean(dim=1, keepdim=True)
    return mean.repeat(1, in_channels, *([1] * (weight.ndim - 2))) / in_channels


def fit_kernel(weight2d: torch.Tensor, kernel3d: tuple[int, int, int], mode: str = "average") -> torch.Tensor:
    """Turn a 2D kernel ``(O, I, KH, KW)`` into a 3D kernel of spatial size ``kernel3d`` = (KD, KH', KW').

    Depth is inflated with ``mode``; an in-plane axis whose 3D size is 1 (a stride-1 axis of an anisotropic
    plan) is collapsed by summing over it, which keeps the response to inputs constant along that axis.
    """
    w = weight2d
    for axis, size in ((2, kernel3d[1]), (3, kernel3d[2])):
        if size == 1 and w.shape[axis] != 1:
            w = w.sum(dim=axis, keepdim=True)
        elif size != w.shape[axis]:
            raise NeurinoError(f"cannot fit 2D kernel {tuple(weight2d.shape)} to 3D kernel {kernel3d}")
    return inflate_conv2d_to_3d(w, kernel3d[0], mode)


def inflate_state_dict(state2d: Mapping[str, torch.Tensor], encoder: nn.Module,
                       inflation: str = "average") -> dict[str, torch.Tensor]:
    """Map a validated Meta-layout 2D state dict onto ``encoder.state_dict()`` shapes (3D kernels)."""
    if inflation not in INFLATION_MODES:
        raise NeurinoError(f"unknown inflation mode {inflation!r}; valid: {', '.join(INFLATION_MODES)}")
    target = encoder.state_dict()
    out: dict[str, torch.Tensor] = {}
    for k, t in target.items():
        if k not in state2d:
            raise NeurinoError(f"2D state dict lacks {k!r} needed by the 3D encoder")
        w = state2d[k].to(t.dtype)
        if t.ndim == 5:
            if k == "downsample_layers.0.0.weight":
                w = adapt_input_channels(w, t.shape[1])
            w = fit_kernel(w, tuple(t.shape[2:]), inflation)
        if tuple(w.shape) != tuple(t.shape):
            raise NeurinoError(f"key {k!r}: 2D weight maps to {tuple(w.shape)}, "
                               f"encoder needs {tuple(t.shape)}")
        out[k] = w
    return out


def load_dinov3_into_encoder(encoder: nn.Module, path: str | os.PathLike, variant: str | None = None,
                             inflation: str = "average") -> None:
    """Load a 2D DINOv3 ConvNeXt checkpoint (any layout) into ``encoder`` (a ``ConvNeXt3DEncoder``),
    inflating every 2D kernel with ``inflation`` ("average" or "center")."""
    variant = variant or getattr(encoder, "variant", "tiny")
    state = inflate_state_dict(load_dinov3_state_dict(path, variant), encoder, inflation)
    encoder.load_state_dict(state, strict=True)


def missing_weights_message(variant: str) -> str:
    """The user-facing text saying which DINOv3 file NeurINO-``variant`` needs and how to pass it."""
    v = str(variant).lower()
    variant_config(v)
    return MISSING_WEIGHTS_MESSAGE.format(letter=v[0].upper(), name=v.capitalize(), variant=v,
                                          env=ENV_BY_VARIANT[v], env_any=ENV_ANY)


def resolve_dinov3_weights(variant: str, environ: Mapping[str, str] | None = None) -> Path | None:
    """Path of the DINOv3 file for ``variant`` from ``NEURINO_DINOV3_WEIGHTS_{TINY,SMALL}``, then
    ``NEURINO_DINOV3_WEIGHTS``; None when neither is set. A set variable naming a missing file is an error."""
    env = os.environ if environ is None else environ
    v = str(variant).lower()
    variant_config(v)
    for name in (ENV_BY_VARIANT[v], ENV_ANY):
        value = env.get(name, "").strip()
        if value:
            p = Path(value).expanduser()
            if not p.is_file():
                raise NeurinoError(f"{name}={value}: file not found\n{missing_weights_message(v)}")
            return p
    return None
