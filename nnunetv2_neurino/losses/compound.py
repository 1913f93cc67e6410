"""Deep-supervised Dice + CE with a topology term, for targets that carry extra integer channels.

``TopologyCompoundLoss(dcce, ds_weights, topology, ...)`` replaces nnU-Net's
``DeepSupervisionWrapper(DC_and_CE_loss)`` in a trainer's ``_build_loss``. ``forward(outputs, targets)``:

- ``outputs``: the network output — a list of logits over deep-supervision scales (full resolution
  first), each (B, 2, Z, Y, X), or one tensor (no deep supervision);
- ``targets``: the matching list (or tensor) from the data pipeline, each (B, 1 + N, Z, Y, X): channel 0
  the label, channels 1..N appended by :mod:`nnunetv2_neurino.losses.transforms`.

Dice + CE (``dcce``, e.g. nnU-Net's ``DC_and_CE_loss``) sees only channel 0 at **every** scale, weighted
by ``ds_weights`` (skipping zero weights, like nnU-Net's wrapper); then ``topology`` selects:

- ``"none"``: L = DCCE;
- ``"differentiable"``: L = DCCE + λn·L_node + λe·L_edge + λp·L_path
  (:class:`tasl_differentiable.DifferentiableTASL`, full resolution only) from the node/branch channels
  (``node_channel``, ``branch_channel``; default 1 and 2 = :class:`transforms.TopologyGraphTransform` alone);
- ``"skeleton_recall"``: L = DCCE + w·Σ_s ds_weight_s·L_SR,s at every scale from the tube channel
  (``tube_channel``, default 1 = :class:`transforms.SkeletonRecallTubeTransform` alone; the tube is
  downsampled with the label by nnU-Net's ``DownsampleSegForDSTransform``).

The official TASL is not a term of this loss: it scales the gradients of Dice + CE in the training step
(:class:`~nnunetv2_neurino.losses.official_step.OfficialTASLStep`).

When the full-resolution target lacks the needed extra channels (nnU-Net's validation pipeline does not
run the topology transforms), the differentiable / Skeleton Recall terms are **skipped** (L = DCCE) and
``last_terms['topology_skipped']`` is True. Topology terms are computed in float32 with autocast
disabled, on the device of the outputs (CPU or CUDA; the TASL path search runs on the CPU). Only
2-class (background + foreground) outputs are supported: other class counts raise
:class:`~nnunetv2_neurino.errors.NeurinoError`
(:func:`~nnunetv2_neurino.losses.foreground.foreground_probability`). Ignore-label voxels are
background in the extra channels (the pipeline transforms take the ignore label).

DDP: nnU-Net's DDP gives each rank an equal share of the batch, each rank computes the loss on its
share and DDP averages the gradients. Every topology term here is a per-sample value averaged over the
local batch, so the averaged gradient equals the single-process gradient of the whole batch. (Dice + CE
itself is nnU-Net's: with ``batch_dice=False`` it is a per-sample mean too.)
``last_terms`` holds floats of the last call: ``dcce``, ``topology``, ``total`` and the sub-terms.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from nnunetv2_neurino.errors import NeurinoError
from nnunetv2_neurino.losses.foreground import foreground_probability
from nnunetv2_neurino.losses.skeleton_recall import SkeletonRecallLoss
from nnunetv2_neurino.losses.tasl_differentiable import DifferentiableTASL

TOPOLOGY_MODES = ("none", "differentiable", "skeleton_recall")


def extra_channels_needed(topology: str) -> int:
    """Number of extra ``segmentation`` channels a mode reads (0, 1 for the tube, 2 for the graph)."""
    return {"differentiable": 2, "skeleton_recall": 1}.get(topology, 0)


class TopologyCompoundLoss(torch.nn.Module):
    """Deep-supervised Dice + CE on channel 0 plus a topology term (see the module docstring).

    Parameters
    ----------
    dcce : nn.Module
        Dice + CE loss called as ``dcce(logits, label)`` with label (B, 1, ...), e.g. nnU-Net's
        ``DC_and_CE_loss``.
    ds_weights : sequence of float, optional
        One weight per output, full resolution first; default 1 for every output.
    topology : one of ``TOPOLOGY_MODES``.
    differentiable, skeleton_recall : the term modules (defaults constructed).
    node_channel, branch_channel, tube_channel : int
        Target channel indices of the extra maps.
    """

    def __init__(
        self,
        dcce: torch.nn.Module,
        ds_weights: Sequence[float] | None = None,
        topology: str = "none",
        differentiable: DifferentiableTASL | None = None,
        skeleton_recall: SkeletonRecallLoss | None = None,
        node_channel: int = 1,
        branch_channel: int = 2,
        tube_channel: int = 1,
    ) -> None:
        super().__init__()
        if topology not in TOPOLOGY_MODES:
            raise NeurinoError(f"unknown topology loss {topology!r}; "
                               f"choose one of {', '.join(TOPOLOGY_MODES)}")
        self.dcce = dcce
        self.ds_weights = None if ds_weights is None else tuple(float(w) for w in ds_weights)
        self.topology = topology
        self.differentiable = differentiable if differentiable is not None else DifferentiableTASL()
        self.skeleton_recall = skeleton_recall if skeleton_recall is not None else SkeletonRecallLoss()
        self.node_channel, self.branch_channel, self.tube_channel = node_channel, branch_channel, tube_channel
        self.last_terms: dict[str, float | bool] = {}

    # -- forward ------------------------------------------------------------------------------------
    def forward(self, outputs: torch.Tensor | Sequence[torch.Tensor],
                targets: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        outs = [outputs] if isinstance(outputs, torch.Tensor) else list(outputs)
        tgts = [targets] if isinstance(targets, torch.Tensor) else list(targets)
        if len(tgts) < len(outs):
            raise NeurinoError(f"{len(outs)} network outputs but only {len(tgts)} targets")
        weights = self.ds_weights if self.ds_weights is not None else (1.0,) * len(outs)
        if len(outs) > 1 and len(weights) < len(outs):
            raise NeurinoError(f"{len(outs)} deep-supervision outputs but {len(weights)} weights")
        if len(outs) == 1:
            weights = (1.0,)
        dcce = sum(w * self.dcce(o, t[:, :1]) for w, o, t in zip(weights, outs, tgts) if w != 0)
        terms: dict[str, float | bool] = {"dcce": float(dcce.detach()), "topology_skipped": False}
        total = dcce
        full_out, full_tgt = outs[0], tgts[0]
        mode = self.topology
        if mode != "none":
            with torch.autocast(device_type=full_out.device.type, enabled=False):
                total = self._add_topology(mode, dcce, outs, tgts, weights, full_out, full_tgt, terms)
        terms["total"] = float(total.detach())
        self.last_terms = terms
        return total

    def _add_topology(self, mode, dcce, outs, tgts, weights, full_out, full_tgt, terms) -> torch.Tensor:
        need = max(self.node_channel, self.branch_channel) if mode == "differentiable" else self.tube_channel
        if full_tgt.shape[1] <= need:
            terms["topology_skipped"] = True
            return dcce
        if mode == "differentiable":
            term = self.differentiable(foreground_probability(full_out), full_tgt[:, self.node_channel],
                                       full_tgt[:, self.branch_channel])
            terms.update({f"tasl_{k}": v for k, v in self.differentiable.last_terms.items()})
            terms["topology"] = float(term.detach())
            return dcce + term
        # skeleton recall at every deep-supervision scale
        sr = sum(w * self.skeleton_recall(foreground_probability(o), t[:, self.tube_channel])
                 for w, o, t in zip(weights, outs, tgts) if w != 0)
        terms["topology"] = float(sr.detach())
        return dcce + self.skeleton_recall.weight * sr
