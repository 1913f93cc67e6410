"""Trainer configs (``trainer_configs/*.json``): the schema, strict validation and loading.

A config names the patch and batch size, the intensity normalisation the plan must use, class-attribute
``settings`` (epochs, iterations, AdamW/poly recipe) and the whole ``augmentation`` section. Every key is
checked: an unknown or mistyped key is an error naming the key and the file. The keys are documented in
``trainer_configs/README.md``; :mod:`.configs` turns a config into a trainer.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from nnunetv2_neurino.errors import NeurinoError

CONFIG_PACKAGE = "nnunetv2_neurino.trainer_configs"

#: class attributes a config's ``settings`` may set (nnU-Net's hyperparameters + the AdamW/poly recipe)
SETTINGS_TYPES: dict[str, type] = {
    "num_epochs": int, "num_iterations_per_epoch": int, "num_val_iterations_per_epoch": int,
    "initial_lr": float, "weight_decay": float, "adam_eps": float, "poly_exponent": float, "grad_clip": float,
    "oversample_foreground_percent": float,
}
TOP_KEYS = ("description", "patch_size", "batch_size", "normalization", "settings", "augmentation")
REQUIRED_TOP_KEYS = ("patch_size", "augmentation")
#: augmentation section → allowed keys (every key is required, so a config states the whole pipeline)
AUGMENTATION_KEYS: dict[str, tuple[str, ...]] = {
    "rotation": ("p", "max_degrees"),
    "mirror": ("axes",),
    "scaling": ("p", "range"),
    "elastic": ("p", "scale", "magnitude"),
    "gamma": ("p", "p_inverted", "range"),
    "brightness": ("p", "range"),
    "contrast": ("p", "range"),
    "gaussian_noise": ("p", "variance"),
    "gaussian_blur": ("p", "sigma"),
    "low_resolution": ("p", "scale"),
}
NORMALIZATIONS = ("ZScoreNormalization", "CTNormalization", "NoNormalization", "RescaleTo01Normalization",
                  "RGBTo01Normalization")


@dataclass(frozen=True)
class TrainerConfig:
    """A validated trainer config (see ``trainer_configs/README.md``).

    Attributes
    ----------
    name : file stem, e.g. ``"paper32"``.
    source : where it was read from (for messages).
    patch_size : (z, y, x) voxels.
    batch_size : samples per step, or None to keep the plan's.
    normalization : nnU-Net normalisation scheme name every channel must use, or None (no check).
    settings : class attribute name → value.
    augmentation : section → {key: value}, all sections of :data:`AUGMENTATION_KEYS`.
    description : free text.
    """

    name: str
    source: str
    patch_size: tuple[int, ...]
    batch_size: int | None
    normalization: str | None
    settings: dict[str, Any]
    augmentation: dict[str, dict[str, Any]]
    description: str = ""

    @property
    def rotation_radians(self) -> tuple[float, float]:
        deg = float(self.augmentation["rotation"]["max_degrees"])
        return (-math.radians(deg), math.radians(deg))

    @property
    def mirror_axes(self) -> tuple[int, ...] | None:
        axes = tuple(int(a) for a in self.augmentation["mirror"]["axes"])
        return axes or None


def config_names() -> list[str]:
    """Names of the configs shipped in the installed ``trainer_configs`` package."""
    return sorted(p.name[:-5] for p in resources.files(CONFIG_PACKAGE).iterdir() if p.name.endswith(".json"))


def _number(value, where: str, integer: bool = False) -> float:
    wrong_type = isinstance(value, bool) or not isinstance(value, (int, float))
    if wrong_type or (integer and not isinstance(value, int)):
        raise NeurinoError(f"{where}: expected {'an integer' if integer else 'a number'}, got {value!r}")
    if not math.isfinite(value):
        raise NeurinoError(f"{where}: expected a finite number, got {value!r}")
    return value


def _probability(value, where: str) -> float:
    v = float(_number(value, where))
    if not 0.0 <= v <= 1.0:
        raise NeurinoError(f"{where}: a probability must be in [0, 1], got {value!r}")
    return v


def _range(value, where: str, positive: bool = False) -> tuple[float, float]:
    if not isinstance(value, list) or len(value) != 2:
        raise NeurinoError(f"{where}: expected [low, high], got {value!r}")
    lo, hi = (float(_number(v, where)) for v in value)
    if lo > hi or lo < 0 or (positive and lo <= 0):
        raise NeurinoError(f"{where}: expected 0 {'<' if positive else '<='} low <= high, got {value!r}")
    return (lo, hi)


def _check_keys(section: dict, allowed, where: str, required=()) -> None:
    if not isinstance(section, dict):
        raise NeurinoError(f"{where}: expected a JSON object, got {type(section).__name__}")
    unknown = [k for k in section if k not in allowed]
    if unknown:
        raise NeurinoError(f"{where}: unknown key '{unknown[0]}' (allowed: {', '.join(allowed)})")
    missing = [k for k in required if k not in section]
    if missing:
        raise NeurinoError(f"{where}: missing key '{missing[0]}'")


def parse_trainer_config(data: dict, name: str, source: str) -> TrainerConfig:
    """Validate a config dict (as read from JSON); errors name ``source`` and the offending key."""
    _check_keys(data, TOP_KEYS, source, REQUIRED_TOP_KEYS)
    patch = data["patch_size"]
    if not isinstance(patch, list) or len(patch) not in (2, 3):
        raise NeurinoError(f"{source}: key 'patch_size': expected [z, y, x] voxels, got {patch!r}")
    for v in patch:
        if _number(v, f"{source}: key 'patch_size'", integer=True) < 1:
            raise NeurinoError(f"{source}: key 'patch_size': sizes must be >= 1, got {patch!r}")
    batch = data.get("batch_size")
    if batch is not None and _number(batch, f"{source}: key 'batch_size'", integer=True) < 1:
        raise NeurinoError(f"{source}: key 'batch_size': must be >= 1, got {batch!r}")
    norm = data.get("normalization")
    if norm is not None and norm not in NORMALIZATIONS:
        raise NeurinoError(f"{source}: key 'normalization': unknown scheme {norm!r} "
                           f"(nnU-Net's: {', '.join(NORMALIZATIONS)})")
    settings = data.get("settings", {})
    _check_keys(settings, tuple(SETTINGS_TYPES), f"{source}: section 'settings'")
    typed = {}
    for key, value in settings.items():
        where = f"{source}: key 'settings.{key}'"
        typed[key] = SETTINGS_TYPES[key](_number(value, where, integer=SETTINGS_TYPES[key] is int))
        if typed[key] < 0 or (SETTINGS_TYPES[key] is int and typed[key] < 1):
            raise NeurinoError(f"{where}: must be positive, got {value!r}")
    aug = data["augmentation"]
    _check_keys(aug, tuple(AUGMENTATION_KEYS), f"{source}: section 'augmentation'", tuple(AUGMENTATION_KEYS))
    parsed: dict[str, dict[str, Any]] = {}
    for section, keys in AUGMENTATION_KEYS.items():
        where = f"{source}: section 'augmentation.{section}'"
        _check_keys(aug[section], keys, where, keys)
        out: dict[str, Any] = {}
        for key, value in aug[section].items():
            kw = f"{source}: key 'augmentation.{section}.{key}'"
            if key.startswith("p"):
                out[key] = _probability(value, kw)
            elif key == "max_degrees":
                out[key] = float(_number(value, kw))
                if not 0 <= out[key] <= 180:
                    raise NeurinoError(f"{kw}: degrees must be in [0, 180], got {value!r}")
            elif key == "axes":
                if not isinstance(value, list) or any(
                        _number(a, kw, integer=True) not in range(len(patch)) for a in value) \
                        or len(set(value)) != len(value):
                    raise NeurinoError(f"{kw}: expected distinct axes among {list(range(len(patch)))}, "
                                       f"got {value!r}")
                out[key] = [int(a) for a in value]
            else:
                out[key] = _range(value, kw, positive=key in ("range", "sigma", "scale")
                                  and section != "elastic")
        parsed[section] = out
    return TrainerConfig(name=name, source=source, patch_size=tuple(int(p) for p in patch),
                         batch_size=None if batch is None else int(batch), normalization=norm,
                         settings=typed, augmentation=parsed, description=str(data.get("description", "")))


def load_trainer_config(name_or_path: str | Path) -> TrainerConfig:
    """Read and validate a config: a name shipped in ``trainer_configs`` or a path to a JSON file.

    Raises
    ------
    NeurinoError : unknown name, unreadable/invalid JSON, or a bad key (the message names file and key).
    """
    text_path = Path(name_or_path)
    if text_path.suffix == ".json" or text_path.is_file():
        if not text_path.is_file():
            raise NeurinoError(f"trainer config {text_path} does not exist")
        name, source, read = text_path.stem, str(text_path), text_path.read_text
    else:
        name = str(name_or_path)
        res = resources.files(CONFIG_PACKAGE) / f"{name}.json"
        if not res.is_file():
            raise NeurinoError(f"no trainer config '{name}' in the {CONFIG_PACKAGE} package "
                               f"(available: {', '.join(config_names())})")
        source, read = f"{CONFIG_PACKAGE}/{name}.json", res.read_text
    try:
        data = json.loads(read(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise NeurinoError(f"{source}: not valid JSON ({e})") from e
    return parse_trainer_config(data, name, source)
