"""`neurino convert diadem`: the DIADEM OP layout (slice folders + gold SWCs) → nnU-Net raw data set."""

from __future__ import annotations

import json

import edt
import numpy as np
import pytest
import SimpleITK as sitk
import tifffile

from nnunetv2_neurino.cli import main
from nnunetv2_neurino.data.nnunet_raw import count_nodes_outside
from nnunetv2_neurino.data.render import render_swc
from nnunetv2_neurino.dataset_conversion.diadem import DEFAULT_SPACING
from nnunetv2_neurino.dataset_conversion.run import convert
from nnunetv2_neurino.errors import NeurinoError
from nnunetv2_neurino.swc import SWCTree, read_swc, write_swc

OP_SLICES = {"OP_1": 60, "OP_2": 88, "OP_3": 62, "OP_4": 67}
SHAPE = (8, 24, 28)


def _read_nii(path):
    img = sitk.ReadImage(str(path))
    return sitk.GetArrayFromImage(img), tuple(reversed(img.GetSpacing()))


def _log_rows(folder) -> dict[str, dict[str, str]]:
    lines = (folder / "conversion_log.tsv").read_text().splitlines()
    header = lines[0].split("\t")
    return {r.split("\t")[0]: dict(zip(header, r.split("\t"))) for r in lines[1:]}


# ------------------------------------------------------------------------- synthetic DIADEM layout
def _mini_layout(root, names=("OP_1", "OP_2", "OP_3"), zero_pad=False):
    """Tiny stacks in the DIADEM layout, each with a bright line along x traced by its SWC."""
    base = root / "OlfactoryProjectionFibers"
    trees = {}
    for i, name in enumerate(names):
        folder = base / "ImageStacks" / name
        folder.mkdir(parents=True)
        vol = np.full(SHAPE, 10, np.uint8)
        z, y = 2 + i, 5 + 3 * i
        vol[z, y, 3:25] = 200
        for k in range(SHAPE[0]):
            fname = f"{k + 1:02d}.tif" if zero_pad else f"{k + 1}.tif"
            tifffile.imwrite(folder / fname, vol[k], imagej=True, resolution=(3.0335, 3.0335),
                             metadata={"unit": "micron"})
        (folder / "Thumbs.db").write_bytes(b"\x00\x01")
        tree = SWCTree.from_parent_index(np.array([[3.0, y, z], [14.0, y, z], [24.0, y, z]]), [-1, 0, 1],
                                         radius=1.0)
        (base / "GoldStandardReconstructions").mkdir(parents=True, exist_ok=True)
        write_swc(tree, base / "GoldStandardReconstructions" / f"{name}.swc")
        trees[name] = tree
    return base, trees


def test_mini_layout_converts_with_default_spacing_and_test_cases(tmp_path):
    _, trees = _mini_layout(tmp_path / "dl", zero_pad=True)
    out = tmp_path / "raw"
    assert main(["convert", "diadem", str(tmp_path / "dl"), "-d", "31", "-o", str(out),
                 "--test-cases", "OP_2"]) == 0
    folder = out / "Dataset031_DIADEM_OP"
    meta = json.loads((folder / "dataset.json").read_text())
    assert meta["numTraining"] == 2 and meta["numTest"] == 1 and meta["neurino"]["test_cases"] == ["OP_2"]
    assert (folder / "imagesTs" / "OP_2_0000.nii.gz").is_file()
    image, spacing = _read_nii(folder / "imagesTr" / "OP_1_0000.nii.gz")
    np.testing.assert_allclose(spacing, DEFAULT_SPACING, rtol=1e-6)
    label, _ = _read_nii(folder / "labelsTr" / "OP_1.nii.gz")
    expected = render_swc(trees["OP_1"], SHAPE, spacing=DEFAULT_SPACING)
    np.testing.assert_array_equal(label.astype(bool), expected)
    assert image[2, 5, 3:25].min() == 200 and label[2, 5, 3:25].all()   # label on the bright line
    rows = _log_rows(folder)
    assert rows["OP_1"]["swc_nodes_outside"] == "0" and "DIADEM OP voxel size" in rows["OP_1"]["notes"]


def test_spacing_override(tmp_path, capsys):
    src, _ = _mini_layout(tmp_path / "dl", names=("OP_1",))
    report = convert("diadem", src, 32, out_root=tmp_path / "raw", spacing=(2.0, 0.5, 0.5), test_fraction=0,
                     progress=False)
    _, spacing = _read_nii(report.path / "imagesTr" / "OP_1_0000.nii.gz")
    assert spacing == (2.0, 0.5, 0.5) and "--spacing" in _log_rows(report.path)["OP_1"]["notes"]
    with pytest.raises(NeurinoError, match="^spacing is used by the diadem converter only"):
        convert("generic", src, 33, out_root=tmp_path / "raw", spacing=(2.0, 0.5, 0.5), progress=False)
    assert main(["convert", "generic", str(src), "-d", "33", "-o", str(tmp_path / "raw"),
                 "--spacing", "2", "0.5", "0.5"]) == 2
    assert "--spacing is used by the diadem converter only" in capsys.readouterr().err


