"""Training step with the official (gradient-rescaling) TASL computed beside the backward pass.

The official TASL has no gradient of its own: L = (Dice + CE)·(1 + β·TASL), so ∇L = (1 + β·TASL)·∇(Dice+CE)
(suppl. §6). The step starts the backward pass of Dice + CE at once, lets :class:`OfficialTASL` compute TASL
on the CPU in its background thread from the detached full-resolution prediction meanwhile, and multiplies
the gradients by (1 + β·TASL) after unscaling and before clipping. TASL is computed on the
full-resolution output only. On the CPU the thread also overlaps the backward pass;
the numbers equal a synchronous computation.
"""

from __future__ import annotations

import numpy as np
import torch
from nnunetv2.utilities.helpers import dummy_context
from torch import autocast


def foreground_probability(logits: torch.Tensor, regions: bool) -> torch.Tensor:
    """Foreground probability per voxel from logits of shape (B, C, Z, Y, X) → (B, Z, Y, X), fp32.

    Softmax outputs: 1 − p(background). Region (sigmoid) outputs: the largest region probability.
    """
    logits = logits.detach().float()
    if regions:
        return torch.sigmoid(logits).amax(1)
    return 1.0 - torch.softmax(logits, 1)[:, 0]


class TASLStepMixin:
    """``train_step`` = Dice+CE backward, official TASL gradient scaling, clipping, optimiser step.

    Class attributes: ``use_tasl``, ``tasl_lambdas`` (node, edge, path), ``tasl_beta``, ``grad_clip``.
    """

    use_tasl: bool = True
    tasl_lambdas: tuple[float, float, float] = (1.0, 0.5, 0.5)
    tasl_beta: float = 0.1
    grad_clip: float = 12.0

    def _official_tasl(self):
        if getattr(self, "_neurino_tasl", None) is None:
            from nnunetv2_neurino.losses.tasl import OfficialTASL

            node, edge, path = self.tasl_lambdas
            self._neurino_tasl = OfficialTASL(lambda_node=node, lambda_edge=edge, lambda_path=path,
                                              beta=self.tasl_beta)
        return self._neurino_tasl

    def _submit_tasl(self, output, target):
        """Start TASL of the full-resolution output in the background thread; returns a Future."""
        logits = output[0] if isinstance(output, (list, tuple)) else output
        seg = (target[0] if isinstance(target, (list, tuple)) else target)[:, 0]
        target_fg = seg > 0
        if self.label_manager.ignore_label is not None:
            target_fg &= seg != self.label_manager.ignore_label
        prob_fg = foreground_probability(logits, self.label_manager.has_regions)
        return self._official_tasl().submit(prob_fg, target_fg)

    def train_step(self, batch: dict) -> dict:
        data = batch["data"].to(self.device, non_blocking=True)
        target = batch["target"]
        if isinstance(target, list):
            target = [t.to(self.device, non_blocking=True) for t in target]
        else:
            target = target.to(self.device, non_blocking=True)

        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.device.type, enabled=True) if self.device.type == "cuda" else dummy_context():
            output = self.network(data)
            loss = self.loss(output, target)  # fp32 inside (Float32Loss)
        pending = self._submit_tasl(output, target) if self.use_tasl else None

        if self.grad_scaler is not None:
            self.grad_scaler.scale(loss).backward()
            self.grad_scaler.unscale_(self.optimizer)
        else:
            loss.backward()
        factor = 1.0
        if pending is not None:
            tasl = self._official_tasl()
            factor = tasl.factor(tasl.result(pending))
            grads = [p.grad for p in self.network.parameters() if p.grad is not None]
            torch._foreach_mul_(grads, factor)
        torch.nn.utils.clip_grad_norm_(self.network.parameters(), self.grad_clip)
        if self.grad_scaler is not None:
            self.grad_scaler.step(self.optimizer)
            self.grad_scaler.update()
        else:
            self.optimizer.step()
        return {"loss": np.asarray(loss.detach().float().cpu().numpy() * factor)}
