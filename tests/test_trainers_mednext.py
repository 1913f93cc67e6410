"""In-process tests of the MedNeXt trainers: the network each builds (MedNeXt-L k3 GRN = the paper's 61.97 M),
size/kernel/GRN variants, recipe, patch fitting, anisotropic plans, deep supervision, bad settings, training
steps with Dice + CE, official TASL (gradient scaling) and differentiable TASL, fine-tuning heads."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _trainer_helpers import (
    ISO_STRIDES,
    grads_of_one_step,
    make_plans,
    make_trainer,
    setup_nnunet_dirs,
    topology_batch,
)
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

from nnunetv2_neurino.errors import NeurinoError
from nnunetv2_neurino.losses.tasl_official import tasl_official
from nnunetv2_neurino.networks.mednext_blocks import GRN, MedNeXtBlock
from nnunetv2_neurino.trainers import (
    nnUNetTrainerMedNeXt,
    nnUNetTrainerMedNeXt_B,
    nnUNetTrainerMedNeXt_B_k5,
    nnUNetTrainerMedNeXt_L_k5,
    nnUNetTrainerMedNeXt_M,
    nnUNetTrainerMedNeXt_M_k5,
    nnUNetTrainerMedNeXt_noGRN,
    nnUNetTrainerMedNeXt_S,
    nnUNetTrainerMedNeXt_S_k5,
    nnUNetTrainerMedNeXtTASL,
    nnUNetTrainerMedNeXtTASL_dTASL,
)

torch.set_num_threads(2)
PATCH = (16, 16, 16)


@pytest.fixture
def nnunet_dirs(tmp_path, monkeypatch):
    return setup_nnunet_dirs(tmp_path, monkeypatch)


# small-network stand-ins for the L trainers (same code path, CPU-friendly): only the size differs
class _MedNeXtTASL_S(nnUNetTrainerMedNeXtTASL):
    mednext_size = "S"


class _MedNeXtTASL_dTASL_S(nnUNetTrainerMedNeXtTASL_dTASL):
    mednext_size = "S"


def _build(cls, patch=(64, 64, 64), strides=ISO_STRIDES, num_classes=2):
    pm = PlansManager(make_plans(patch, strides))
    return cls.build_network_architecture(pm, pm.get_configuration("3d_fullres"), 1, num_classes, True)


def _n_params(net):
    return sum(p.numel() for p in net.parameters())


def _depthwise_kernels(net):
    return {m.kernel_size for m in net.modules()
            if isinstance(m, (torch.nn.Conv3d, torch.nn.ConvTranspose3d)) and m.groups > 1}


def test_default_trainer_is_the_papers_mednext_l_k3_grn():
    net = _build(nnUNetTrainerMedNeXt)
    # the paper's table 11: 61,971,147 (paper 61.97 M), tolerance ±0.01 %
    assert abs(_n_params(net) - 61_971_147) <= 1e-4 * 61_971_147
    assert _depthwise_kernels(net) == {(3, 3, 3)}
    assert any(isinstance(m, GRN) for m in net.modules())


@pytest.mark.parametrize("cls, size, kernel, grn", [
    (nnUNetTrainerMedNeXt_S, "S", 3, True), (nnUNetTrainerMedNeXt_B, "B", 3, True),
    (nnUNetTrainerMedNeXt_M, "M", 3, True), (nnUNetTrainerMedNeXt_S_k5, "S", 5, True),
    (nnUNetTrainerMedNeXt_B_k5, "B", 5, True), (nnUNetTrainerMedNeXt_M_k5, "M", 5, True),
    (nnUNetTrainerMedNeXt_L_k5, "L", 5, True), (nnUNetTrainerMedNeXt_noGRN, "L", 3, False),
], ids=lambda v: v.__name__ if isinstance(v, type) else str(v))
def test_variants_build_the_named_size_kernel_and_grn(cls, size, kernel, grn):
    assert (cls.mednext_size, cls.mednext_kernel, cls.mednext_grn) == (size, kernel, grn)
    net = _build(cls)
    assert _depthwise_kernels(net) == {(kernel,) * 3}
    assert any(isinstance(m, GRN) for m in net.modules()) == grn
    # plain blocks over the 9 levels: S, B [2]×9; M [3,4,4,4,4,4,4,4,3]; L [3,4,8,8,8,8,8,4,3]
    expected_blocks = {"S": 18, "B": 18, "M": 34, "L": 54}[size]
    assert sum(type(m) is MedNeXtBlock for m in net.modules()) == expected_blocks


def test_sizes_are_ordered_and_k5_adds_exactly_the_depthwise_weights():
    counts = {c.mednext_size: _n_params(_build(c)) for c in (nnUNetTrainerMedNeXt_S, nnUNetTrainerMedNeXt_B,
                                                             nnUNetTrainerMedNeXt_M, nnUNetTrainerMedNeXt)}
    assert counts["S"] < counts["B"] < counts["M"] < counts["L"]
    k3, k5 = _build(nnUNetTrainerMedNeXt_S), _build(nnUNetTrainerMedNeXt_S_k5)
    depthwise_channels = sum(m.weight.shape[0] * m.weight.shape[1] for m in k3.modules()
                             if isinstance(m, (torch.nn.Conv3d, torch.nn.ConvTranspose3d)) and m.groups > 1)
    assert _n_params(k5) - _n_params(k3) == depthwise_channels * (125 - 27)


def test_unknown_size_or_kernel_is_refused_when_the_trainer_is_created(nnunet_dirs):
    class BadSize(nnUNetTrainerMedNeXt):
        mednext_size = "XL"

    class BadKernel(nnUNetTrainerMedNeXt):
        mednext_kernel = 7

    with pytest.raises(NeurinoError, match="XL.*S, B, M, L"):
        make_trainer(BadSize, patch=PATCH)
    with pytest.raises(NeurinoError, match="7.*3, 5"):
        make_trainer(BadKernel, patch=PATCH)
    assert not (nnunet_dirs / "nnUNet_results").exists()


def test_2d_configuration_is_refused(nnunet_dirs):
    with pytest.raises(NeurinoError, match="3d_fullres"):
        make_trainer(nnUNetTrainerMedNeXt_S, patch=(64, 64), strides=[[1, 1], [2, 2]], configuration="2d")


def test_recipe_patch_fit_and_deep_supervision(nnunet_dirs):
    trainer = make_trainer(nnUNetTrainerMedNeXt_S, patch=(20, 36, 40))
    assert (trainer.initial_lr, trainer.weight_decay, trainer.num_epochs) == (1e-3, 3e-5, 110)
    trainer.initialize()
    assert trainer.configuration_manager.patch_size == [16, 32, 32]
    assert trainer.plans_manager.plans["configurations"]["3d_fullres"]["patch_size"] == [16, 32, 32]
    opt = trainer.optimizer
    assert isinstance(opt, torch.optim.AdamW) and opt.defaults["eps"] == 1e-4
    trainer.lr_scheduler.step(10)
    assert math.isclose(opt.param_groups[0]["lr"], 1e-3 * (1 - 10 / 110) ** 0.9, rel_tol=1e-9)
    np.testing.assert_allclose(trainer.loss.loss.weight_factors, np.array([16, 8, 4, 2, 1]) / 31)
    with torch.no_grad():
        outputs = trainer.network(torch.zeros(1, 1, 16, 32, 32))
    scales = trainer._get_deep_supervision_scales()
    assert [tuple(o.shape[2:]) for o in outputs] == [
        tuple(round(p * s) for p, s in zip((16, 32, 32), sc)) for sc in scales]
    assert [tuple(o.shape[2:]) for o in outputs] == [
        (16, 32, 32), (8, 16, 16), (4, 8, 8), (2, 4, 4), (1, 2, 2)]
    trainer.set_deep_supervision_enabled(False)
    with torch.no_grad():
        single = trainer.network(torch.zeros(1, 1, 16, 32, 32))
    assert torch.is_tensor(single) and tuple(single.shape) == (1, 2, 16, 32, 32)


def test_anisotropic_plan_keeps_its_per_axis_strides(nnunet_dirs):
    strides = [[1, 1, 1], [1, 2, 2], [1, 2, 2], [2, 2, 2], [2, 2, 2]]
    trainer = make_trainer(nnUNetTrainerMedNeXt_S, patch=(10, 36, 32), strides=strides)
    trainer.initialize()
    assert trainer.configuration_manager.patch_size == [8, 32, 32]  # divisible by (4, 16, 16)
    assert [list(s) for s in trainer._plain_network().output_strides] == [
        [1, 1, 1], [1, 2, 2], [1, 4, 4], [2, 8, 8], [4, 16, 16]]
    with torch.no_grad():
        outputs = trainer.network(torch.zeros(1, 1, 8, 32, 32))
    assert [list(o.shape[2:]) for o in outputs] == [[8, 32, 32], [8, 16, 16], [8, 8, 8], [4, 4, 4], [2, 2, 2]]


def test_train_step_updates_weights(nnunet_dirs):
    torch.manual_seed(0)
    trainer = make_trainer(nnUNetTrainerMedNeXt_S, patch=PATCH)
    trainer.initialize()
    assert trainer.topology_loss == "none"
    before = [p.detach().clone() for p in trainer.network.parameters()]
    loss = float(trainer.train_step(topology_batch(trainer))["loss"])
    assert math.isfinite(loss) and loss > 0
    changed = sum(not torch.equal(b, p) for b, p in zip(before, trainer.network.parameters()))
    assert changed > len(before) // 2


def test_mednext_tasl_scales_gradients_by_official_tasl(nnunet_dirs, monkeypatch):
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda *a, **k: None)  # compare raw gradients
    torch.manual_seed(0)
    with_tasl = make_trainer(_MedNeXtTASL_S, patch=PATCH)
    plain = make_trainer(nnUNetTrainerMedNeXt_S, patch=PATCH)
    with_tasl.initialize()
    plain.initialize()
    plain.network.load_state_dict(with_tasl.network.state_dict())
    batch = topology_batch(with_tasl)
    with torch.no_grad():
        logits = with_tasl.network(batch["data"])[0]
    prob_fg = 1 - torch.softmax(logits, 1)[:, 0]
    factor = 1 + 0.1 * float(tasl_official(prob_fg, batch["target"][0][:, 0] > 0, (1.0, 0.5, 0.5)).mean())
    g_tasl, loss_tasl = grads_of_one_step(with_tasl, batch, monkeypatch)
    g_plain, loss_plain = grads_of_one_step(plain, batch, monkeypatch)
    assert factor > 1.0 and math.isclose(loss_tasl, loss_plain * factor, rel_tol=1e-4)
    for name in g_plain:
        torch.testing.assert_close(g_tasl[name], g_plain[name] * factor, rtol=1e-4, atol=1e-9)


def test_mednext_dtasl_train_step(nnunet_dirs):
    torch.manual_seed(0)
    trainer = make_trainer(_MedNeXtTASL_dTASL_S, patch=PATCH)
    trainer.initialize()
    assert trainer.topology_loss == "differentiable" and trainer.loss.loss.topology == "differentiable"
    batch = topology_batch(trainer)
    assert [t.shape[1] for t in batch["target"]] == [3] * 5
    loss = float(trainer.train_step(batch)["loss"])
    terms = trainer.loss.loss.last_terms
    assert math.isfinite(loss) and terms["topology"] > 0
    assert math.isclose(loss, terms["dcce"] + terms["topology"], rel_tol=1e-5)


def test_heads_are_skipped_by_pretrained_weights_for_other_label_sets():
    net2 = _build(nnUNetTrainerMedNeXt_S, patch=PATCH, num_classes=2)
    net3 = _build(nnUNetTrainerMedNeXt_S, patch=PATCH, num_classes=3)
    different = {k for k, v in net2.state_dict().items() if v.shape != net3.state_dict()[k].shape}
    assert different and all(".seg_layers." in k for k in different)
