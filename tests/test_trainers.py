"""In-process tests of the NeurINO trainers (no subprocess): settings, patch fitting, deep supervision,
the TASL gradient scaling in ``train_step``, DINOv3 weights in the life cycle, fine-tuning, 2D refusal."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _trainer_helpers import ISO_STRIDES, grads_of_one_step, make_plans, setup_nnunet_dirs
from _trainer_helpers import make_trainer as _make_trainer
from nnunetv2.run.load_pretrained_weights import load_pretrained_weights
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunetv2_neurino.errors import NeurinoError
from nnunetv2_neurino.trainers import (
    nnUNetTrainerNeurINO,
    nnUNetTrainerNeurINO_noTASL,
    nnUNetTrainerNeurINO_scratch,
)
from nnunetv2_neurino.trainers.patch import fit_patch_to_network, patch_divisible_by

torch.set_num_threads(2)


@pytest.fixture
def nnunet_dirs(tmp_path, monkeypatch):
    return setup_nnunet_dirs(tmp_path, monkeypatch)


def make_trainer(cls, patch=(36, 36, 36), strides=ISO_STRIDES, configuration="3d_fullres"):
    """A trainer on the CPU for a minimal plan (36³ is not divisible by NeurINO's total stride 16)."""
    return _make_trainer(cls, patch, strides, configuration=configuration)


def tube_batch(trainer, seed=0):
    """A batch of 2 straight tubes, targets downsampled (nearest) to every deep-supervision scale."""
    patch = trainer.configuration_manager.patch_size
    rng = np.random.default_rng(seed)
    seg = np.zeros((2, 1, *patch), np.float32)
    seg[:, :, :, patch[1] // 2 - 2:patch[1] // 2 + 2, patch[2] // 2 - 2:patch[2] // 2 + 2] = 1
    data = torch.from_numpy(seg + rng.normal(0, 0.3, seg.shape).astype(np.float32))
    target = [torch.nn.functional.interpolate(torch.from_numpy(seg), scale_factor=tuple(s),
                                              mode="nearest-exact")
              for s in trainer._get_deep_supervision_scales()]
    return {"data": data, "target": target}


def test_patch_rounding_rules():
    assert patch_divisible_by([36, 40, 20], [16, 16, 16]) == [32, 32, 16]
    assert patch_divisible_by([8, 64, 64], [16, 16, 16]) == [16, 64, 64]  # at least one stride
    assert patch_divisible_by([20, 64, 48], [4, 16, 16]) == [20, 64, 48]

    # strides that depend on the patch: an axis shorter than 16 is not halved the 4th time
    def total(p):
        return [16 if v >= 16 else 8 for v in p]

    fitted = fit_patch_to_network([20, 50, 70], total)
    assert fitted == [16, 48, 64]
    assert all(v % s == 0 for v, s in zip(fitted, total(fitted)))


def test_recipe_settings_and_schedule(nnunet_dirs):
    trainer = make_trainer(nnUNetTrainerNeurINO_scratch)
    assert (trainer.initial_lr, trainer.weight_decay, trainer.num_epochs) == (1e-3, 3e-5, 110)
    trainer.initialize()
    opt = trainer.optimizer
    assert isinstance(opt, torch.optim.AdamW)
    assert opt.defaults["eps"] == 1e-4 and opt.defaults["weight_decay"] == 3e-5
    trainer.lr_scheduler.step(10)
    assert math.isclose(opt.param_groups[0]["lr"], 1e-3 * (1 - 10 / 110) ** 0.9, rel_tol=1e-9)
    weights = np.asarray(trainer.loss.loss.weight_factors)
    np.testing.assert_allclose(weights, np.array([16, 8, 4, 2, 1]) / 31)


def test_initialize_fits_patch_and_deep_supervision_matches_outputs(nnunet_dirs):
    trainer = make_trainer(nnUNetTrainerNeurINO_scratch, patch=(20, 36, 40))
    trainer.initialize()
    assert trainer.configuration_manager.patch_size == [16, 32, 32]
    assert trainer.plans_manager.plans["configurations"]["3d_fullres"]["patch_size"] == [16, 32, 32]
    patch = trainer.configuration_manager.patch_size
    with torch.no_grad():
        outputs = trainer.network(torch.zeros(1, 1, *patch))
    assert len(outputs) == 5
    for out, scale in zip(outputs, trainer._get_deep_supervision_scales()):
        assert list(out.shape[2:]) == [round(p * s) for p, s in zip(patch, scale)]
    trainer.set_deep_supervision_enabled(False)
    with torch.no_grad():
        single = trainer.network(torch.zeros(1, 1, *patch))
    assert torch.is_tensor(single) and list(single.shape) == [1, 2, *patch]


def test_anisotropic_plan_maps_onto_network_strides(nnunet_dirs):
    strides = [[1, 1, 1], [1, 2, 2], [1, 2, 2], [2, 2, 2], [2, 2, 2]]
    trainer = make_trainer(nnUNetTrainerNeurINO_scratch, patch=(10, 36, 32), strides=strides)
    trainer.initialize()
    # the plan's strides 1-4 multiply to (4, 16, 16) per axis: the patch is fitted to that, not to 16³
    assert trainer.configuration_manager.patch_size == [8, 32, 32]
    assert [list(s) for s in trainer._plain_network().output_strides] == [
        [1, 1, 1], [1, 2, 2], [1, 4, 4], [2, 8, 8], [4, 16, 16]]
    with torch.no_grad():
        outputs = trainer.network(torch.zeros(1, 1, 8, 32, 32))
    assert [list(o.shape[2:]) for o in outputs] == [[8, 32, 32], [8, 16, 16], [8, 8, 8], [4, 4, 4], [2, 2, 2]]


def test_train_step_scales_gradients_by_official_tasl(nnunet_dirs, monkeypatch):
    from nnunetv2_neurino.losses.tasl_official import tasl_official

    with_tasl = make_trainer(nnUNetTrainerNeurINO_scratch, patch=(32, 32, 32))
    without = make_trainer(nnUNetTrainerNeurINO_scratch, patch=(32, 32, 32))
    without.topology_loss = nnUNetTrainerNeurINO_noTASL.topology_loss  # "none"
    with_tasl.initialize()
    without.initialize()
    without.network.load_state_dict(with_tasl.network.state_dict())
    with_tasl.grad_clip = without.grad_clip = 1e12  # compare raw gradients, no clipping
    batch = tube_batch(with_tasl)

    g_tasl, loss_tasl = grads_of_one_step(with_tasl, batch, monkeypatch)
    g_plain, loss_plain = grads_of_one_step(without, batch, monkeypatch)

    with torch.no_grad():
        logits = with_tasl.network(batch["data"])[0]
    prob_fg = 1 - torch.softmax(logits, 1)[:, 0]
    tasl = float(tasl_official(prob_fg, batch["target"][0][:, 0] > 0, (1.0, 0.5, 0.5)).mean())
    factor = 1 + 0.1 * tasl
    assert math.isfinite(loss_plain) and math.isclose(loss_tasl, loss_plain * factor, rel_tol=1e-4)
    name = max(g_plain, key=lambda n: float(g_plain[n].abs().sum()))
    torch.testing.assert_close(g_tasl[name], g_plain[name] * factor, rtol=1e-4, atol=1e-10)


def test_train_step_updates_weights(nnunet_dirs):
    trainer = make_trainer(nnUNetTrainerNeurINO_scratch, patch=(32, 32, 32))
    trainer.initialize()
    before = [p.detach().clone() for p in trainer.network.parameters()]
    loss = float(trainer.train_step(tube_batch(trainer))["loss"])
    assert math.isfinite(loss) and loss > 0
    changed = sum(not torch.equal(b, p) for b, p in zip(before, trainer.network.parameters()))
    assert changed > len(before) // 2


@pytest.fixture
def base_on_train_start_calls(monkeypatch):
    """Replace nnU-Net's on_train_start (data loaders, file copies) by a recorder: only our check runs."""
    calls = []
    monkeypatch.setattr(nnUNetTrainer, "on_train_start", lambda self: calls.append(type(self).__name__))
    return calls


def test_missing_weights_stops_only_a_fresh_run(nnunet_dirs, base_on_train_start_calls, tmp_path):
    trainer = make_trainer(nnUNetTrainerNeurINO, patch=(32, 32, 32))
    with pytest.raises(NeurinoError) as err:
        trainer.on_train_start()
    message = str(err.value)
    assert "NEURINO_DINOV3_WEIGHTS" in message and "dinov3_convnext_tiny" in message
    assert "nnUNetTrainerNeurINO_scratch" in message
    assert base_on_train_start_calls == []

    checkpoint = tmp_path / "checkpoint.pth"
    trainer.save_checkpoint(str(checkpoint))
    resumed = make_trainer(nnUNetTrainerNeurINO, patch=(32, 32, 32))
    resumed.load_checkpoint(str(checkpoint))  # what --c and --val do
    resumed.on_train_start()
    assert base_on_train_start_calls == ["nnUNetTrainerNeurINO"]

    finetuned = make_trainer(nnUNetTrainerNeurINO, patch=(32, 32, 32))
    finetuned.initialize()  # what -pretrained_weights does: initialize, then load the file
    load_pretrained_weights(finetuned.network, str(checkpoint))
    finetuned.on_train_start()
    assert base_on_train_start_calls == ["nnUNetTrainerNeurINO"] * 2


def test_timm_weights_file_loads_through_env_var(nnunet_dirs, base_on_train_start_calls, tmp_path,
                                                  monkeypatch):
    timm = pytest.importorskip("timm")
    model2d = timm.create_model("convnext_tiny", pretrained=False, num_classes=0)
    path = tmp_path / "random_convnext_tiny_timm.pth"
    torch.save(model2d.state_dict(), path)
    monkeypatch.setenv("NEURINO_DINOV3_WEIGHTS_TINY", str(path))

    trainer = make_trainer(nnUNetTrainerNeurINO, patch=(32, 32, 32))
    trainer.initialize()
    stem2d = model2d.stem[0].weight.detach()  # (96, 3, 4, 4)
    stem3d = trainer._plain_network().encoder.state_dict()
    stem3d = next(v for k, v in stem3d.items() if k.endswith("weight") and v.ndim == 5)  # first conv = stem
    expected = stem2d.mean(1, keepdim=True)[:, :, None].expand(-1, -1, 4, -1, -1) / 4  # average inflation
    torch.testing.assert_close(stem3d, expected)
    trainer.on_train_start()  # weights present: a fresh run is fine
    assert base_on_train_start_calls == ["nnUNetTrainerNeurINO"]


def test_pretrained_weights_skip_seg_layers_for_other_label_sets(nnunet_dirs, tmp_path):
    plans = make_plans((32, 32, 32), ISO_STRIDES)
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    pm = PlansManager(plans)
    cm = pm.get_configuration("3d_fullres")
    net2 = nnUNetTrainerNeurINO_scratch.build_network_architecture(pm, cm, 1, 2, True)
    net3 = nnUNetTrainerNeurINO_scratch.build_network_architecture(pm, cm, 1, 3, True)
    different = {k for k, v in net2.state_dict().items() if v.shape != net3.state_dict()[k].shape}
    assert different and all(".seg_layers." in k for k in different)
    path = tmp_path / "source.pth"
    torch.save({"network_weights": net2.state_dict()}, path)
    heads_before = {k: v.clone() for k, v in net3.state_dict().items() if ".seg_layers." in k}
    load_pretrained_weights(net3, str(path))
    after = net3.state_dict()
    for key, value in net2.state_dict().items():
        if ".seg_layers." in key:
            torch.testing.assert_close(after[key], heads_before[key])
        else:
            torch.testing.assert_close(after[key], value)


def test_2d_configuration_is_refused(nnunet_dirs):
    with pytest.raises(NeurinoError, match="3d_fullres"):
        make_trainer(nnUNetTrainerNeurINO, patch=(64, 64), strides=[[1, 1], [2, 2]], configuration="2d")
