"""trainer_configs/*.json → trainer subclasses: the config's values reach the running trainer (in process).

The transforms are captured where nnU-Net's own ``get_dataloaders`` hands them to its data loader, so the
test sees exactly the pipeline training would use. A config with values unlike nnU-Net's defaults shows
that the values come from the file and not from nnU-Net.
"""

from __future__ import annotations

import copy
import json
import math
from importlib import resources

import pytest
import torch
from _trainer_helpers import DATASET_JSON, ISO_STRIDES, make_plans, setup_nnunet_dirs
from batchgeneratorsv2.transforms.intensity.brightness import MultiplicativeBrightnessTransform
from batchgeneratorsv2.transforms.intensity.contrast import ContrastTransform
from batchgeneratorsv2.transforms.intensity.gamma import GammaTransform
from batchgeneratorsv2.transforms.intensity.gaussian_noise import GaussianNoiseTransform
from batchgeneratorsv2.transforms.noise.gaussian_blur import GaussianBlurTransform
from batchgeneratorsv2.transforms.spatial.low_resolution import SimulateLowResolutionTransform
from batchgeneratorsv2.transforms.spatial.mirroring import MirrorTransform
from batchgeneratorsv2.transforms.spatial.spatial import SpatialTransform
from batchgeneratorsv2.transforms.utils.random import RandomTransform
from nnunetv2.training.data_augmentation.compute_initial_patch_size import get_patch_size

from nnunetv2_neurino.errors import NeurinoError
from nnunetv2_neurino.trainers.config_schema import config_names, load_trainer_config
from nnunetv2_neurino.trainers.configs import (
    TrainerConfigMixin,
    nnUNetTrainerNeurINO_paper32,
    nnUNetTrainerNeurINO_paper64,
)
from nnunetv2_neurino.trainers.nnUNetTrainerNeurINO import nnUNetTrainerNeurINO_scratch

torch.set_num_threads(2)


@pytest.fixture
def nnunet_dirs(tmp_path, monkeypatch):
    return setup_nnunet_dirs(tmp_path, monkeypatch)


def make_trainer(cls, patch=(48, 48, 48), normalization="ZScoreNormalization", batch_size=5):
    plans = make_plans(patch, ISO_STRIDES)
    config = plans["configurations"]["3d_fullres"]
    config["normalization_schemes"] = [normalization]
    config["batch_size"] = batch_size
    plans["continue_training"] = False
    return cls(plans=plans, configuration="3d_fullres", fold=0, dataset_json=copy.deepcopy(DATASET_JSON),
               device=torch.device("cpu"))


class _Captured(Exception):
    pass


def captured_training_pipeline(trainer, monkeypatch):
    """Run nnU-Net's ``get_dataloaders`` until it builds the training loader; return its arguments."""
    import nnunetv2.training.nnUNetTrainer.nnUNetTrainer as trainer_module

    seen = {}

    def fake_loader(dataset, batch_size, initial_patch_size, patch_size, label_manager, **kwargs):
        seen.update(batch_size=batch_size, initial_patch_size=list(initial_patch_size),
                    patch_size=list(patch_size), transforms=kwargs["transforms"])
        raise _Captured

    monkeypatch.setattr(trainer_module, "nnUNetDataLoader", fake_loader)
    monkeypatch.setattr(trainer, "get_tr_and_val_datasets", lambda: (None, None))
    with pytest.raises(_Captured):
        trainer.get_dataloaders()
    return seen


def by_kind(pipeline):
    """Map each transform kind of nnU-Net's pipeline to (apply probability, transform)."""
    kinds = {}
    for t in pipeline.transforms:
        if isinstance(t, SpatialTransform):
            kinds["spatial"] = (None, t)
        elif isinstance(t, MirrorTransform):
            kinds["mirror"] = (1.0, t)
        elif isinstance(t, RandomTransform):
            inner = t.transform
            name = {GaussianNoiseTransform: "noise", GaussianBlurTransform: "blur",
                    MultiplicativeBrightnessTransform: "brightness", ContrastTransform: "contrast",
                    SimulateLowResolutionTransform: "lowres"}.get(type(inner))
            if isinstance(inner, GammaTransform):
                name = "gamma_inverted" if inner.p_invert_image == 1 else "gamma"
            if name:
                kinds[name] = (t.apply_probability, inner)
    return kinds


