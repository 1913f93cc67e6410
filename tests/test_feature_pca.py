"""`neurino feature-pca`: PCA maps of encoder stage features on one slice (the paper's fig. 8).

Fast tests use hand-built stock nnU-Net runs (``_neurino_run_factory``: PlainConvUNet, whose encoder returns
its stage outputs with ``return_skips``); one test uses the trained NeurINO run of the e2e fixture.

Independent expectation: the factory volume has exactly the plans' patch size and target spacing, so
nnU-Net's preprocessing is a plain z-score and the encoder sees the whole volume in one tile; the stage
features at a slice are then the encoder's output on the z-scored volume (upsampled with
``F.interpolate(trilinear)`` for strided stages), and the PCA is compared with scikit-learn's.
"""

from __future__ import annotations

import shutil

import matplotlib.image as mpimg
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _neurino_run_factory import make_run, tube_volume
from sklearn.decomposition import PCA

from nnunetv2_neurino.analysis.feature_pca import (
    SliceSpec,
    feature_pca,
    model_slice_features,
    parse_slice,
    take_slice,
)
from nnunetv2_neurino.cli import main
from nnunetv2_neurino.data.readers import write_nifti
from nnunetv2_neurino.errors import NeurinoError
from nnunetv2_neurino.inference.model import load_predictor
from nnunetv2_neurino.inference.run_folder import resolve_run

SHAPE = (16, 24, 24)        # = the factory plans' patch size
SPACING = (2.0, 1.0, 1.0)   # = the factory plans' target spacing


@pytest.fixture(scope="module")
def factory(tmp_path_factory):
    """Two stock runs (different random weights), one with wider stages, and the tube volume on disk."""
    root = tmp_path_factory.mktemp("fpca")
    img, lab = tube_volume(SHAPE, seed=2)
    write_nifti(root / "img.nii.gz", img, SPACING)
    write_nifti(root / "lab.nii.gz", lab, SPACING)
    runs = {"a": make_run(root / "a", seed=0), "b": make_run(root / "b", seed=1),
            "wide": make_run(root / "w", trainer="nnUNetTrainer_5epochs", seed=2,
                             features_per_stage=(16, 32, 64))}
    return {"root": root, "img": img, "lab": lab, **{k: v / "fold_0" for k, v in runs.items()}}


def reference_features(fold_dir, img: np.ndarray, spec: SliceSpec, stage: int) -> np.ndarray:
    """(H*W, C) stage features at the slice, computed without the package's preprocessing or sampling."""
    ckpt = torch.load(fold_dir / "checkpoint_final.pth", weights_only=False)
    from _neurino_run_factory import build_network

    net = build_network(ckpt["init_args"]["plans"])
    net.load_state_dict(ckpt["network_weights"])
    net.eval()
    x = img.astype(np.float64)
    x = ((x - x.mean()) / x.std()).astype(np.float32)
    with torch.no_grad():
        net.encoder.return_skips = True
        f = net.encoder(torch.from_numpy(x)[None, None])[stage]
        f = F.interpolate(f, size=SHAPE, mode="trilinear", align_corners=False)[0].numpy()
    return np.moveaxis(take_slice(np.moveaxis(f, 0, -1), spec), -1, 0).reshape(f.shape[0], -1).T


@pytest.mark.parametrize("stage", [0, 1])
def test_stage_features_equal_encoder_output_on_the_volume(factory, stage):
    spec = SliceSpec(0, 9)
    predictor = load_predictor(resolve_run(factory["a"]), "final", use_mirroring=False)
    feats, valid = model_slice_features(predictor, factory["img"], SPACING, spec, stage)
    ref = reference_features(factory["a"], factory["img"], spec, stage)
    assert feats.shape == ref.shape == (SHAPE[1] * SHAPE[2], 8 * 2 ** stage)
    assert valid.all()
    np.testing.assert_allclose(feats, ref, atol=2e-4 * np.abs(ref).max())


