"""Short CPU trainers for ``neurino demo``: NeurINO (from scratch or pretrained) and stock nnU-Net.

The stock ``nnUNetTrainer`` trains 1000 epochs × 250 iterations and ``nnUNetv2_train`` cannot shorten that
from the command line, so the demo trains subclasses (class attributes, applied by
:class:`~.settings.ClassSettingsMixin`) with no mirroring (training or test time) and

* **the same fixed budget in iterations for both methods** (:data:`FULL_BUDGET`, :data:`QUICK_BUDGET`), so
  the comparison does not depend on how fast or busy the machine is;
* **a seed** (:class:`DemoRunMixin`, ``$NEURINO_TRAIN_SEED``, default 0) set before the network is
  built, so a rerun on the same machine repeats the weights' initialisation, the patch sampling and the
  augmentation (nnU-Net's own nondeterminism remains: augmentation worker processes when
  ``nnUNet_n_proc_DA`` > 0, cuDNN autotuning on a GPU);
* **a wall-clock safety stop** (:class:`DemoRunMixin`, ``$NEURINO_TRAIN_SAFETY_SECONDS``), generous, only
  so that a far too slow machine still finishes: training then ends at an epoch boundary as a finished one
  would (final checkpoint, nnU-Net's final validation) and ``training_budget.json`` in the fold folder says
  ``"stopped_early": true``; ``neurino demo`` marks that row "stopped early — not comparable".

``…_demo`` is the full demo (``neurino demo``), ``…_demoQuick`` the ``--quick`` one.
"""

from __future__ import annotations

import json
import os
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunetv2_neurino.errors import NeurinoError
from nnunetv2_neurino.io_utils import atomic_file
from nnunetv2_neurino.trainers.nnUNetTrainerNeurINO import nnUNetTrainerNeurINO, nnUNetTrainerNeurINO_scratch
from nnunetv2_neurino.trainers.settings import ClassSettingsMixin, NoMirroringMixin
from nnunetv2_neurino.trainers.validation_summary import TopologySummaryMixin

SAFETY_STOP_ENV = "NEURINO_TRAIN_SAFETY_SECONDS"
SEED_ENV = "NEURINO_TRAIN_SEED"
#: written into the fold folder when training ends (read back by ``neurino demo``)
BUDGET_FILE = "training_budget.json"


@dataclass(frozen=True)
class IterationBudget:
    """Training length of one demo run: ``epochs`` × ``iterations_per_epoch`` optimiser steps."""

    epochs: int
    iterations_per_epoch: int

    @property
    def iterations(self) -> int:
        return self.epochs * self.iterations_per_epoch


# Why these budgets (2 CPU cores, 32³ patch, batch 2). The old demo stopped each training at a wall-clock
# box instead, so the iterations each method got depended on the machine's speed and load, and on the
# methods' step costs: a NeurINO-T step (network + official TASL in its thread) costs ~2.3× a stock
# nnU-Net step on the CPU, so in the same box NeurINO got about half the steps (on a busy machine 2 epochs
# against 4). A budget in iterations costs NeurINO ~2.3× the training time instead, and the totals were
# measured with these very budgets: full, 30 × 10 = 300 iterations per model (both finished all 30
# epochs inside the old 240 s box on a quiet 2-core machine, training stages 268 s / 257 s with start-up
# and nnU-Net's final validation), 10.2 min in all against the 15 min target — remeasured on 2026-12-06 on
# a quiet machine with the budget as the only limit: 518 s / 202 s, 13.1 min in all; quick, 2 × 4 = 8
# iterations, 119–299 s in all against the 5 min target — there the fixed costs dominate (planning
# 33–74 s, two predictions ~40 s each, trainer start-up and validation), so even these few iterations
# leave no room for more on a slow quiet machine. Epochs of a few iterations keep the safety stop
# (checked between epochs) fine-grained.
FULL_BUDGET = IterationBudget(epochs=30, iterations_per_epoch=10)
QUICK_BUDGET = IterationBudget(epochs=2, iterations_per_epoch=4)


@dataclass(frozen=True)
class TrainingRecord:
    """What a demo training did (``training_budget.json`` in its fold folder).

    Attributes
    ----------
    planned_epochs, iterations_per_epoch, planned_iterations : the fixed budget.
    epochs_done, iterations_done : what ran (fewer only when the safety stop fired).
    stopped_early : the safety stop ended training before the budget was spent.
    safety_seconds : the stop's limit (None: none set); training_seconds : wall seconds of the loop.
    seed : the training seed (None: not seeded).
    """

    planned_epochs: int
    iterations_per_epoch: int
    planned_iterations: int
    epochs_done: int
    iterations_done: int
    stopped_early: bool
    safety_seconds: float | None
    training_seconds: float
    seed: int | None

    @classmethod
    def read(cls, fold_dir: str | os.PathLike) -> TrainingRecord:
        """The record in ``fold_dir`` (:class:`NeurinoError` naming the file when absent or invalid)."""
        path = Path(fold_dir) / BUDGET_FILE
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError) as e:
            raise NeurinoError(f"cannot read the training record {path}: {e}") from None


