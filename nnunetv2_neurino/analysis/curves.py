"""Training curves of nnU-Net runs: read per-epoch losses and pseudo Dice, plot several runs together.

Sources, per fold folder (any trainer: nnU-Net writes the same files for all):

1. the ``logging`` dict of the newest checkpoint (``checkpoint_{final,latest,best}.pth``, the one with the
   largest ``current_epoch``), loaded with ``torch.load(weights_only=True)`` — full precision;
2. the text logs ``training_log_*.txt`` (lines ``Epoch N``, ``train_loss x``, ``val_loss x``,
   ``Pseudo dice [..]``), values rounded to 4 decimals by nnU-Net, but they also cover epochs after the
   last checkpoint, so a run that is still training is shown up to its last finished epoch.

Epochs present in a checkpoint take its values; later epochs come from the logs (a resumed run writes a
new log file that repeats epochs; the later file wins). An epoch counts as finished once its train loss,
validation loss and pseudo Dice are logged. The EMA pseudo Dice is recomputed with nnU-Net's rule
``ema_t = 0.9 ema_{t-1} + 0.1 dice_t`` (``ema_0 = dice_0``).
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nnunetv2_neurino.errors import NeurinoError
from nnunetv2_neurino.inference.run_folder import CHECKPOINT_FILES, RunFolder, load_checkpoint, resolve_run

_LINE_RE = re.compile(r"^\S+ \S+?: (?:Epoch (?P<epoch>\d+)\s*$|train_loss (?P<tr>\S+)|val_loss (?P<va>\S+)|"
                      r"Pseudo dice \[(?P<dice>.*)\])")
_NUM_RE = re.compile(r"[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|nan|inf)", re.IGNORECASE)
CSV_COLUMNS = ("run", "fold", "epoch", "train_loss", "val_loss", "pseudo_dice", "ema_pseudo_dice", "source")


@dataclass
class Curve:
    """Per-epoch training curve of one fold.

    Attributes
    ----------
    label : legend label.
    fold_dir : the fold folder it was read from.
    epochs : int array (E,), 0-based epoch numbers, consecutive from 0.
    train_loss, val_loss, pseudo_dice, ema_pseudo_dice : float arrays (E,); pseudo Dice = mean over
        foreground classes of nnU-Net's per-epoch validation Dice.
    source : (E,) ``"checkpoint"`` or ``"log"`` per epoch.
    """

    label: str
    fold_dir: Path
    epochs: np.ndarray
    train_loss: np.ndarray
    val_loss: np.ndarray
    pseudo_dice: np.ndarray
    ema_pseudo_dice: np.ndarray
    source: list[str] = field(default_factory=list)


def _numbers(text: str) -> list[float]:
    # "[np.float32(0.0778), 0.5]" -> [0.0778, 0.5]; strip "float32(" so its digits are not read as numbers
    return [float(t) for t in _NUM_RE.findall(re.sub(r"np\.\w+\(", "(", text))]


def parse_training_logs(fold_dir: str | Path) -> dict[int, tuple[float, float, float]]:
    """Finished epochs in ``fold_dir/training_log_*.txt``.

    Returns
    -------
    dict epoch -> (train_loss, val_loss, mean pseudo Dice over classes); only epochs with all three.
    Later log files (names sort by start time) override earlier ones for the same epoch.
    """
    out: dict[int, tuple[float, float, float]] = {}
    for log in sorted(Path(fold_dir).glob("training_log_*.txt")):
        epoch, vals = None, {}
        for line in log.read_text(errors="replace").splitlines():
            m = _LINE_RE.match(line)
            if not m:
                continue
            if m["epoch"] is not None:
                epoch, vals = int(m["epoch"]), {}
            elif epoch is None:
                continue
            elif m["tr"] is not None:
                vals["tr"] = float(m["tr"])
            elif m["va"] is not None:
                vals["va"] = float(m["va"])
            elif m["dice"] is not None:
                dice = _numbers(m["dice"])
                finite = [d for d in dice if not math.isnan(d)]
                vals["dice"] = float(np.mean(finite)) if finite else math.nan
            if {"tr", "va", "dice"} <= vals.keys():
                out[epoch] = (vals["tr"], vals["va"], vals["dice"])
    return out


def checkpoint_logging(fold_dir: str | Path) -> dict[int, tuple[float, float, float]]:
    """Per-epoch (train_loss, val_loss, pseudo Dice) from the checkpoint covering the most epochs.

    Returns an empty dict when the fold has no checkpoint. Raises NeurinoError for an unsafe/corrupt one.
    """
    best: dict | None = None
    for name in CHECKPOINT_FILES.values():
        p = Path(fold_dir) / name
        if p.is_file():
            log = load_checkpoint(p).get("logging") or {}
            n = min(len(log.get(k, [])) for k in ("train_losses", "val_losses", "mean_fg_dice"))
            if best is None or n > best["n"]:
                best = {"n": n, "log": log}
    if best is None:
        return {}
    log = best["log"]
    return {e: (float(log["train_losses"][e]), float(log["val_losses"][e]), float(log["mean_fg_dice"][e]))
            for e in range(best["n"])}


def ema(values: np.ndarray, alpha: float = 0.1) -> np.ndarray:
    """nnU-Net's moving average of the pseudo Dice: e_0 = v_0, e_t = (1-alpha) e_{t-1} + alpha v_t."""
    out = np.empty(len(values), dtype=float)
    for i, v in enumerate(values):  # one value per epoch: a few hundred at most
        out[i] = v if i == 0 else (1 - alpha) * out[i - 1] + alpha * v
    return out