def test_map_has_slice_shape_and_components_match_sklearn(factory):
    spec = parse_slice("y:5")
    res = feature_pca([factory["a"]], factory["root"] / "img.nii.gz", slice_spec=spec, stage=1)
    (rgb,) = res.maps
    assert rgb.shape == (SHAPE[0], SHAPE[2], 3) and res.image_slice.shape == (SHAPE[0], SHAPE[2])
    assert rgb.min() >= 0.0 and rgb.max() <= 1.0 and res.valid[0].all()
    np.testing.assert_array_equal(res.image_slice, factory["img"][:, 5, :])

    ref = reference_features(factory["a"], factory["img"], spec, 1)
    pca = PCA(n_components=3).fit(ref.astype(np.float64))
    ratio = res.explained_variance_ratio[0]
    assert np.all(np.diff(ratio) <= 0)  # ordered by explained variance
    np.testing.assert_allclose(ratio, pca.explained_variance_ratio_, rtol=1e-3)
    # each RGB channel is an affine (percentile-scaled) image of sklearn's component, up to sign
    proj = pca.transform(ref)
    for k in range(3):
        c = rgb[..., k].reshape(-1)
        inside = (c > 0) & (c < 1)
        assert inside.sum() > 0.9 * c.size
        assert abs(np.corrcoef(c[inside], proj[inside, k])[0, 1]) > 0.9999


def test_models_share_one_basis(factory):
    img = factory["root"] / "img.nii.gz"
    spec = SliceSpec(0, 8)
    twice = feature_pca([factory["a"], factory["a"]], img, slice_spec=spec)
    assert twice.shared_basis
    np.testing.assert_array_equal(twice.maps[0], twice.maps[1])  # same features -> same map

    alone = feature_pca([factory["a"]], img, slice_spec=spec)
    np.testing.assert_allclose(alone.explained_variance_ratio[0], twice.explained_variance_ratio[0],
                               rtol=1e-9)

    joint = feature_pca([factory["a"], factory["b"]], img, slice_spec=spec, labels=["A", "B"])
    assert joint.shared_basis and joint.labels == ["A", "B"]
    both = np.concatenate([reference_features(factory[k], factory["img"], spec, 0) for k in "ab"])
    expected = PCA(n_components=3).fit(both.astype(np.float64)).explained_variance_ratio_
    for r in joint.explained_variance_ratio:  # one basis fitted on both models' voxels together
        np.testing.assert_allclose(r, expected, rtol=1e-3)
    assert not np.allclose(joint.maps[0], alone.maps[0], atol=1e-3)  # B changes the basis of A

    mixed = feature_pca([factory["a"], factory["wide"]], img, slice_spec=spec)
    assert not mixed.shared_basis  # 8 vs 16 channels: one basis per width
    np.testing.assert_allclose(mixed.maps[0], alone.maps[0], atol=1e-12)


def test_checkpoint_best_is_used(factory, tmp_path):
    tdir = make_run(tmp_path, seed=0)
    fold = tdir / "fold_0"
    ckpt = torch.load(fold / "checkpoint_final.pth", weights_only=False)
    torch.manual_seed(7)
    ckpt["network_weights"] = {k: v + 0.3 * torch.randn_like(v) if v.is_floating_point() else v
                               for k, v in ckpt["network_weights"].items()}
    img = factory["root"] / "img.nii.gz"
    with pytest.raises(NeurinoError, match="checkpoint_best.pth does not exist"):
        feature_pca([fold], img, checkpoint="best")
    torch.save(ckpt, fold / "checkpoint_best.pth")
    final = feature_pca([fold], img, slice_spec=SliceSpec(0, 8))
    best = feature_pca([fold], img, slice_spec=SliceSpec(0, 8), checkpoint="best")
    ref_final = feature_pca([factory["a"]], img, slice_spec=SliceSpec(0, 8))  # same seed as `a`
    np.testing.assert_allclose(final.maps[0], ref_final.maps[0], atol=1e-12)
    assert np.abs(best.maps[0] - final.maps[0]).mean() > 0.05