def test_bad_cases_are_skipped_naming_the_file(tmp_path):
    base, _ = _mini_layout(tmp_path / "dl", names=("OP_1", "OP_2", "OP_3", "OP_5"))
    (base / "GoldStandardReconstructions" / "OP_2.swc").unlink()                 # stack without SWC
    (base / "ImageStacks" / "OP_3" / "4.tif").write_bytes(b"II*\x00 cut off")    # unreadable slice
    (base / "ImageStacks" / "OP_5" / "6.tif").unlink()                           # gap in the numbering
    write_swc(SWCTree.from_parent_index(np.zeros((1, 3)), [-1]),
              base / "GoldStandardReconstructions" / "OP_9.swc")                 # SWC without stack
    report = convert("diadem", tmp_path / "dl", 34, out_root=tmp_path / "raw", test_fraction=0.5,
                     progress=False)
    assert report.train == ["OP_1"] and report.test == []                       # split after validation
    reasons = {s.name: s.reason for s in report.skipped}
    assert "GoldStandardReconstructions/OP_2.swc is missing" in reasons["OP_2"]
    assert "OP_3/4.tif: cannot read slice" in reasons["OP_3"]
    assert "slice number 6 is missing" in reasons["OP_5"]
    assert "ImageStacks/OP_9/ is missing" in reasons["OP_9.swc"]
    rows = _log_rows(report.path)
    assert {n: r["split"] for n, r in rows.items()} == {"OP_1": "train", "OP_2": "skipped",
                                                        "OP_3": "skipped", "OP_5": "skipped",
                                                        "OP_9.swc": "skipped"}


def test_nothing_usable_leaves_no_dataset(tmp_path):
    base, _ = _mini_layout(tmp_path / "dl", names=("OP_1",))
    (base / "ImageStacks" / "OP_1" / "3.tif").write_bytes(b"garbage")
    out = tmp_path / "raw"
    assert main(["convert", "diadem", str(tmp_path / "dl"), "-d", "35", "-o", str(out)]) == 2
    assert not out.exists() or list(out.iterdir()) == []
    with pytest.raises(NeurinoError, match="ImageStacks/ and .*GoldStandardReconstructions/"):
        convert("diadem", tmp_path, 36, out_root=out, progress=False)
    with pytest.raises(NeurinoError, match="test case.*OP_7 not found"):
        convert("diadem", tmp_path / "dl", 37, out_root=out, test_cases=["OP_7"], progress=False)


def test_nodes_outside_the_stack_are_counted_and_logged(tmp_path):
    base, trees = _mini_layout(tmp_path / "dl", names=("OP_1",))
    y, z = 5.0, 2.0
    tree = SWCTree.from_parent_index(np.array([[3.0, y, z], [14.0, y, z], [24.0, y, z], [40.0, y, z],
                                               [24.0, -9.0, z]]), [-1, 0, 1, 2, 2], radius=1.0)
    write_swc(tree, base / "GoldStandardReconstructions" / "OP_1.swc")
    report = convert("diadem", tmp_path / "dl", 38, out_root=tmp_path / "raw", test_fraction=0,
                     progress=False)
    row = _log_rows(report.path)["OP_1"]
    assert row["swc_nodes_outside"] == "2" == str(count_nodes_outside(tree, SHAPE))
    assert "2 of 5 SWC nodes lie outside the image (8, 24, 28)" in row["notes"]
    assert "clipped at the border" in row["notes"]
    assert len(read_swc(report.path / "swcTr" / "OP_1.swc")) == 5                 # SWC kept unchanged
    label, _ = _read_nii(report.path / "labelsTr" / "OP_1.nii.gz")
    assert label[2, 5, 24:].all() and label[2, :5, 24].all()   # tubes drawn up to the border


# ------------------------------------------------------------------------------ real DIADEM OP 1–4
@pytest.fixture(scope="module")
def diadem_dataset(shared_dir, tmp_path_factory):
    src = shared_dir / "data" / "diadem_op"
    if not (src / "OlfactoryProjectionFibers").is_dir():
        pytest.skip(f"{src} is absent")
    out = tmp_path_factory.mktemp("diadem_raw")
    report = convert("diadem", src, 40, out_root=out, test_cases=["OP_4"], progress=False)
    return src / "OlfactoryProjectionFibers", report


