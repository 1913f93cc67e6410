"""In-process tests of the topology trainers: stock nnU-Net + official TASL, the ``_dTASL`` variants and
Skeleton Recall — their data pipeline (extra ``segmentation`` channels aligned with the augmented label at
every deep-supervision scale), their loss (Dice + CE on the label channel + the topology term, against
independent computations), gradients, validation, and the refusal of non-binary label sets."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _trainer_helpers import (
    DATASET,
    DATASET_JSON,
    WEIGHT_VARS,
    grads_of_one_step,
    make_plans,
    make_trainer,
    setup_nnunet_dirs,
    topology_batch,
    trainer_device,
    y_tube_labels,
)
from batchgeneratorsv2.transforms.spatial.spatial import SpatialTransform
from batchgeneratorsv2.transforms.utils.deep_supervision_downsampling import DownsampleSegForDSTransform
from batchgeneratorsv2.transforms.utils.remove_label import RemoveLabelTansform
from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetNumpy
from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunetv2_neurino.errors import NeurinoError
from nnunetv2_neurino.losses.skeleton_utils import skeleton_tube
from nnunetv2_neurino.losses.tasl_differentiable import DifferentiableTASL
from nnunetv2_neurino.losses.tasl_official import tasl_official
from nnunetv2_neurino.losses.transforms import (
    SkeletonRecallTubeTransform,
    TopologyGraphTransform,
    graph_channels,
)
from nnunetv2_neurino.trainers import (
    nnUNetTrainerMedNeXtTASL,
    nnUNetTrainerMedNeXtTASL_dTASL,
    nnUNetTrainerNeurINO,
    nnUNetTrainerNeurINO_dTASL,
    nnUNetTrainerNeurINO_noTASL,
    nnUNetTrainerNeurINO_S_dTASL,
    nnUNetTrainerNeurINO_scratch_dTASL,
    nnUNetTrainerNeurINO_SkeletonRecall,
    nnUNetTrainerSkeletonRecall,
    nnUNetTrainerTASL,
    nnUNetTrainerTASL_dTASL,
)

torch.set_num_threads(2)
STOCK_PATCH = (16, 16, 16)
STOCK_STRIDES = [[1, 1, 1], [2, 2, 2], [2, 2, 2], [2, 2, 2]]  # 4 stages: 3 outputs
NNUNET_WEIGHTS = (2 / 3, 1 / 3, 0.0)  # nnU-Net: 1, ½, ¼ with the lowest set to 0, normalised


@pytest.fixture
def nnunet_dirs(tmp_path, monkeypatch):
    return setup_nnunet_dirs(tmp_path, monkeypatch)


def stock(cls, **kw):
    torch.manual_seed(0)
    trainer = make_trainer(cls, patch=STOCK_PATCH, strides=STOCK_STRIDES, **kw)
    trainer.initialize()
    return trainer


def _dcce():
    return DC_and_CE_loss({"batch_dice": False, "smooth": 1e-5, "do_bg": False, "ddp": False}, {},
                          weight_ce=1, weight_dice=1, dice_class=MemoryEfficientSoftDiceLoss)


def _reference_dcce(outputs, targets, weights):
    dcce = _dcce()
    return sum(w * dcce(o.float(), t[:, :1]) for w, o, t in zip(weights, outputs, targets) if w)


# ------------------------------------------------------------------------------------------------------
# bad input
# ------------------------------------------------------------------------------------------------------
TOPOLOGY_TRAINERS = [nnUNetTrainerNeurINO, nnUNetTrainerTASL, nnUNetTrainerTASL_dTASL,
                     nnUNetTrainerSkeletonRecall,
                     nnUNetTrainerMedNeXtTASL, nnUNetTrainerMedNeXtTASL_dTASL, nnUNetTrainerNeurINO_dTASL,
                     nnUNetTrainerNeurINO_SkeletonRecall]


@pytest.mark.parametrize("cls", TOPOLOGY_TRAINERS, ids=lambda c: c.__name__)
def test_non_binary_label_sets_are_refused_before_training(cls, nnunet_dirs):
    three = dict(DATASET_JSON, labels={"background": 0, "axon": 1, "soma": 2})
    with pytest.raises(NeurinoError) as err:
        make_trainer(cls, patch=(32, 32, 32), dataset_json=three)
    message = str(err.value)
    assert cls.__name__ in message and "'axon': 1" in message and "'soma': 2" in message
    regions = dict(DATASET_JSON, labels={"background": 0, "neurite": [1, 2], "soma": 2},
                   regions_class_order=[1, 2])
    with pytest.raises(NeurinoError, match="regions"):
        make_trainer(cls, patch=(32, 32, 32), dataset_json=regions)
    assert not (nnunet_dirs / "nnUNet_results").exists()  # nothing was created
    # background + one class + an ignore label is binary
    ignore = dict(DATASET_JSON, labels={"background": 0, "neurite": 1, "ignore": 2})
    trainer = make_trainer(cls, patch=(32, 32, 32), dataset_json=ignore)
    assert trainer.label_manager.ignore_label == 2


BAD_SETTINGS = [
    (nnUNetTrainerTASL, {"topology_loss": "tasl"},
     r"topology_loss = 'tasl': choose one of 'none', 'official'"),
    (nnUNetTrainerTASL, {"topology_loss": None}, r"topology_loss = None: choose one of"),
    (nnUNetTrainerTASL, {"dtasl_lambdas": (2.0, 0.5, 0.5)},
     r"dtasl_lambdas = \(2.0, 0.5, 0.5\) configures the differentiable loss, but "
     r".*topology_loss = 'official'"),
    (nnUNetTrainerTASL_dTASL, {"official_tasl_beta": 0.2},
     r"official_tasl_beta = 0.2 configures the official"),
    (nnUNetTrainerNeurINO_noTASL, {"skeleton_recall_weight": 2.0}, r"configures the skeleton_recall loss"),
    (nnUNetTrainerTASL_dTASL, {"dtasl_lambdas": (1.0, -0.5, 0.5)},
     r"dtasl_lambdas must be a finite number >= 0"),
    (nnUNetTrainerTASL, {"official_tasl_lambdas": (1.0, 0.5)}, r"official_tasl_lambdas must be \(λ_node"),
    (nnUNetTrainerTASL_dTASL, {"dtasl_pairs": 0}, r"dtasl_pairs must be an integer >= 1"),
]


@pytest.mark.parametrize("base, attrs, match", BAD_SETTINGS, ids=[str(a) for _, a, _ in BAD_SETTINGS])
def test_invalid_topology_settings_are_refused_before_anything_is_written(base, attrs, match, nnunet_dirs):
    cls = type(base.__name__ + "_bad", (base,), attrs)
    with pytest.raises(NeurinoError, match=match) as err:
        make_trainer(cls, patch=(32, 32, 32))
    assert cls.__name__ in str(err.value)
    assert not (nnunet_dirs / "nnUNet_results").exists()  # nothing was created


def test_a_trainer_must_name_its_topology_loss(nnunet_dirs):
    from nnunetv2_neurino.trainers.topology_loss import TopologyLossMixin

    forgot = type("nnUNetTrainerForgot", (TopologyLossMixin, nnUNetTrainer), {})  # no silent default loss
    with pytest.raises(NeurinoError, match="nnUNetTrainerForgot.topology_loss = None"):
        make_trainer(forgot, patch=STOCK_PATCH, strides=STOCK_STRIDES)


def test_settings_of_the_selected_loss_are_used(nnunet_dirs):
    cls = type("nnUNetTrainerTASL_beta", (nnUNetTrainerTASL,),
               {"official_tasl_beta": 0.2, "official_tasl_lambdas": (1.0, 0.0, 0.25)})
    official = make_trainer(cls, patch=STOCK_PATCH, strides=STOCK_STRIDES)._official_tasl_step().official
    assert official.beta == 0.2 and official.lambdas == (1.0, 0.0, 0.25)
    assert official.factor(2.0) == pytest.approx(1.4)


def test_trainer_without_topology_loss_takes_any_label_set(nnunet_dirs):
    three = dict(DATASET_JSON, labels={"background": 0, "axon": 1, "soma": 2})
    trainer = make_trainer(nnUNetTrainerNeurINO_noTASL, patch=(32, 32, 32), dataset_json=three)
    assert trainer.label_manager.num_segmentation_heads == 3


# ------------------------------------------------------------------------------------------------------
# data pipeline
# ------------------------------------------------------------------------------------------------------
def _training_pipeline(trainer):
    configure = trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size
    rotation, dummy_2d, initial_patch, mirror_axes = configure()
    lm = trainer.label_manager
    pipeline = trainer.get_training_transforms(
        trainer.configuration_manager.patch_size, rotation, trainer._get_deep_supervision_scales(),
        mirror_axes,
        dummy_2d, use_mask_for_norm=trainer.configuration_manager.use_mask_for_norm,
        is_cascaded=trainer.is_cascaded, foreground_labels=lm.foreground_labels, regions=None,
        ignore_label=lm.ignore_label)
    return pipeline, initial_patch


@pytest.mark.parametrize("cls, expected", [(nnUNetTrainerTASL_dTASL, TopologyGraphTransform),
                                           (nnUNetTrainerSkeletonRecall, SkeletonRecallTubeTransform)],
                         ids=["dTASL", "SkeletonRecall"])
def test_training_pipeline_appends_channels_aligned_at_every_scale(cls, expected, nnunet_dirs):
    trainer = make_trainer(cls, patch=(32, 32, 32))
    pipeline, initial_patch = _training_pipeline(trainer)
    kinds = [type(t) for t in pipeline.transforms]
    where = kinds.index(expected)
    # after the spatial augmentation and the padding removal, right before the DS downsampling
    assert kinds.index(SpatialTransform) < kinds.index(RemoveLabelTansform) < where
    assert kinds[where + 1] is DownsampleSegForDSTransform
    assert nnUNetTrainer.get_training_transforms is not cls.get_training_transforms

    torch.manual_seed(3)
    label = y_tube_labels(initial_patch, radius=3.0)[0]  # the loader hands the pipeline the larger patch
    n_extra = 2 if expected is TopologyGraphTransform else 1
    for _ in range(3):  # random rotations, scalings, mirrorings
        out = pipeline(image=torch.from_numpy(label.astype(np.float32)), segmentation=torch.from_numpy(label))
        segs = out["segmentation"]
        scales = trainer._get_deep_supervision_scales()
        assert [tuple(s.shape) for s in segs] == [
            (1 + n_extra, *[round(32 * f) for f in sc]) for sc in scales]
        full = segs[0].numpy()
        aug = full[0]
        assert aug.min() >= 0 and aug.sum() > 50  # padding removed, tube still in the patch
        if expected is TopologyGraphTransform:
            nodes, branches = graph_channels(aug)
            assert np.array_equal(full[1], nodes) and np.array_equal(full[2], branches)
            assert nodes.max() >= 2 and branches.max() >= 1
        else:
            assert np.array_equal(full[1], skeleton_tube(aug)) and full[1].any()
        for sc, low in zip(scales[1:], segs[1:]):  # every scale: nearest downsampling of ALL channels
            size = [round(32 * f) for f in sc]
            ref = torch.nn.functional.interpolate(segs[0][None].float(), size, mode="nearest-exact")[0]
            assert torch.equal(low, ref.to(low.dtype))

    # validation pipeline: nnU-Net's own (label only), so nnU-Net's pseudo-Dice code is untouched
    val = trainer.get_validation_transforms(trainer._get_deep_supervision_scales())
    vsegs = val(image=torch.zeros(1, 32, 32, 32), segmentation=torch.zeros(1, 32, 32, 32, dtype=torch.int16))
    assert all(s.shape[0] == 1 for s in vsegs["segmentation"])


# ------------------------------------------------------------------------------------------------------
# losses and training steps
# ------------------------------------------------------------------------------------------------------
def test_dtasl_loss_is_dice_ce_on_the_label_plus_differentiable_tasl(nnunet_dirs):
    torch.manual_seed(0)
    trainer = make_trainer(nnUNetTrainerTASL_dTASL, patch=STOCK_PATCH, strides=STOCK_STRIDES)
    trainer.dtasl_seed = 7
    trainer.initialize()
    batch = topology_batch(trainer)
    assert [t.shape[1] for t in batch["target"]] == [3] * 3
    outputs = trainer.network(batch["data"])
    loss = trainer.loss(outputs, batch["target"])
    dcce = _reference_dcce(outputs, batch["target"], NNUNET_WEIGHTS)
    t0 = batch["target"][0]
    expected_tasl = DifferentiableTASL(seed=7, lambda_node=1.0, lambda_edge=0.5, lambda_path=0.5)(
        torch.softmax(outputs[0].float(), 1)[:, 1], t0[:, 1], t0[:, 2])
    assert float(expected_tasl.detach()) > 0.05  # the term is not negligible on this batch
    torch.testing.assert_close(loss, dcce + expected_tasl, rtol=1e-5, atol=1e-6)
    # gradients of the topology term reach the network
    topo = loss - dcce
    grads = torch.autograd.grad(topo, [p for p in trainer.network.parameters() if p.requires_grad],
                                allow_unused=True)
    assert sum(float(g.abs().sum()) for g in grads if g is not None) > 0


def _sr_expected(outputs, targets, weights):
    total = 0.0
    for w, o, t in zip(weights, outputs, targets):
        if not w:
            continue
        p = torch.softmax(o.float(), 1)[:, 1].reshape(o.shape[0], -1)
        tube = (t[:, 1] > 0).float().reshape(o.shape[0], -1)
        total = total + w * (1 - ((tube * p).sum(1) + 1e-5) / (tube.sum(1) + 1e-5)).mean()
    return total


def test_skeleton_recall_loss_adds_the_tube_recall_at_every_scale(nnunet_dirs):
    trainer = stock(nnUNetTrainerSkeletonRecall)
    batch = topology_batch(trainer)
    assert [t.shape[1] for t in batch["target"]] == [2] * 3
    assert all(t[:, 1].any() for t in batch["target"][:2])  # the tube survives the downsampling
    outputs = trainer.network(batch["data"])
    loss = trainer.loss(outputs, batch["target"])
    dcce = _reference_dcce(outputs, batch["target"], NNUNET_WEIGHTS)
    sr = _sr_expected(outputs, batch["target"], NNUNET_WEIGHTS)
    assert float(sr.detach()) > 0.1
    torch.testing.assert_close(loss, dcce + sr, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cls", [nnUNetTrainerTASL_dTASL, nnUNetTrainerSkeletonRecall],
                         ids=lambda c: c.__name__)
def test_topology_train_step_updates_weights_and_validation_skips_the_term(cls, nnunet_dirs):
    trainer = stock(cls)
    batch = topology_batch(trainer)
    before = [p.detach().clone() for p in trainer.network.parameters()]
    loss = float(trainer.train_step(batch)["loss"])
    terms = trainer.loss.loss.last_terms
    assert math.isfinite(loss) and not terms["topology_skipped"] and terms["topology"] > 0
    assert math.isclose(loss, terms["dcce"] + terms["topology"], rel_tol=1e-5)
    changed = sum(not torch.equal(b, p) for b, p in zip(before, trainer.network.parameters()))
    assert changed > len(before) // 2
    # validation batches carry the label only: Dice + CE, and nnU-Net's pseudo Dice works
    val_batch = {"data": batch["data"], "target": [t[:, :1] for t in batch["target"]]}
    trainer.on_validation_epoch_start()
    out = trainer.validation_step(val_batch)
    assert trainer.loss.loss.last_terms["topology_skipped"]
    assert math.isclose(float(out["loss"]), trainer.loss.loss.last_terms["dcce"], rel_tol=1e-6)
    assert out["tp_hard"].shape == (1,)


def _official_factor(trainer, batch):
    with torch.no_grad():
        logits = trainer.network(batch["data"])[0]
    prob_fg = 1 - torch.softmax(logits.float(), 1)[:, 0]
    return 1 + 0.1 * float(tasl_official(prob_fg, batch["target"][0][:, 0] > 0, (1.0, 0.5, 0.5)).mean())


def test_stock_tasl_scales_nnunet_gradients_by_official_tasl(nnunet_dirs, monkeypatch):
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda *a, **k: None)  # compare raw gradients
    with_tasl = stock(nnUNetTrainerTASL)
    plain = stock(nnUNetTrainer)
    plain.network.load_state_dict(with_tasl.network.state_dict())
    assert type(with_tasl.loss) is type(plain.loss)  # nnU-Net's own Dice + CE and DS weights
    np.testing.assert_allclose(with_tasl.loss.weight_factors, NNUNET_WEIGHTS)
    # a batch on which the prediction is not empty, so TASL is a finite, non-trivial number
    with torch.no_grad():
        with_tasl.network.decoder.seg_layers[-1].bias.copy_(torch.tensor([0.0, 0.3]))
        plain.network.decoder.seg_layers[-1].bias.copy_(torch.tensor([0.0, 0.3]))
    batch = topology_batch(with_tasl)
    factor = _official_factor(with_tasl, batch)
    g_tasl, loss_tasl = grads_of_one_step(with_tasl, batch, monkeypatch)
    g_plain, loss_plain = grads_of_one_step(plain, batch, monkeypatch)
    assert factor > 1.0
    assert math.isclose(loss_tasl, loss_plain * factor, rel_tol=1e-4)
    for name in g_plain:
        torch.testing.assert_close(g_tasl[name], g_plain[name] * factor, rtol=1e-4, atol=1e-9)


class _NeurINO_SkeletonRecall_scratch(nnUNetTrainerNeurINO_SkeletonRecall):
    use_pretrained = False


@pytest.mark.parametrize("cls, topology", [(nnUNetTrainerNeurINO_scratch_dTASL, "differentiable"),
                                           (_NeurINO_SkeletonRecall_scratch, "skeleton_recall")],
                         ids=["dTASL", "SkeletonRecall"])
def test_neurino_topology_train_step(cls, topology, nnunet_dirs):
    torch.manual_seed(0)
    trainer = make_trainer(cls, patch=(16, 16, 32))
    trainer.initialize()
    assert trainer.topology_loss == topology and trainer.loss.loss.topology == topology
    np.testing.assert_allclose(trainer.loss.loss.ds_weights, np.array([16, 8, 4, 2, 1]) / 31)
    batch = topology_batch(trainer)
    loss = float(trainer.train_step(batch)["loss"])
    terms = trainer.loss.loss.last_terms
    assert math.isfinite(loss) and terms["topology"] > 0
    assert math.isclose(loss, terms["dcce"] + terms["topology"], rel_tol=1e-5)


@pytest.mark.parametrize("cls", [nnUNetTrainerNeurINO_dTASL, nnUNetTrainerNeurINO_S_dTASL],
                         ids=lambda c: c.__name__)
def test_pretrained_dtasl_variants_keep_their_network_and_swap_the_loss(cls, nnunet_dirs):
    trainer = make_trainer(cls, patch=(32, 32, 32))
    base = cls.__bases__[-1]  # the NeurINO trainer the variant derives from
    assert cls.__name__ == base.__name__ + "_dTASL" and cls.variant == base.variant
    assert cls.use_pretrained and cls.topology_loss == "differentiable"
    assert trainer.num_epochs == 110 and trainer.initial_lr == 1e-3


def test_real_nnunet_data_loader_delivers_the_extra_channels(tmp_path, monkeypatch):
    """nnU-Net's own loader + the trainer's pipelines on a tiny preprocessed data set (npz cases)."""
    for var in WEIGHT_VARS:
        monkeypatch.delenv(var, raising=False)
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.setenv(name, str(tmp_path / name))
    monkeypatch.setenv("nnUNet_n_proc_DA", "0")
    folder = tmp_path / "nnUNet_preprocessed" / DATASET / "nnUNetPlans_3d_fullres"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(2):
        seg = y_tube_labels((24, 24, 24), radius=2.0)[i]  # (1, Z, Y, X)
        data = (seg + rng.normal(0, 0.3, seg.shape)).astype(np.float32)
        props = {"class_locations": {1: np.argwhere(seg > 0)}, "spacing": [1.0, 1.0, 1.0]}
        nnUNetDatasetNumpy.save_case(data, seg.astype(np.int8), props, str(folder / f"case{i}"))
    plans = make_plans(STOCK_PATCH, STOCK_STRIDES)
    plans["continue_training"] = False
    torch.manual_seed(0)
    trainer = nnUNetTrainerTASL_dTASL(plans=plans, configuration="3d_fullres", fold="all",
                                      dataset_json=dict(DATASET_JSON), device=trainer_device())
    trainer.initialize()
    dl_train, dl_val = trainer.get_dataloaders()
    batch = next(dl_train)
    assert isinstance(batch["target"], list) and [t.shape[1] for t in batch["target"]] == [3, 3, 3]
    full = batch["target"][0].numpy()
    for b in range(full.shape[0]):
        nodes, branches = graph_channels(full[b, 0])
        assert np.array_equal(full[b, 1], nodes) and np.array_equal(full[b, 2], branches)
    assert full[:, 2].max() >= 1  # a skeleton made it into the patches
    val = next(dl_val)
    assert [t.shape[1] for t in val["target"]] == [1, 1, 1]
    loss = float(trainer.train_step(batch)["loss"])
    assert math.isfinite(loss) and not trainer.loss.loss.last_terms["topology_skipped"]
    assert math.isfinite(float(trainer.validation_step(val)["loss"]))
