"""`neurino predict -i STACK -m RUN_DIR -o OUT`: stack → nnU-Net mask (+ probabilities) → traced SWC.

Independent expectation: nnU-Net's own ``nnUNetPredictor`` (``initialize_from_trained_model_folder`` +
``predict_from_files_sequential``, i.e. what ``nnUNetv2_predict`` runs) on the same stack saved as a NIfTI
case. Fast tests use hand-built stock nnU-Net runs (``_neurino_run_factory``) whose foreground bias is
lowered (``fg_bias``) so the mask is neither empty nor full; one test uses the trained NeurINO run of the
e2e fixture.
"""

from __future__ import annotations

import json

import cc3d
import numpy as np
import pytest
import torch
from _neurino_run_factory import make_run, tube_volume

from nnunetv2_neurino.cli import main
from nnunetv2_neurino.data.readers import read_image, write_image, write_nifti
from nnunetv2_neurino.data.v3d import write_v3draw
from nnunetv2_neurino.swc import read_swc

SHAPE = (12, 24, 22)         # not the patch size (16, 24, 24): resampled, then zero-padded to it
SPACING = (2.5, 1.0, 1.0)    # not the plans' spacing (2, 1, 1)


def nnunet_reference(model_dir, case_file, out_dir, folds=(0,), use_mirroring=True):
    """(segmentation, probabilities) written by nnU-Net's own predictor for one NIfTI case."""
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=use_mirroring,
                                perform_everything_on_device=False, device=torch.device("cpu"),
                                allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(model_dir), use_folds=folds,
                                                   checkpoint_name="checkpoint_final.pth")
    out_dir.mkdir(parents=True)
    predictor.predict_from_files_sequential([[str(case_file)]], [str(out_dir / "case")],
                                            save_probabilities=True, overwrite=True)
    seg, _ = read_image(out_dir / "case.nii.gz")
    return seg, np.load(out_dir / "case.npz")["probabilities"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """An integer-valued tube stack (so every format stores the same values) as NIfTI, TIFF and v3draw."""
    root = tmp_path_factory.mktemp("predict")
    img, lab = tube_volume(SHAPE, seed=4)
    img = np.clip(np.round(img), 0, 65535).astype(np.uint16)
    write_nifti(root / "case_0000.nii.gz", img, SPACING)
    write_image(root / "stack.tif", img, SPACING)
    write_v3draw(root / "stack.v3draw", img)  # v3draw stores no spacing: --spacing gives it
    return {"root": root, "img": img, "lab": lab, "nii": root / "case_0000.nii.gz"}


@pytest.fixture(scope="module")
def biased_run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("runs"), seed=0, fg_bias=-0.5)


def test_mask_probabilities_swc_equal_nnunet(stack, biased_run, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["predict", "-i", str(stack["nii"]), "-m", str(biased_run), "-o", str(out),
                 "--save-probabilities"]) == 0
    assert "SWC" in capsys.readouterr().out
    mask, mask_spacing = read_image(out / "case_0000_mask.nii.gz")
    assert mask.shape == SHAPE and mask_spacing == pytest.approx(SPACING)
    ref_seg, ref_probs = nnunet_reference(biased_run, stack["nii"], tmp_path / "ref")
    assert 0 < np.count_nonzero(ref_seg) < ref_seg.size // 2  # a non-trivial mask
    np.testing.assert_array_equal(mask, ref_seg)
    probs = np.load(out / "case_0000_probabilities.npz")["probabilities"]
    assert probs.shape == (2, *SHAPE)
    np.testing.assert_allclose(probs, ref_probs, atol=1e-6)

    tree = read_swc(out / "case_0000.swc")
    assert len(tree) > 0
    z, y, x = np.round(tree.xyz[:, ::-1]).astype(int).T  # SWC x = last array axis
    assert np.all(mask[z, y, x] > 0)  # skeleton nodes lie in the mask they were traced from


def test_formats_spacing_threshold_and_folds(stack, tmp_path, capsys):
    run2 = make_run(tmp_path / "runs", seed=3, folds=(0, 1), fg_bias=-0.5)
    base = ["-m", str(run2), "--disable-tta", "--no-trace"]
    assert main(["predict", "-i", str(stack["nii"]), "-o", str(tmp_path / "nii"), "--save-probabilities",
                 *base]) == 0
    ref_seg, ref_probs = nnunet_reference(run2, stack["nii"], tmp_path / "ref", folds=(0, 1),
                                          use_mirroring=False)
    nii_mask, _ = read_image(tmp_path / "nii" / "case_0000_mask.nii.gz")
    np.testing.assert_array_equal(nii_mask, ref_seg)  # both folds ensembled, no mirroring: as nnU-Net
    assert not (tmp_path / "nii" / "case_0000.swc").exists()

    assert main(["predict", "-i", str(stack["root"] / "stack.tif"), "-o", str(tmp_path / "tif"), *base]) == 0
    assert main(["predict", "-i", str(stack["root"] / "stack.v3draw"), "-o", str(tmp_path / "v3d"),
                 "--spacing", *map(str, SPACING), *base]) == 0
    for sub in ("tif", "v3d"):
        got, spacing = read_image(tmp_path / sub / "stack_mask.nii.gz")
        np.testing.assert_array_equal(got, nii_mask)
        assert spacing == pytest.approx(SPACING)

    capsys.readouterr()
    assert main(["predict", "-i", str(stack["nii"]), "-o", str(tmp_path / "json"), "--json", *base]) == 0
    doc = json.loads(capsys.readouterr().out)                    # --json: one JSON document on stdout
    assert doc["mask"] == str(tmp_path / "json" / "case_0000_mask.nii.gz") and doc["swc"] is None
    assert doc["shape"] == list(nii_mask.shape) and doc["foreground_voxels"] == int((nii_mask > 0).sum())
    assert main(["predict", "-i", str(stack["nii"]), "-o", str(tmp_path / "t"), "--threshold", "0.7",
                 *base]) == 0
    strict, _ = read_image(tmp_path / "t" / "case_0000_mask.nii.gz")
    np.testing.assert_array_equal(strict, (1.0 - ref_probs[0] > 0.7).astype(np.uint8))
    assert np.count_nonzero(strict) < np.count_nonzero(nii_mask)