CUSTOM = {
    "description": "values unlike nnU-Net's defaults",
    "patch_size": [32, 48, 32], "batch_size": 3, "normalization": "ZScoreNormalization",
    "settings": {"num_epochs": 7, "num_iterations_per_epoch": 11, "num_val_iterations_per_epoch": 3,
                 "initial_lr": 0.004, "weight_decay": 0.001, "adam_eps": 1e-6, "poly_exponent": 2.0,
                 "grad_clip": 3.0},
    "augmentation": {
        "rotation": {"p": 0.6, "max_degrees": 10.0}, "mirror": {"axes": [1, 2]},
        "scaling": {"p": 0.45, "range": [0.9, 1.1]},
        "elastic": {"p": 0.7, "scale": [0.05, 0.1], "magnitude": [0.0, 0.3]},
        "gamma": {"p": 0.55, "p_inverted": 0.05, "range": [0.8, 1.2]},
        "brightness": {"p": 0.35, "range": [0.9, 1.1]}, "contrast": {"p": 0.25, "range": [0.6, 1.6]},
        "gaussian_noise": {"p": 0.65, "variance": [0.0, 0.02]},
        "gaussian_blur": {"p": 0.0, "sigma": [0.5, 1.0]},
        "low_resolution": {"p": 0.0, "scale": [0.5, 1.0]}},
}


@pytest.fixture
def custom_trainer_class(tmp_path):
    path = tmp_path / "custom.json"
    path.write_text(json.dumps(CUSTOM))
    return type("nnUNetTrainerNeurINO_cfgTest", (TrainerConfigMixin, nnUNetTrainerNeurINO_scratch),
                {"config_name": str(path)})


def test_custom_config_reaches_the_running_trainer(nnunet_dirs, custom_trainer_class, monkeypatch):
    trainer = make_trainer(custom_trainer_class)
    s = CUSTOM["settings"]
    assert trainer.num_epochs == 7 and trainer.num_iterations_per_epoch == 11
    assert trainer.num_val_iterations_per_epoch == 3
    trainer.initialize()
    assert trainer.batch_size == 3
    assert trainer.configuration_manager.patch_size == [32, 48, 32]
    assert trainer.plans_manager.plans["configurations"]["3d_fullres"]["patch_size"] == [32, 48, 32]
    assert trainer.plans_manager.plans["configurations"]["3d_fullres"]["batch_size"] == 3
    opt = trainer.optimizer
    assert opt.defaults["lr"] == s["initial_lr"] and opt.defaults["eps"] == s["adam_eps"]
    assert opt.defaults["weight_decay"] == s["weight_decay"]
    trainer.lr_scheduler.step(3)
    assert math.isclose(opt.param_groups[0]["lr"], 0.004 * (1 - 3 / 7) ** 2.0, rel_tol=1e-9)
    assert trainer.grad_clip == 3.0

    seen = captured_training_pipeline(trainer, monkeypatch)
    assert seen["batch_size"] == 3 and seen["patch_size"] == [32, 48, 32]
    rot = math.radians(10.0)
    expected_initial = get_patch_size([32, 48, 32], (-rot, rot), (-rot, rot), (-rot, rot), (0.9, 1.1))
    assert seen["initial_patch_size"] == [int(v) for v in expected_initial]
    assert trainer.inference_allowed_mirroring_axes == (1, 2)
    k = by_kind(seen["transforms"])
    spatial = k["spatial"][1]
    assert spatial.p_rotation == 0.6 and spatial.rotation == pytest.approx((-rot, rot))
    assert spatial.p_scaling == 0.45 and tuple(spatial.scaling) == (0.9, 1.1)
    assert spatial.p_elastic_deform == 0.7 and tuple(spatial.elastic_deform_scale) == (0.05, 0.1)
    assert tuple(spatial.elastic_deform_magnitude) == (0.0, 0.3)
    assert tuple(k["mirror"][1].allowed_axes) == (1, 2)
    assert k["noise"][0] == 0.65 and tuple(k["noise"][1].noise_variance) == (0.0, 0.02)
    assert k["gamma"][0] == 0.55 and k["gamma_inverted"][0] == 0.05
    assert tuple(k["gamma"][1].gamma.contrast_range) == (0.8, 1.2)
    assert k["brightness"][0] == 0.35
    assert tuple(k["brightness"][1].multiplier_range.contrast_range) == (0.9, 1.1)
    assert k["contrast"][0] == 0.25 and tuple(k["contrast"][1].contrast_range.contrast_range) == (0.6, 1.6)
    assert k["blur"][0] == 0.0 and k["lowres"][0] == 0.0