def _case_files(report, case):
    split = "Ts" if case in report.test else "Tr"
    return (report.path / f"images{split}" / f"{case}_0000.nii.gz",
            report.path / f"labels{split}" / f"{case}.nii.gz")


def _contrast(image, label, tree, spacing) -> float:
    """Mean intensity at the gold nodes / mean intensity 6–10 pixels (in-plane units) from the label."""
    zyx = np.round(tree.to_zyx()).astype(int)
    inside = np.all((zyx >= 0) & (zyx < np.array(image.shape)), axis=1)
    z, y, x = zyx[inside].T
    anisotropy = tuple(np.asarray(spacing) / min(spacing))
    dist = edt.edt(~label.astype(bool), anisotropy=anisotropy)
    shell = (dist >= 6) & (dist <= 10)
    return float(image[z, y, x].mean() / image[shell].mean())


def test_real_stacks_convert_with_spacing_and_aligned_labels(diadem_dataset):
    op, report = diadem_dataset
    assert report.train == ["OP_1", "OP_2", "OP_3"] and report.test == ["OP_4"] and not report.skipped
    rows = _log_rows(report.path)
    for case, n_slices in OP_SLICES.items():
        image_path, label_path = _case_files(report, case)
        image, spacing = _read_nii(image_path)
        label, label_spacing = _read_nii(label_path)
        assert image.shape == label.shape == (n_slices, 512, 512)
        np.testing.assert_allclose(spacing, (0.9988, 0.3296, 0.3296), rtol=0.01)
        np.testing.assert_allclose(label_spacing, spacing)
        tree = read_swc(op / "GoldStandardReconstructions" / f"{case}.swc")
        ratio = _contrast(image, label, tree, spacing)
        assert ratio > 5, f"{case}: intensity at gold nodes only {ratio:.2f}x the surround"
        # the same measure on a label shifted off the neurite fails: the test can tell alignment apart
        shifted = SWCTree(tree.ids, tree.types, tree.xyz + np.array([20.0, 20.0, 0.0]), tree.radius,
                          tree.parent)
        off = render_swc(shifted, image.shape, spacing=spacing)
        assert _contrast(image, off, shifted, spacing) < 3   # measured 1.2–1.9 on OP_1–4
        assert rows[case]["swc_nodes_outside"] == str(count_nodes_outside(tree, image.shape))
        assert rows[case]["swc_nodes"] == str(len(tree))


def test_real_dataset_passes_nnunet_integrity_check(diadem_dataset):
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    _, report = diadem_dataset
    verify_dataset_integrity(str(report.path), num_processes=1)


def test_real_dataset_plan_keeps_z_unstrided_while_z_is_coarse(diadem_dataset, tmp_path, monkeypatch):
    """nnU-Net's planner on the anisotropic stacks: no z pooling until the z step is within 2x of x/y."""
    import os
    import shutil
    import subprocess

    _, report = diadem_dataset
    env = {**os.environ, "nnUNet_raw": str(report.path.parent), "nnUNet_preprocessed": str(tmp_path / "pre"),
           "nnUNet_results": str(tmp_path / "res"), "nnUNet_n_proc_DA": "1"}  # planner sets torch threads
    import sys
    from pathlib import Path

    # the venv's own script (CI runs .venv/bin/python without the venv on PATH)
    beside = Path(sys.executable).parent / "nnUNetv2_plan_and_preprocess"
    planner = str(beside) if beside.exists() else shutil.which("nnUNetv2_plan_and_preprocess")
    assert planner is not None, "nnUNetv2_plan_and_preprocess is not installed beside python or on PATH"
    done = subprocess.run([planner, "-d", "40", "-c", "3d_fullres", "--no_pp", "-npfp", "1"], env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    plans = json.loads((tmp_path / "pre" / report.path.name / "nnUNetPlans.json").read_text())
    config = plans["configurations"]["3d_fullres"]
    np.testing.assert_allclose(config["spacing"], (0.9988, 0.3296, 0.3296), rtol=0.01)
    arch = config["architecture"]["arch_kwargs"]
    spacing = np.array(config["spacing"], dtype=float)
    for stride in arch["strides"]:
        # nnU-Net pools an axis only once its (current) spacing is within 2x of the finest axis
        coarse_z = spacing[0] > 2 * spacing[1:].min()
        if coarse_z:
            assert stride[0] == 1, f"z pooled while z spacing {spacing[0]:.3f} > 2x {spacing[1]:.3f}"
        spacing = spacing * np.array(stride)
    assert arch["strides"][1][0] == 1 and arch["kernel_sizes"][0] == [1, 3, 3]   # first z pooling later
    assert sum(s[0] == 2 for s in arch["strides"]) >= 1 and config["patch_size"][0] < config["patch_size"][1]
