"""TopologyCompoundLoss against nnU-Net's own DeepSupervisionWrapper(DC_and_CE_loss); the official TASL
training step (gradient scale beside Dice + CE); SR and clDice."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss

from nnunetv2_neurino.errors import NeurinoError
from nnunetv2_neurino.losses.cldice import ClDiceLoss, soft_skeleton
from nnunetv2_neurino.losses.compound import TopologyCompoundLoss, extra_channels_needed
from nnunetv2_neurino.losses.official_step import OfficialTASLStep
from nnunetv2_neurino.losses.skeleton_recall import SkeletonRecallLoss, skeleton_recall_loss
from nnunetv2_neurino.losses.skeleton_utils import skeleton_tube
from nnunetv2_neurino.losses.tasl_differentiable import DifferentiableTASL
from nnunetv2_neurino.losses.tasl_official import tasl_official
from nnunetv2_neurino.losses.transforms import graph_channels
from nnunetv2_neurino.testing.phantoms import y_tube

SHAPE = (24, 24, 24)
WEIGHTS = (4 / 7, 2 / 7, 1 / 7)


def _dcce(ignore_label=None):
    return DC_and_CE_loss({"batch_dice": False, "smooth": 1e-5, "do_bg": False, "ddp": False}, {},
                          weight_ce=1, weight_dice=1, ignore_label=ignore_label,
                          dice_class=MemoryEfficientSoftDiceLoss)


def _down(x: torch.Tensor, f: int) -> torch.Tensor:
    return F.interpolate(x.float(), scale_factor=1 / f, mode="nearest-exact").to(x.dtype)


@pytest.fixture(scope="module")
def batch():
    torch.manual_seed(0)
    labels = np.stack([y_tube(SHAPE, 1.5), np.roll(y_tube(SHAPE, 1.5), 3, axis=2)])
    extra = []
    for lab in labels:
        n, b = graph_channels(lab)
        extra.append(np.stack([lab, skeleton_tube(lab), n, b]))
    full = torch.from_numpy(np.stack(extra).astype(np.int16))  # (B, 4, Z, Y, X): label, tube, nodes, branches
    targets = [full, _down(full, 2), _down(full, 4)]
    logits = [(0.5 * torch.randn((2, 2, *[s // f for s in SHAPE]))).requires_grad_() for f in (1, 2, 4)]
    with torch.no_grad():
        logits[0][:, 1] += 3.0 * (full[:, 0] > 0) - 1.5
    return logits, targets


def _reference_dcce(logits, targets):
    return DeepSupervisionWrapper(_dcce(), WEIGHTS)(logits, [t[:, :1] for t in targets])


def test_none_mode_equals_nnunet_wrapper_on_sliced_targets(batch):
    logits, targets = batch
    loss = TopologyCompoundLoss(_dcce(), WEIGHTS)
    assert torch.allclose(loss(logits, targets), _reference_dcce(logits, targets))
    single = loss(logits[0], targets[0])  # no deep supervision: one tensor each
    assert torch.allclose(single, _dcce()(logits[0], targets[0][:, :1]))


def test_official_step_scales_dcce(batch):
    logits, targets = batch
    step = OfficialTASLStep()
    step.start(logits, targets)
    factor = step.finish([])
    prob = torch.softmax(logits[0].detach(), 1)[:, 1]
    tasl = tasl_official(prob, targets[0][:, 0] > 0).mean().item()
    assert tasl > 0 and step.last_tasl == pytest.approx(tasl, rel=1e-5)
    value = _reference_dcce(logits, targets).item() * factor  # the loss the training step reports
    assert value == pytest.approx(_reference_dcce(logits, targets).item() * (1 + 0.1 * tasl), rel=1e-5)


def test_official_step_gives_the_gradients_of_the_scaled_loss(batch):
    logits, targets = batch
    prob = torch.softmax(logits[0].detach(), 1)[:, 1]
    tasl = tasl_official(prob, targets[0][:, 0] > 0).mean().item()
    expected_total = _reference_dcce(logits, targets) * (1 + 0.1 * tasl)  # L = DCCE·(1 + β·TASL)
    expected_total.backward()
    expected = [x.grad.clone() for x in logits]
    for x in logits:
        x.grad = None
    step = OfficialTASLStep()
    step.start(logits, targets)
    dcce = _reference_dcce(logits, targets)
    dcce.backward()
    factor = step.finish(logits)
    assert factor == pytest.approx(1 + 0.1 * tasl, rel=1e-6)
    assert dcce.item() * factor == pytest.approx(expected_total.item(), rel=1e-5)
    for x, e in zip(logits, expected):
        torch.testing.assert_close(x.grad, e)
        x.grad = None
    assert step.finish(logits) == 1.0  # nothing pending


def test_differentiable_mode_and_skip_without_channels(batch):
    logits, targets = batch
    graph_targets = [t[:, [0, 2, 3]] for t in targets]  # TopologyGraphTransform alone: label, nodes, branches
    loss = TopologyCompoundLoss(_dcce(), WEIGHTS, topology="differentiable",
                                differentiable=DifferentiableTASL(seed=3))
    value = loss(logits, graph_targets)
    prob = torch.softmax(logits[0], 1)[:, 1]
    expected = DifferentiableTASL(seed=3)(prob, graph_targets[0][:, 1], graph_targets[0][:, 2])
    assert expected.item() > 0
    assert value.item() == pytest.approx(_reference_dcce(logits, targets).item() + expected.item(), rel=1e-5)
    # validation pipeline: label only → topology term skipped, no crash
    skipped = loss(logits, [t[:, :1] for t in targets])
    assert loss.last_terms["topology_skipped"] is True
    assert skipped.item() == pytest.approx(_reference_dcce(logits, targets).item(), rel=1e-6)


def test_skeleton_recall_mode_at_every_scale(batch):
    logits, targets = batch
    sr_targets = [t[:, :2] for t in targets]
    loss = TopologyCompoundLoss(_dcce(), WEIGHTS, topology="skeleton_recall")
    value = loss(logits, sr_targets)
    sr = sum(w * skeleton_recall_loss(torch.softmax(o, 1)[:, 1], t[:, 1]).mean()
             for w, o, t in zip(WEIGHTS, logits, sr_targets))
    assert value.item() == pytest.approx(_reference_dcce(logits, targets).item() + sr.item(), rel=1e-5)
    loss(logits, [t[:, :1] for t in targets])
    assert loss.last_terms["topology_skipped"] is True


def test_errors_multiclass_and_unknown_mode(batch):
    logits, targets = batch
    three = [torch.randn(2, 3, *x.shape[2:]) for x in logits]
    with pytest.raises(NeurinoError, match="2-class"):
        OfficialTASLStep().start(three, targets)
    with pytest.raises(NeurinoError, match="2-class"):
        TopologyCompoundLoss(_dcce(), WEIGHTS, topology="skeleton_recall")(three, [t[:, :2] for t in targets])
    for removed in ("tasl", "official", "cldice"):  # the official TASL is a gradient scale, not a term
        with pytest.raises(NeurinoError, match="unknown topology"):
            TopologyCompoundLoss(_dcce(), topology=removed)
    assert [extra_channels_needed(m) for m in ("none", "official", "differentiable", "skeleton_recall")] == [
        0, 0, 2, 1]


def test_ignore_label_is_background_for_topology(batch):
    logits, targets = batch
    t = [x[:, :1].clone() for x in targets]
    t[0][:, 0, :4] = 2  # ignore label in the first slices
    step = OfficialTASLStep(ignore_label=2)
    step.start(logits, t)
    step.finish([])
    prob = torch.softmax(logits[0].detach(), 1)[:, 1]
    prob[:, :4] = 0
    expected = tasl_official(prob, t[0][:, 0] == 1).mean().item()
    assert step.last_tasl == pytest.approx(expected, rel=1e-5)


def test_skeleton_recall_values():
    tube = torch.zeros((3, 4, 4, 4))
    tube[:2, 1:3, 1:3, 1:3] = 1  # sample 2 has no tube
    p = torch.full((3, 4, 4, 4), 0.5, requires_grad=True)
    per = skeleton_recall_loss(p, tube)
    assert per[0].item() == pytest.approx(0.5, abs=1e-6) and per[2].item() == 0.0
    assert skeleton_recall_loss(tube.clone(), tube)[0].item() == pytest.approx(0.0, abs=1e-6)
    SkeletonRecallLoss()(p, tube).backward()
    # d/dp of mean_b(1 − ΣTp/ΣT) = −T/(B·ΣT)
    torch.testing.assert_close(p.grad[0], -tube[0] / (3 * 8), rtol=1e-4, atol=1e-7)


def test_cldice_values_and_soft_skeleton():
    label = torch.zeros((1, 9, 9, 30))
    label[0, 2:7, 2:7, 3:27] = 1  # 5x5 bar
    skel = soft_skeleton(label[:, None], iterations=3)[0, 0]
    assert skel.max() <= 1 and (skel * (1 - label[0])).sum() == 0  # inside the bar
    assert skel[4, 4, 10:20].min() > 0.99 and skel.sum() < 0.3 * label.sum()  # thin, on the centre line
    loss = ClDiceLoss()
    assert loss(label, label).item() == pytest.approx(0.0, abs=1e-6)
    assert loss(torch.zeros_like(label), label).item() > 0.99
    half = label.clone()
    half[0, :, :, 15:] = 0
    assert 0.2 < loss(half, label).item() < 0.5  # half the centre line missed: Tsens ≈ 0.5 → 1/3