def _shipped(name):
    return json.loads((resources.files("nnunetv2_neurino.trainer_configs") / f"{name}.json").read_text())


@pytest.mark.parametrize("cls,name", [(nnUNetTrainerNeurINO_paper32, "paper32"),
                                      (nnUNetTrainerNeurINO_paper64, "paper64")])
def test_paper_configs_are_the_papers_setup(nnunet_dirs, cls, name, monkeypatch):
    raw = _shipped(name)
    side = int(name[-2:])
    assert raw["patch_size"] == [side] * 3 and raw["normalization"] == "ZScoreNormalization"
    # the paper's recipe (supplement §9) and supplement §7's list of augmentations (all switched on)
    assert raw["settings"]["num_epochs"] == 110 and raw["settings"]["initial_lr"] == 1e-3
    assert raw["settings"]["weight_decay"] == 3e-5 and raw["settings"]["adam_eps"] == 1e-4
    for section in ("rotation", "scaling", "elastic", "gamma", "brightness", "contrast", "gaussian_noise"):
        assert raw["augmentation"][section]["p"] > 0, section
    assert raw["augmentation"]["mirror"]["axes"] == [0, 1, 2]

    trainer = make_trainer(cls, patch=(80, 80, 80))
    assert trainer.num_epochs == 110
    assert trainer.num_iterations_per_epoch == raw["settings"]["num_iterations_per_epoch"]
    trainer.initialize()
    assert trainer.batch_size == raw["batch_size"] == 2
    assert trainer.plans_manager.plans["configurations"]["3d_fullres"]["patch_size"] == [side] * 3
    seen = captured_training_pipeline(trainer, monkeypatch)
    k = by_kind(seen["transforms"])
    aug = raw["augmentation"]
    assert k["spatial"][1].p_elastic_deform == aug["elastic"]["p"]
    assert k["spatial"][1].rotation == pytest.approx((-math.radians(aug["rotation"]["max_degrees"]),
                                                      math.radians(aug["rotation"]["max_degrees"])))
    assert k["noise"][0] == aug["gaussian_noise"]["p"] and k["gamma"][0] == aug["gamma"]["p"]


def test_shipped_configs_are_listed():
    assert {"paper32", "paper64"} <= set(config_names())


@pytest.mark.parametrize("mutate,needle", [
    (lambda c: c.update(learning_rate=1e-3), "'learning_rate'"),
    (lambda c: c["settings"].update(lr=1e-3), "'lr'"),
    (lambda c: c["augmentation"]["gamma"].update(prob=0.3), "'prob'"),
    (lambda c: c["augmentation"].pop("elastic"), "'elastic'"),
    (lambda c: c["augmentation"]["rotation"].update(p=1.5), "augmentation.rotation.p"),
    (lambda c: c["augmentation"]["scaling"].update(range=[1.4, 0.7]), "augmentation.scaling.range"),
    (lambda c: c.update(patch_size=[32, 32.5, 32]), "'patch_size'"),
    (lambda c: c["settings"].update(num_epochs="110"), "settings.num_epochs"),
    (lambda c: c["augmentation"]["mirror"].update(axes=[0, 3]), "augmentation.mirror.axes"),
    (lambda c: c.update(normalization="zscore"), "'normalization'"),
])
def test_bad_configs_name_the_key_and_the_file(tmp_path, mutate, needle):
    cfg = copy.deepcopy(CUSTOM)
    mutate(cfg)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(cfg))
    with pytest.raises(NeurinoError) as err:
        load_trainer_config(path)
    assert needle in str(err.value) and str(path) in str(err.value)
    with pytest.raises(NeurinoError):  # also when the class is defined
        type("nnUNetTrainerNeurINO_bad", (TrainerConfigMixin, nnUNetTrainerNeurINO_scratch),
             {"config_name": str(path)})


def test_unknown_config_name_and_broken_json(tmp_path):
    with pytest.raises(NeurinoError, match="no trainer config 'paper128'.*paper32"):
        load_trainer_config("paper128")
    path = tmp_path / "broken.json"
    path.write_text('{"patch_size": [32, 32, 32],')
    with pytest.raises(NeurinoError, match="broken.json: not valid JSON"):
        load_trainer_config(path)


def test_plan_with_other_normalisation_is_refused(nnunet_dirs, custom_trainer_class):
    trainer = make_trainer(custom_trainer_class, normalization="CTNormalization")
    with pytest.raises(NeurinoError, match="ZScoreNormalization.*CTNormalization.*plan_and_preprocess"):
        trainer.initialize()
