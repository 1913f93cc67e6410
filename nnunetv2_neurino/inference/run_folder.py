"""Find and safely load nnU-Net training output folders (``TRAINER__PLANS__CONFIG/fold_N``).

nnU-Net writes, per trained model, a *trainer folder* ``<nnUNet_results>/DatasetXXX/TRAINER__PLANS__CONFIG``
holding ``plans.json``, ``dataset.json`` and one ``fold_N`` folder per fold (training logs and
``checkpoint_{latest,best,final}.pth``). Checkpoints are untrusted input: they are read with
``torch.load(weights_only=True)``, with only numpy scalar/dtype reconstruction allow-listed (nnU-Net stores
its logged losses as numpy scalars); nothing else is unpickled.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from nnunetv2_neurino.errors import NeurinoError
from nnunetv2_neurino.io_utils import safe_torch_load
from nnunetv2_neurino.nnunet_layout import fold_id, split_trainer_folder_name

CHECKPOINT_FILES = {
    "final": "checkpoint_final.pth",
    "best": "checkpoint_best.pth",
    "latest": "checkpoint_latest.pth",
}


@dataclass(frozen=True)
class RunFolder:
    """An nnU-Net trainer folder and the fold folders selected in it.

    Attributes
    ----------
    trainer_dir : the ``TRAINER__PLANS__CONFIG`` folder (holds plans.json and dataset.json).
    trainer_name, plans_name, configuration : the three parts of that folder's name.
    fold_dirs : selected ``fold_*`` folders, sorted by fold (numbers first, then ``all``).
    """

    trainer_dir: Path
    trainer_name: str
    plans_name: str
    configuration: str
    fold_dirs: tuple[Path, ...]

    @property
    def folds(self) -> tuple[str, ...]:
        """Fold identifiers (``"0"``, ``"1"``, …, ``"all"``) of :attr:`fold_dirs`."""
        return tuple(fold_id(d.name) for d in self.fold_dirs)


def _fold_sort_key(d: Path) -> tuple[int, int]:
    f = fold_id(d.name)
    return (1, 0) if f == "all" else (0, int(f))


def _parse_trainer_dir(trainer_dir: Path, original: Path) -> tuple[str, str, str]:
    parts = split_trainer_folder_name(trainer_dir.name)
    if parts is None:
        raise NeurinoError(f"{original} is not an nnU-Net run: expected a folder named "
                           f"TRAINER__PLANS__CONFIG (or its fold_N subfolder), got {trainer_dir.name!r}")
    for required in ("plans.json", "dataset.json"):
        if not (trainer_dir / required).is_file():
            raise NeurinoError(f"{original} is not an nnU-Net run: {trainer_dir / required} is missing")
    return parts


def resolve_run(path: str | Path, folds: list[str] | None = None) -> RunFolder:
    """Resolve a fold folder or a trainer folder to a :class:`RunFolder`.

    Parameters
    ----------
    path : ``…/TRAINER__PLANS__CONFIG`` (all its ``fold_*`` folders, or those named in ``folds``) or
        ``…/TRAINER__PLANS__CONFIG/fold_N`` (that fold only; ``folds`` must be None or name it).
    folds : fold identifiers such as ``["0", "1"]`` or ``["all"]``.

    Raises
    ------
    NeurinoError
        when the folder does not exist, is not an nnU-Net run, or a requested fold is missing.
    """
    p = Path(path).expanduser()
    if not p.is_dir():
        raise NeurinoError(f"{p} does not exist or is not a folder")
    p = p.resolve()
    if fold_id(p.name) is not None:
        trainer_dir, fold_dirs = p.parent, [p]
        if folds is not None and [str(f) for f in folds] != [fold_id(p.name)]:
            raise NeurinoError(f"{path} is the folder of one fold; requested folds {folds} do not match it")
    else:
        trainer_dir = p
        fold_dirs = sorted((d for d in p.iterdir() if d.is_dir() and fold_id(d.name) is not None),
                           key=_fold_sort_key)
        if folds is not None:
            wanted = [p / f"fold_{f}" for f in folds]
            missing = [str(w) for w in wanted if not w.is_dir()]
            if missing:
                raise NeurinoError(f"requested fold folder(s) missing: {', '.join(missing)}")
            fold_dirs = wanted
    trainer, plans, config = _parse_trainer_dir(trainer_dir, Path(path))
    if not fold_dirs:
        raise NeurinoError(f"{path} is not an nnU-Net run: it has no fold_N folder")
    return RunFolder(trainer_dir, trainer, plans, config, tuple(fold_dirs))


def load_checkpoint(path: str | Path) -> dict:
    """Load an nnU-Net checkpoint without unpickling arbitrary objects.

    Parameters
    ----------
    path : a ``checkpoint_*.pth`` written by ``nnUNetTrainer.save_checkpoint``.

    Returns
    -------
    dict with nnU-Net's keys (``network_weights``, ``logging``, ``trainer_name``, ``init_args``, …),
    on the CPU.

    Raises
    ------
    NeurinoError
        when the file is missing, is not a checkpoint dict, or needs pickle beyond plain/numpy/torch types.
    """
    path = Path(path)
    if not path.is_file():
        raise NeurinoError(f"checkpoint {path} does not exist")
    ckpt = safe_torch_load(path)
    if not isinstance(ckpt, dict) or "network_weights" not in ckpt or "trainer_name" not in ckpt:
        raise NeurinoError(f"{path} is not an nnU-Net checkpoint (no 'network_weights'/'trainer_name' keys)")
    return ckpt


def checkpoint_path(fold_dir: Path, which: str) -> Path:
    """Path of ``checkpoint_{which}.pth`` in ``fold_dir``; NeurinoError naming the file if absent."""
    if which not in CHECKPOINT_FILES:
        raise NeurinoError(f"unknown checkpoint {which!r}; choose one of {', '.join(CHECKPOINT_FILES)}")
    p = Path(fold_dir) / CHECKPOINT_FILES[which]
    if not p.is_file():
        present = sorted(q.name for q in Path(fold_dir).glob("checkpoint_*.pth"))
        others = [k for k, f in CHECKPOINT_FILES.items() if k != which and (Path(fold_dir) / f).is_file()]
        hint = (f"try --checkpoint {' or '.join(others)}" if others else
                "has this fold been trained? (nnUNetv2_train writes checkpoint_best.pth and "
                "checkpoint_latest.pth during training, checkpoint_final.pth at its end)")
        raise NeurinoError(f"{p} does not exist (present: {', '.join(present) or 'no checkpoints'}); {hint}")
    return p


def load_json(path: Path) -> dict:
    """Read a JSON file, turning parse errors into NeurinoError naming the file."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise NeurinoError(f"cannot read {path}: {e}") from e


def load_fold_checkpoints(run: RunFolder, which: str) -> list[dict]:
    """Load ``checkpoint_{which}.pth`` of every fold of ``run`` and check it belongs to that run.

    Raises
    ------
    NeurinoError
        when a checkpoint's ``trainer_name`` differs from the trainer named by the folder, or its
        configuration differs from the folder's configuration.
    """
    out = []
    for fold_dir in run.fold_dirs:
        path = checkpoint_path(fold_dir, which)
        ckpt = load_checkpoint(path)
        if ckpt["trainer_name"] != run.trainer_name:
            raise NeurinoError(f"{path} was written by trainer {ckpt['trainer_name']!r} but its folder "
                               f"{run.trainer_dir.name} names trainer {run.trainer_name!r}")
        config = (ckpt.get("init_args") or {}).get("configuration", run.configuration)
        if config != run.configuration:
            raise NeurinoError(f"{path} is for configuration {config!r}, its folder names "
                               f"{run.configuration!r}")
        out.append(ckpt)
    return out