def test_gt_sets_default_slice_and_panel(factory, tmp_path):
    res = feature_pca([factory["a"]], factory["root"] / "img.nii.gz", factory["root"] / "lab.nii.gz")
    counts = (factory["lab"] > 0).sum(axis=(1, 2))
    assert res.slice == SliceSpec(0, int(np.flatnonzero(counts == counts.max())[0]))
    np.testing.assert_array_equal(res.gt_slice, factory["lab"][res.slice.index])
    no_gt = feature_pca([factory["a"]], factory["root"] / "img.nii.gz")
    assert no_gt.slice == SliceSpec(0, SHAPE[0] // 2) and no_gt.gt_slice is None

    write_nifti(tmp_path / "small.nii.gz", factory["lab"][:8], SPACING)
    with pytest.raises(NeurinoError, match="small.nii.gz has shape"):
        feature_pca([factory["a"]], factory["root"] / "img.nii.gz", tmp_path / "small.nii.gz")


def test_bad_input_gives_clear_errors(factory, tmp_path):
    img = factory["root"] / "img.nii.gz"
    with pytest.raises(NeurinoError, match="not an nnU-Net run"):
        feature_pca([tmp_path], img)
    other = make_run(tmp_path / "o", trainer="nnUNetTrainerMine",
                     checkpoint_trainer_name="nnUNetTrainerOther")
    with pytest.raises(NeurinoError, match="written by trainer 'nnUNetTrainerOther'.*names trainer "
                                           "'nnUNetTrainerMine'"):
        feature_pca([other / "fold_0"], img)
    with pytest.raises(NeurinoError, match=r"slice z:16 is outside the volume of shape \(16, 24, 24\)"):
        feature_pca([factory["a"]], img, slice_spec=SliceSpec(0, 16))
    with pytest.raises(NeurinoError, match="slice x:-1 is outside"):
        feature_pca([factory["a"]], img, slice_spec=parse_slice("x:-1"))
    with pytest.raises(NeurinoError, match="AXIS:INDEX"):
        parse_slice("w:3")
    with pytest.raises(NeurinoError, match=r"^stage 3: the encoder of nnUNetTrainer has stages 0\.\.2"):
        feature_pca([factory["a"]], img, stage=3)
    two_folds = make_run(tmp_path / "t", folds=(0, 1))
    with pytest.raises(NeurinoError, match="holds 2 folds"):
        feature_pca([two_folds], img)
    with pytest.raises(NeurinoError, match="no such image file"):
        feature_pca([factory["a"]], tmp_path / "missing.nii.gz")


def test_cli_figure_and_refusals(factory, tmp_path, capsys):
    root = factory["root"]
    out = tmp_path / "fig" / "pca.png"
    args = ["feature-pca", "--model", str(factory["a"]), "--model", str(factory["b"]), "--names", "A", "B",
            "--image", str(root / "img.nii.gz"), "--gt", str(root / "lab.nii.gz"), "--slice", "z:8",
            "--stage", "1", "-o", str(out)]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "A: explained variance ratio PC1-3" in text and "shared basis" in text
    fig = mpimg.imread(out)
    assert fig.ndim == 3 and fig.shape[1] > 3 * fig.shape[0] / 2  # 4 panels side by side
    assert main(args) == 2 and "already exists" in capsys.readouterr().err
    bad = tmp_path / "bad.png"
    for extra, message in ((["--slice", "z:99"], "outside the volume"),
                           (["--stage", "5"], "has stages 0..2")):
        assert main(args[:-2] + extra + ["-o", str(bad)]) == 2
        assert message in capsys.readouterr().err
        assert not bad.exists() and not list(tmp_path.glob(".bad.png*"))
    shutil.rmtree(out.parent)


def test_trained_neurino_run(trained_run, tmp_path, monkeypatch, capsys):
    """NeurINO's encoder returns 4 stages; each gives a full-slice map; components ordered by variance."""
    monkeypatch.setenv("nnUNet_extTrainer", trained_run.env["nnUNet_extTrainer"])
    from nnunetv2_neurino.data.readers import read_image

    (img_path,) = sorted(trained_run.test_images.glob("*.nii.gz"))
    image, spacing = read_image(img_path)
    predictor = load_predictor(resolve_run(trained_run.fold_dir), "final", use_mirroring=False)
    spec = SliceSpec(1, image.shape[1] // 2)
    h, w = image.shape[0], image.shape[2]
    widths = []
    for stage in range(4):
        feats, valid = model_slice_features(predictor, image, spacing, spec, stage)
        assert feats.shape[0] == h * w and valid.all() and np.isfinite(feats).all()
        widths.append(feats.shape[1])
    assert widths == [96, 192, 384, 768]  # ConvNeXt-T stage widths
    with pytest.raises(NeurinoError, match="has stages 0..3"):
        model_slice_features(predictor, image, spacing, spec, 4)

    out = tmp_path / "neurino_pca.png"
    assert main(["feature-pca", "--model", str(trained_run.fold_dir), "--image", str(img_path),
                 "--slice", f"y:{spec.index}", "--stage", "2", "-o", str(out)]) == 0
    ratios = [float(v) for v in capsys.readouterr().out.split("PC1-3 ")[1].split("\n")[0].split(", ")]
    assert len(ratios) == 3 and ratios[0] >= ratios[1] >= ratios[2] > 0
    assert mpimg.imread(out).ndim == 3