def _env_number(name: str, kind: type) -> float | int | None:
    """``$name`` as a ``kind`` (int: >= 0, float: > 0), None when unset or empty."""
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    try:
        number = kind(value)
    except ValueError:
        what = "a whole number" if kind is int else "a number of seconds"
        raise NeurinoError(f"{name} must be {what}, got {value!r}") from None
    if number < 0 or (kind is float and number == 0):
        raise NeurinoError(f"{name} must be {'> 0' if kind is float else '>= 0'}, got {value!r}")
    return number


class _TimeIsUp(Exception):
    pass


class DemoRunMixin:
    """A reproducible, bounded demo run: seeded training, a wall-clock safety stop, a training record.

    - **Seed**: ``$NEURINO_TRAIN_SEED`` (default :attr:`training_seed`; None: not seeded) seeds Python's,
      NumPy's and torch's generators in ``initialize`` before nnU-Net builds the network. That covers the
      weights' initialisation and, since the data loaders are made afterwards in ``on_train_start`` and run
      in this process when ``nnUNet_n_proc_DA=0``, the patch sampling and augmentation too.
    - **Safety stop**: once ``$NEURINO_TRAIN_SAFETY_SECONDS`` (wall clock) have passed, training stops at
      the start of the next epoch (after the first); the run then ends exactly as a finished one
      (``on_train_end``: final checkpoint, data loaders shut down), so nnU-Net's final validation and
      prediction work unchanged. Without the variable there is no limit.
    - **Record**: either way :data:`BUDGET_FILE` records the budget, what ran, whether the stop fired and
      the seed.
    """

    training_seed: int | None = 0

    def _seed(self) -> int | None:
        seed = _env_number(SEED_ENV, int)
        return self.training_seed if seed is None else int(seed)

    def initialize(self):
        seed = self._seed()
        if seed is not None:
            random.seed(seed)
            np.random.seed(seed)
            torch.manual_seed(seed)  # also seeds every CUDA device
        super().initialize()

    def on_train_start(self):
        self._safety_seconds = _env_number(SAFETY_STOP_ENV, float)
        self._train_start = time.monotonic()
        super().on_train_start()

    def on_epoch_start(self):
        limit = getattr(self, "_safety_seconds", None)
        if limit is not None and self.current_epoch > 0 and time.monotonic() - self._train_start > limit:
            raise _TimeIsUp
        super().on_epoch_start()

    def run_training(self):
        stopped = False
        try:
            super().run_training()
        except _TimeIsUp:
            stopped = True
            self.print_to_log_file(f"Safety stop of {self._safety_seconds:.0f} s ({SAFETY_STOP_ENV}) "
                                   f"reached: stopping after {self.current_epoch} of {self.num_epochs} "
                                   f"epochs (not comparable with a run that trained its full budget)",
                                   also_print_to_console=True)
            self.on_train_end()
        self._write_training_record(stopped)

    def _write_training_record(self, stopped: bool) -> None:
        if getattr(self, "local_rank", 0) != 0:
            return
        record = TrainingRecord(
            planned_epochs=int(self.num_epochs), iterations_per_epoch=int(self.num_iterations_per_epoch),
            planned_iterations=int(self.num_epochs * self.num_iterations_per_epoch),
            epochs_done=int(self.current_epoch),
            iterations_done=int(self.current_epoch * self.num_iterations_per_epoch), stopped_early=stopped,
            safety_seconds=self._safety_seconds,
            training_seconds=round(time.monotonic() - self._train_start, 2), seed=self._seed())
        with atomic_file(Path(self.output_folder) / BUDGET_FILE) as tmp:
            tmp.write_text(json.dumps(asdict(record), indent=2))


class _DemoSettings:
    num_epochs = FULL_BUDGET.epochs
    num_iterations_per_epoch = FULL_BUDGET.iterations_per_epoch
    num_val_iterations_per_epoch = 1
    save_every = 1000  # only the final checkpoint (saves time)


class _QuickSettings:
    num_epochs = QUICK_BUDGET.epochs
    num_iterations_per_epoch = QUICK_BUDGET.iterations_per_epoch
    num_val_iterations_per_epoch = 1
    save_every = 1000


class nnUNetTrainerNeurINO_demo(_DemoSettings, DemoRunMixin, NoMirroringMixin, nnUNetTrainerNeurINO_scratch):
    """NeurINO-T from scratch (no DINOv3 file), Dice + CE + TASL, :data:`FULL_BUDGET`."""


class nnUNetTrainerNeurINO_demoQuick(_QuickSettings, nnUNetTrainerNeurINO_demo):
    """``neurino demo --quick``: :data:`QUICK_BUDGET`."""


class nnUNetTrainerNeurINO_demoPretrained(_DemoSettings, DemoRunMixin, NoMirroringMixin,
                                          nnUNetTrainerNeurINO):
    """NeurINO-T initialised from the DINOv3 file (``NEURINO_DINOV3_WEIGHTS``), demo length."""


class nnUNetTrainerNeurINO_demoPretrainedQuick(_QuickSettings, nnUNetTrainerNeurINO_demoPretrained):
    """Pretrained NeurINO-T, ``--quick`` length."""


class nnUNetTrainer_demo(_DemoSettings, DemoRunMixin, TopologySummaryMixin, NoMirroringMixin,
                         ClassSettingsMixin, nnUNetTrainer):
    """Stock nnU-Net (its planned U-Net, SGD, Dice + CE), demo length; also writes the topology summary."""


class nnUNetTrainer_demoQuick(_QuickSettings, nnUNetTrainer_demo):
    """Stock nnU-Net, ``--quick`` length."""