def read_fold_curve(fold_dir: str | Path, label: str) -> Curve:
    """Curve of one fold folder, merging checkpoint logging and text logs (see module docstring).

    Only the leading run of consecutive epochs 0..E-1 is kept (a gap would mean lost log lines).
    """
    fold_dir = Path(fold_dir)
    merged = {e: (v, "log") for e, v in parse_training_logs(fold_dir).items()}
    merged.update({e: (v, "checkpoint") for e, v in checkpoint_logging(fold_dir).items()})
    n = 0
    while n in merged:
        n += 1
    vals = np.array([merged[e][0] for e in range(n)], dtype=float).reshape(n, 3)
    return Curve(label=label, fold_dir=fold_dir, epochs=np.arange(n), train_loss=vals[:, 0],
                 val_loss=vals[:, 1],
                 pseudo_dice=vals[:, 2], ema_pseudo_dice=ema(vals[:, 2]),
                 source=[merged[e][1] for e in range(n)])


def read_run_curves(run_dirs: list[str | Path], names: list[str] | None = None) -> list[Curve]:
    """Curves of every fold of every run.

    Parameters
    ----------
    run_dirs : fold folders (``…/TRAINER__PLANS__CONFIG/fold_N``) or trainer folders (each of its
        ``fold_*`` folders becomes its own curve).
    names : one legend name per run dir (default: the trainer name); `` fold N`` is appended when a run
        contributes several folds.

    Raises
    ------
    NeurinoError
        when a folder is not an nnU-Net run, ``names`` has the wrong length, or a fold has no finished epoch.
    """
    if names is not None and len(names) != len(run_dirs):
        raise NeurinoError(f"names gives {len(names)} name(s) for {len(run_dirs)} run folder(s)")
    curves = []
    for i, d in enumerate(run_dirs):
        run: RunFolder = resolve_run(d)
        base = names[i] if names is not None else run.trainer_name
        for fold_dir, fold in zip(run.fold_dirs, run.folds):
            label = base if len(run.fold_dirs) == 1 and names is not None else f"{base} fold {fold}"
            curve = read_fold_curve(fold_dir, label)
            if len(curve.epochs) == 0:
                raise NeurinoError(f"{fold_dir} has no finished epoch (no training_log_*.txt with epoch 0 "
                                   "losses and no checkpoint)")
            curves.append(curve)
    return curves


def write_curves_csv(curves: list[Curve], path: str | Path) -> None:
    """Write one row per (curve, epoch) with the columns :data:`CSV_COLUMNS`."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CSV_COLUMNS)
        for c in curves:
            fold = c.fold_dir.name[len("fold_"):]
            for i, e in enumerate(c.epochs):
                w.writerow([c.label, fold, int(e), repr(float(c.train_loss[i])), repr(float(c.val_loss[i])),
                            repr(float(c.pseudo_dice[i])), repr(float(c.ema_pseudo_dice[i])), c.source[i]])


def plot_curves(curves: list[Curve], path: str | Path, title: str | None = None) -> None:
    """Three panels sharing the epoch axis: train loss, validation loss, pseudo Dice (raw dotted, EMA solid).

    One colour per curve, legend on the first panel. Written with matplotlib's Agg backend (PNG/PDF/SVG by
    the file extension of ``path``).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), sharex=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, c in enumerate(curves):
        col = colours[i % len(colours)]
        marker = "o" if len(c.epochs) < 30 else None
        axes[0].plot(c.epochs, c.train_loss, color=col, marker=marker, ms=3, label=c.label)
        axes[1].plot(c.epochs, c.val_loss, color=col, marker=marker, ms=3, label=c.label)
        axes[2].plot(c.epochs, c.pseudo_dice, color=col, ls=":", alpha=0.7)
        axes[2].plot(c.epochs, c.ema_pseudo_dice, color=col, label=f"{c.label} (EMA)")
    for ax, ylabel in zip(axes, ("train loss", "validation loss", "pseudo Dice (dotted: per epoch)")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].legend(fontsize="small")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