def _outputs(folder):
    return sorted(p.name for p in folder.rglob("*")) if folder.exists() else []


def test_bad_input_clear_error_nothing_written(stack, biased_run, tmp_path, capsys):
    out = tmp_path / "out"
    (tmp_path / "notes.txt").write_text("not an image")
    not_a_run = tmp_path / "not_a_run"  # beside, not above, the output: outputs inside an input are refused
    not_a_run.mkdir()
    empty_trainer = tmp_path / "Dataset1_X" / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    empty_trainer.mkdir(parents=True)
    for f in ("plans.json", "dataset.json"):
        (empty_trainer / f).write_text((biased_run / f).read_text())
    no_ckpt = make_run(tmp_path / "r", ckpt_epochs=0) / "fold_0"
    cases = [
        (["-i", str(tmp_path / "missing.nii.gz"), "-m", str(biased_run)],
         "missing.nii.gz: no such image file"),
        (["-i", str(tmp_path / "notes.txt"), "-m", str(biased_run)], "notes.txt: unknown image type"),
        (["-i", str(stack["nii"]), "-m", str(not_a_run)], "is not an nnU-Net run"),
        (["-i", str(stack["nii"]), "-m", str(empty_trainer)], "has no fold_N folder"),
        (["-i", str(stack["nii"]), "-m", str(biased_run), "-f", "3"], "fold_3"),
        (["-i", str(stack["nii"]), "-m", str(no_ckpt)], "checkpoint_final.pth does not exist"),
        (["-i", str(stack["nii"]), "-m", str(biased_run), "--threshold", "1.5"], "--threshold"),
        (["-i", str(stack["nii"]), "-m", str(biased_run), "--spacing", "0", "1", "1"], "spacing"),
    ]
    for args, message in cases:
        assert main(["predict", *args, "-o", str(out)]) == 2, args
        assert message in capsys.readouterr().err, args
        assert _outputs(out) == [], args

    # existing outputs are kept unless --force
    assert main(["predict", "-i", str(stack["nii"]), "-m", str(biased_run), "-o", str(out), "--no-trace",
                 "--disable-tta"]) == 0
    before = (out / "case_0000_mask.nii.gz").read_bytes()
    assert main(["predict", "-i", str(stack["nii"]), "-m", str(biased_run), "-o", str(out),
                 "--no-trace"]) == 2
    assert "pass --force" in capsys.readouterr().err
    assert (out / "case_0000_mask.nii.gz").read_bytes() == before
    assert _outputs(out) == ["case_0000_mask.nii.gz"]


def test_trained_neurino_run(trained_run, tmp_path, monkeypatch):
    """A NeurINO model (trainer folder given): outputs exist, mask = nnU-Net's predictor, SWC loads.

    The test case is cropped to one patch (16, 16, 16) minus 2 voxels in x: NeurINO-T takes ~2 s per tile
    on a loaded 2-core CPU, and both predictors run.
    """
    monkeypatch.setenv("nnUNet_extTrainer", trained_run.env["nnUNet_extTrainer"])
    (full_path,) = sorted(trained_run.test_images.glob("*_0000.nii.gz"))
    full, spacing = read_image(full_path)
    image = full[:16, 4:20, 5:19]
    img_path = tmp_path / "crop_0000.nii.gz"
    write_nifti(img_path, image, spacing)
    out = tmp_path / "out"
    assert main(["predict", "-i", str(img_path), "-m", str(trained_run.model_dir), "-o", str(out),
                 "--save-probabilities"]) == 0
    mask, _ = read_image(out / "crop_0000_mask.nii.gz")
    assert mask.shape == image.shape == (16, 16, 14)
    probs = np.load(out / "crop_0000_probabilities.npz")["probabilities"]
    assert probs.shape == (2, *image.shape)
    np.testing.assert_allclose(probs.sum(axis=0), 1.0, atol=1e-5)
    ref_seg, ref_probs = nnunet_reference(trained_run.model_dir, img_path, tmp_path / "ref")
    np.testing.assert_array_equal(mask, ref_seg)
    np.testing.assert_allclose(probs, ref_probs, atol=1e-5)
    tree = read_swc(out / "crop_0000.swc")
    # tracing drops 26-connected components under 10 voxels: a barely trained net may predict only fragments
    sizes = np.bincount(cc3d.connected_components(mask > 0, connectivity=26).ravel())[1:]
    assert (len(tree) > 0) == bool((sizes >= 10).any())
