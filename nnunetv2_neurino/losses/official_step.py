"""The official TASL in a training step: a detached gradient scale computed beside the backward pass.

The official TASL has no gradient of its own: L = (Dice + CE)·(1 + β·TASL) with TASL detached, so
∇L = (1 + β·TASL)·∇(Dice + CE) (paper, suppl. §6). :class:`OfficialTASLStep` is the one implementation
used in training (``trainers/topology_loss.py``):

1. ``start(outputs, targets)`` right after the forward pass: the foreground probability of the
   full-resolution output (detached; ignore-label voxels set to 0) and the label's foreground (ignore label
   = background) are handed to :meth:`OfficialTASL.submit`, which computes TASL on the CPU in its
   background thread while
2. the caller runs ``backward`` on Dice + CE (and ``GradScaler.unscale_`` with AMP);
3. ``finish(parameters)`` waits for TASL, multiplies every gradient by 1 + β·TASL and returns the factor —
   call it before gradient clipping. The loss to report is then Dice + CE times that factor.

TASL is computed on the full-resolution output only and scales the whole deep-supervised Dice + CE.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

from nnunetv2_neurino.losses.foreground import foreground_probability, label_foreground, label_valid
from nnunetv2_neurino.losses.tasl_official import OfficialTASL, scale_gradients


def _full_resolution(x: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else x[0]


class OfficialTASLStep:
    """Start official TASL after the forward pass, scale the gradients after the backward pass.

    Parameters
    ----------
    official : the TASL settings (λ, β, …) and its background thread; default :class:`OfficialTASL`.
    ignore_label : the label manager's ignore label (background for TASL, masked out of the prediction).
    """

    def __init__(self, official: OfficialTASL | None = None, ignore_label: int | None = None) -> None:
        self.official = official if official is not None else OfficialTASL()
        self.ignore_label = ignore_label
        self._pending = None
        self.last_tasl: float | None = None

    def start(self, outputs: torch.Tensor | Sequence[torch.Tensor],
              targets: torch.Tensor | Sequence[torch.Tensor]) -> None:
        """Submit TASL of the full-resolution output (B, 2, Z, Y, X) against channel 0 of its target."""
        label = _full_resolution(targets)[:, 0]
        prob = foreground_probability(_full_resolution(outputs).detach())
        valid = label_valid(label, self.ignore_label)
        if valid is not None:
            prob = prob * valid
        if self._pending is not None:
            self._pending.result()  # never leave a stale computation behind
        self._pending = self.official.submit(prob, label_foreground(label, self.ignore_label))

    def finish(self, parameters: Iterable[torch.nn.Parameter]) -> float:
        """Wait for TASL, multiply the gradients by 1 + β·TASL and return that factor (1.0: none pending)."""
        if self._pending is None:
            return 1.0
        tasl = self.official.result(self._pending)
        self._pending = None
        self.last_tasl = float(tasl)
        factor = self.official.factor(tasl)
        scale_gradients(parameters, factor)
        return factor
