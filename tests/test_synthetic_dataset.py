"""Built-in synthetic neuron data set: determinism, ground truth = render of the written SWC, valid trees,
measurable image realism, nnU-Net's own integrity check, --force / --swc-dir handling and the CLI."""

from __future__ import annotations

import json

import morphio
import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from nnunetv2_neurino.cli import main
from nnunetv2_neurino.data.render import render_swc
from nnunetv2_neurino.data.synthetic import (
    ImagingParams,
    MorphologyParams,
    crop_tree_to_volume,
    fit_tree_to_volume,
    generate_case,
    generate_neuron,
    list_swc_files,
    write_neuron_dataset,
)
from nnunetv2_neurino.data.synthetic.imaging import BROKEN, DIM, NORMAL, apply_psf, camera, psf_sigma_voxels
from nnunetv2_neurino.errors import NeurinoError
from nnunetv2_neurino.swc import SOMA, SWCTree, read_swc, write_swc

SHAPE = (40, 40, 40)
N_REALISM = 6          # cases averaged by the realism tests


def _read_nii(path):
    img = sitk.ReadImage(str(path))
    return sitk.GetArrayFromImage(img), tuple(reversed(img.GetSpacing()))


@pytest.fixture(scope="module")
def cases():
    return [generate_case(seed, 0, SHAPE) for seed in range(N_REALISM)]


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """A small anisotropic data set (z spacing 2) written once for the file-level tests."""
    root = tmp_path_factory.mktemp("raw")
    folder = write_neuron_dataset(root, 501, n_train=3, n_test=1, shape=(20, 40, 40), seed=3,
                                  spacing=(2.0, 1.0, 1.0), progress=False)
    return folder


def _distractor_mask(case) -> np.ndarray:
    mask = np.zeros(case.label.shape, bool)
    for d in case.distractors:
        mask |= render_swc(d, case.label.shape, case.spacing, radius_floor=1.0)
    return mask


def _background_mask(case) -> np.ndarray:
    """Voxels > 4 voxels from the labelled neuron and from every distractor (blobs included)."""
    far_label = ndimage.distance_transform_edt(case.label == 0) > 4
    far_distractor = ndimage.distance_transform_edt(~_distractor_mask(case)) > 4
    no_blob = ndimage.gaussian_filter(case.imaging.distractor_emission, 1.5) < 0.01
    return far_label & far_distractor & no_blob


# ------------------------------------------------------------------------------------------ determinism
def test_same_seed_same_case_other_seed_other_case():
    a, b = generate_case(7, 2, (32, 32, 32)), generate_case(7, 2, (32, 32, 32))
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.label, b.label)
    np.testing.assert_array_equal(a.tree.xyz, b.tree.xyz)
    for other in (generate_case(8, 2, (32, 32, 32)), generate_case(7, 3, (32, 32, 32))):
        assert not np.array_equal(a.image, other.image)
        assert not np.array_equal(a.label, other.label)


def test_written_dataset_is_deterministic(tmp_path, written):
    again = write_neuron_dataset(tmp_path, 501, n_train=3, n_test=1, shape=(20, 40, 40), seed=3,
                                 spacing=(2.0, 1.0, 1.0), progress=False)
    files = sorted(p.relative_to(written) for p in written.rglob("*.nii.gz"))
    assert files == sorted(p.relative_to(again) for p in again.rglob("*.nii.gz")) and len(files) == 8
    for rel in files:
        np.testing.assert_array_equal(_read_nii(written / rel)[0], _read_nii(again / rel)[0])
    for rel in sorted(p.relative_to(written) for p in written.rglob("*.swc")):
        assert (written / rel).read_text() == (again / rel).read_text()


# ------------------------------------------------------------------------------------------ ground truth
def test_label_equals_render_of_written_swc(written):
    meta = json.loads((written / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "zscore"} and meta["labels"] == {"background": 0, "neuron": 1}
    assert meta["numTraining"] == 3 and meta["numTest"] == 1
    n = 0
    for split in ("Tr", "Ts"):
        for lab_path in sorted((written / f"labels{split}").glob("*.nii.gz")):
            case = lab_path.name[:-len(".nii.gz")]
            label, spacing = _read_nii(lab_path)
            image, img_spacing = _read_nii(written / f"images{split}" / f"{case}_0000.nii.gz")
            assert spacing == img_spacing == (2.0, 1.0, 1.0) and image.shape == label.shape == (20, 40, 40)
            assert image.dtype == np.uint16
            tree = read_swc(written / f"swc{split}" / f"{case}.swc")
            expected = render_swc(tree, label.shape, spacing, radius_floor=1.0)
            np.testing.assert_array_equal(label.astype(bool), expected)
            assert set(np.unique(label)) == {0, 1}
            n += 1
    assert n == 4


def test_swc_is_one_rooted_tree_that_morphio_loads(written):
    for path in sorted(written.glob("swcT[rs]/*.swc")):
        tree = read_swc(path)
        assert tree.roots.size == 1 and tree.find_cycle_node() is None
        assert tree.types[tree.roots[0]] == SOMA and np.count_nonzero(tree.types == SOMA) == 1
        children = tree.children_counts()
        assert np.count_nonzero(children >= 2) >= 1          # it branches
        m = morphio.Morphology(str(path))
        assert len(m.root_sections) >= 3                     # the primary neurites
        assert len(m.sections) >= len(m.root_sections) + 2   # plus side branches
        # every node in the volume (voxel coordinates, x = last axis)
        zyx = tree.to_zyx()
        assert np.all(zyx >= -1e-6) and np.all(zyx <= np.array([19, 39, 39]) + 1e-6)


def test_generated_neuron_tapers_and_branches():
    rng = np.random.default_rng(0)
    params = MorphologyParams()
    tree = generate_neuron((64, 64, 64), rng=rng, params=params)
    pidx = tree.parent_index
    child = np.flatnonzero((pidx >= 0) & (tree.types[np.maximum(pidx, 0)] != SOMA))
    # radii never grow from parent to child (tapering, thinner side branches)
    assert np.all(tree.radius[child] <= tree.radius[pidx[child]] + 1e-3)
    assert tree.radius.min() >= params.min_radius - 1e-3
    steps = np.linalg.norm(tree.xyz[child] - tree.xyz[pidx[child]], axis=1)
    assert np.all(steps <= params.step + 1e-3)


# ------------------------------------------------------------------------------------------ realism
def test_foreground_brighter_than_background_and_snr_band(cases):
    """SNR = (mean over label − mean of background) / std of background is in [3, 25] for every case
    (measured 5.5–15 over seeds 0–11 at 48³)."""
    for case in cases:
        image = case.image.astype(float)
        bg = image[_background_mask(case)]
        fg = image[case.label > 0]
        snr = (fg.mean() - bg.mean()) / bg.std()
        assert fg.mean() > bg.mean()
        assert 3.0 <= snr <= 25.0, snr


def test_psf_is_wider_in_z_single_point_and_image_autocorrelation(cases):
    params = ImagingParams()
    point = np.zeros((31, 31, 31), np.float32)
    point[15, 15, 15] = 1.0
    for spacing in ((1.0, 1.0, 1.0), (2.0, 1.0, 1.0)):
        blurred = apply_psf(point, spacing, params)
        profiles = [blurred.sum(axis=tuple(a for a in range(3) if a != ax)) for ax in range(3)]
        var = [float(np.sum(p * (np.arange(31) - 15) ** 2) / p.sum()) for p in profiles]
        sz, sy, sx = psf_sigma_voxels(spacing, params)
        np.testing.assert_allclose(np.sqrt(var), [sz, sy, sx], rtol=0.05)
        # physical widths: z wider than x
        assert np.sqrt(var[0]) * spacing[0] > 2.0 * np.sqrt(var[2]) * spacing[2]

    def corr(a, axis, lag=2):
        a = a - a.mean()
        lo, hi = [slice(None)] * 3, [slice(None)] * 3
        lo[axis], hi[axis] = slice(lag, None), slice(None, -lag)
        return float((a[tuple(lo)] * a[tuple(hi)]).mean() / a.var())

    # the noisy images themselves are smoother along z than along x (isotropic spacing)
    cz = np.mean([corr(c.image.astype(float), 0) for c in cases])
    cx = np.mean([corr(c.image.astype(float), 2) for c in cases])
    assert cz > cx + 0.03, (cz, cx)


def test_dim_and_broken_stretches_are_darker(cases):
    normal, dim, broken, background = [], [], [], []
    for case in cases:
        smooth = ndimage.gaussian_filter(case.image.astype(float), 0.7)
        zyx = tuple(np.rint(case.tree.to_zyx()).astype(int).T)
        clear = ndimage.distance_transform_edt(~_distractor_mask(case))[zyx] > 3
        vals, state = smooth[zyx], case.imaging.state
        normal.append(vals[clear & (state == NORMAL)].mean())
        if np.any(clear & (state == DIM)):
            dim.append(vals[clear & (state == DIM)].mean())
        if np.any(clear & (state == BROKEN)):
            broken.append(vals[clear & (state == BROKEN)].mean())
        background.append(case.image[_background_mask(case)].mean())
    assert len(dim) >= N_REALISM - 1 and len(broken) >= N_REALISM - 2
    n, d, b, bg = np.mean(normal), np.mean(dim), np.mean(broken), np.mean(background)
    assert d < n - 0.25 * (n - bg)
    assert b < n - 0.5 * (n - bg)       # broken stretches sit much closer to the background


def test_distractors_bright_in_image_absent_from_label(cases):
    seen = 0
    for case in cases:
        assert len(case.distractors) >= 1
        dmask = _distractor_mask(case)
        far = dmask & (ndimage.distance_transform_edt(case.label == 0) > 3)
        if far.sum() < 20:
            continue
        seen += 1
        # absent from the label: only where they cross the labelled neuron
        assert np.count_nonzero(dmask & (case.label > 0)) < 0.15 * np.count_nonzero(dmask)
        bg = case.image[_background_mask(case)].astype(float)
        assert case.image[far].mean() > bg.mean() + 2.0 * bg.std()
    assert seen >= N_REALISM - 1


def test_intensity_threshold_is_not_enough(cases):
    """The signal is there but a global threshold cannot segment it: the best (oracle) threshold of the
    smoothed, background-subtracted image gets Dice 0.3-0.85 (measured 0.50-0.68 on seeds 0-7 at 40³):
    distractors, blobs and dim stretches are what a trained network has to learn to handle."""
    for case in cases:
        smooth = ndimage.gaussian_filter(case.image.astype(float), 1.0)
        high = smooth - ndimage.gaussian_filter(smooth, 6.0)
        lab = case.label > 0
        best = max(2 * np.count_nonzero((high > t) & lab) / (np.count_nonzero(high > t) + lab.sum())
                   for t in np.percentile(high, np.linspace(85, 99.8, 40)))
        assert 0.3 <= best <= 0.85, best


def test_camera_noise_is_shot_plus_read_noise():
    """Poisson + Gaussian: variance = expected photons + read noise² (+ 1/12 for rounding to uint16)."""
    rng = np.random.default_rng(0)
    for photons in (5.0, 50.0, 400.0):
        expected = np.full((64, 64, 64), photons, np.float32)
        counts = camera(expected, rng, read_noise=3.0, offset=100.0, dtype="float32")
        assert abs(counts.mean() - (photons + 100.0)) < 4 * np.sqrt((photons + 9.0) / counts.size)
        np.testing.assert_allclose(counts.var(), photons + 9.0, rtol=0.02)
        rounded = camera(expected, rng, read_noise=3.0, offset=100.0, dtype="uint16")
        assert rounded.dtype == np.uint16
        np.testing.assert_allclose(rounded.astype(float).var(), photons + 9.0 + 1 / 12, rtol=0.02)
    with pytest.raises(NeurinoError, match="dtype"):
        camera(expected, rng, 3.0, 100.0, dtype="int8")


def test_depth_falloff_along_z():
    params = ImagingParams(falloff=(0.5, 0.5), background=(0.0, 0.0), n_blobs=(0, 0), n_fibres=(0, 0),
                           second_neuron_probability=0.0)
    case = generate_case(1, 0, (32, 32, 32), imaging_params=params)
    im = case.imaging
    clean = (im.expected - params.offset) / im.photons
    unattenuated = apply_psf(im.neuron_emission, case.spacing, params)
    ok = unattenuated > 0.05
    ratio = clean[ok] / unattenuated[ok]
    z = np.nonzero(ok)[0]
    assert np.corrcoef(z, ratio)[0, 1] < -0.8
    assert ratio[z <= 3].mean() > 0.9 and ratio[z >= 28].mean() < 0.6


# ------------------------------------------------------------------------------------------ files, errors
def test_nnunet_dataset_integrity(written):
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    verify_dataset_integrity(str(written), num_processes=1)


def test_force_semantics(tmp_path):
    folder = write_neuron_dataset(tmp_path, 12, n_train=1, n_test=0, shape=(16, 16, 16), progress=False)
    image = _read_nii(folder / "imagesTr" / "neuron_000_0000.nii.gz")[0]
    with pytest.raises(NeurinoError, match="Dataset012_NeurinoSynthetic.*already exists"):
        write_neuron_dataset(tmp_path, 12, n_train=1, n_test=0, shape=(16, 16, 16), seed=1, progress=False)
    np.testing.assert_array_equal(_read_nii(folder / "imagesTr" / "neuron_000_0000.nii.gz")[0], image)
    (folder / "stale.txt").write_text("old")
    again = write_neuron_dataset(tmp_path, 12, n_train=1, n_test=0, shape=(16, 16, 16), seed=1, force=True,
                                 progress=False)
    assert again == folder and not (folder / "stale.txt").exists()
    assert not np.array_equal(_read_nii(folder / "imagesTr" / "neuron_000_0000.nii.gz")[0], image)
    assert [p.name for p in tmp_path.iterdir()] == [folder.name]      # no partial folders left


def test_bad_swc_dir(tmp_path):
    with pytest.raises(NeurinoError, match="does not exist"):
        write_neuron_dataset(tmp_path, 13, swc_dir=tmp_path / "missing", progress=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no swc here")
    with pytest.raises(NeurinoError, match=r"empty holds no SWC"):
        write_neuron_dataset(tmp_path, 13, swc_dir=empty, progress=False)
    assert not any(p.name.startswith("Dataset013") for p in tmp_path.iterdir())


def test_unreadable_swc_files_are_not_drawn(tmp_path):
    swc_dir = tmp_path / "swcs"
    swc_dir.mkdir()
    write_swc(generate_neuron((24, 32, 32), rng=np.random.default_rng(0)), swc_dir / "a_good.swc")
    (swc_dir / "b_bad.swc").write_text("garbage line\n")
    with pytest.warns(UserWarning, match=r"1 unreadable SWC file\(s\) not used .*b_bad\.swc:1"):
        folder = write_neuron_dataset(tmp_path, 15, n_train=2, n_test=1, shape=(24, 32, 32), swc_dir=swc_dir,
                                      progress=False)
    log = (folder / "conversion_log.tsv").read_text()
    assert len(list((folder / "labelsTr").iterdir())) == 2 and len(list((folder / "labelsTs").iterdir())) == 1
    assert "b_bad" not in log and all(f"a_good.swc, seed 0, case {i}" in log for i in range(3))
    (swc_dir / "a_good.swc").write_text("1 3 nan 0 0 1 -1\n")
    with pytest.raises(NeurinoError, match=r"no SWC file could be read .*a_good\.swc:1.*b_bad\.swc:1"):
        write_neuron_dataset(tmp_path, 16, swc_dir=swc_dir, progress=False)
    assert not any(p.name.startswith("Dataset016") for p in tmp_path.iterdir())


@pytest.mark.parametrize("mode", ["fit", "crop"])
def test_swc_dir_morphologies_fit_and_label_matches(tmp_path, mode):
    swc_dir = tmp_path / "swcs"
    swc_dir.mkdir()
    for k in range(2):   # big neurons in "micrometres", far from the origin
        t = generate_neuron((200, 300, 300), rng=np.random.default_rng(k))
        t = SWCTree(t.ids, t.types, t.xyz * 1.7 + 1000.0, t.radius * 1.7, t.parent)
        write_swc(t, swc_dir / f"cell{k}.swc")
    assert [p.name for p in list_swc_files(swc_dir)] == ["cell0.swc", "cell1.swc"]
    folder = write_neuron_dataset(tmp_path, 14, n_train=3, n_test=0, shape=(24, 32, 32), swc_dir=swc_dir,
                                  progress=False, swc_mode=mode)
    assert json.loads((folder / "dataset.json").read_text())["neurino"]["swc_mode"] == mode
    log = (folder / "conversion_log.tsv").read_text()
    assert "cell0.swc, seed 0, case 0" in log and "cell1.swc, seed 0, case 1" in log
    assert "cell0.swc, seed 0, case 2" in log
    for path in sorted((folder / "swcTr").glob("*.swc")):
        tree = read_swc(path)
        zyx = tree.to_zyx()
        margin = 2 if mode == "fit" else 0
        assert np.all(zyx >= margin - 1e-3) and np.all(zyx <= np.array([23, 31, 31]) - margin + 1e-3)
        label, spacing = _read_nii(folder / "labelsTr" / f"{path.stem}.nii.gz")
        np.testing.assert_array_equal(label.astype(bool), render_swc(tree, label.shape, spacing))


def test_fit_keeps_shape_up_to_similarity():
    tree = generate_neuron((64, 64, 64), rng=np.random.default_rng(3))
    fitted = fit_tree_to_volume(tree, (32, 48, 40), rng=np.random.default_rng(0), margin=2.0, min_radius=0.0)
    # a rotation + uniform scaling keeps ratios of pairwise distances
    a = np.linalg.norm(tree.xyz[:, None] - tree.xyz[None], axis=-1)
    b = np.linalg.norm(fitted.xyz[:, None] - fitted.xyz[None], axis=-1)
    off = ~np.eye(tree.n, dtype=bool)
    scale = b[off] / a[off]
    np.testing.assert_allclose(scale, np.median(scale), rtol=2e-3, atol=0)
    extent = fitted.to_zyx().max(0) - fitted.to_zyx().min(0)
    assert np.isclose(np.max(extent / (np.array([31, 47, 39]) - 4)), 1.0, atol=1e-3)


def test_crop_cuts_edges_at_the_faces():
    # a straight neurite along x, far longer than the window: one piece from face to face
    xyz = np.stack([np.linspace(-200, 200, 201), np.full(201, 7.0), np.full(201, 5.0)], axis=1)
    line = SWCTree.from_parent_index(xyz, np.arange(201) - 1, radius=1.0)
    for seed in range(5):
        crop = crop_tree_to_volume(line, (10, 16, 40), rng=np.random.default_rng(seed), flip=False)
        assert crop.roots.size == 1 and crop.find_cycle_node() is None
        x = crop.xyz[:, 0]
        assert np.isclose(x.min(), 0.0) and np.isclose(x.max(), 39.0)
        assert np.isclose(crop.cable_length(), 39.0, atol=1e-2)      # the window's width
        assert np.ptp(crop.xyz[:, 1]) < 1e-6 and np.ptp(crop.xyz[:, 2]) < 1e-6   # still straight
    # a tree smaller than the window comes back whole, only shifted (native scale)
    tree = generate_neuron((24, 24, 24), rng=np.random.default_rng(2))
    crop = crop_tree_to_volume(tree, (60, 60, 60), rng=np.random.default_rng(0), flip=False, min_radius=0.0)
    assert crop.n == tree.n and crop.roots.size == 1
    shift = crop.xyz - tree.xyz
    np.testing.assert_allclose(shift, shift[:1].repeat(tree.n, 0), atol=2e-3)
    np.testing.assert_allclose(crop.radius, tree.radius, atol=1e-3)
    with pytest.raises(NeurinoError, match="scale must be positive"):
        crop_tree_to_volume(tree, (60, 60, 60), scale=0.0)


def test_cwmbs_swc_folder(shared_dir, tmp_path):
    folder = write_neuron_dataset(tmp_path, 15, n_train=2, n_test=0, shape=(32, 48, 48),
                                  swc_dir=shared_dir / "data" / "cwmbs_swc", progress=False)
    log = (folder / "conversion_log.tsv").read_text()
    assert "SN1.swc" in log and "parent id missing" in log       # reader warnings kept in the log
    # the CWMBS files themselves fail in MorphIO (missing parents); the written ones load. Their type
    # changes along unbranched sections come from the originals, hence the MorphIO option.
    for path in sorted((folder / "swcTr").glob("*.swc")):
        m = morphio.Morphology(str(path), morphio.Option.allow_unifurcated_section_change)
        assert len(m.root_sections) >= 1


# ------------------------------------------------------------------------------------------ CLI
def test_cli_make_dataset_with_preview(tmp_path, capsys):
    from PIL import Image

    argv = ["make-dataset", "-o", str(tmp_path), "-d", "21", "--n-train", "2", "--n-test", "1",
            "--shape", "16", "24", "24", "--seed", "5", "--preview"]
    assert main(argv) == 0
    folder = tmp_path / "Dataset021_NeurinoSynthetic"
    assert f"wrote {folder}" in capsys.readouterr().out
    pngs = sorted((folder / "preview").glob("*.png"))
    assert [p.stem for p in pngs] == ["neuron_000", "neuron_001", "neuron_002"]
    with Image.open(pngs[0]) as im:
        assert im.size[0] > 3 * im.size[1] and np.asarray(im).std() > 10
    assert main(argv) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(argv + ["--force", "--dtype", "float32"]) == 0
    assert _read_nii(folder / "imagesTr" / "neuron_000_0000.nii.gz")[0].dtype == np.float32
    assert main(["make-dataset", "-o", str(tmp_path), "-d", "22", "--swc-dir", str(tmp_path / "nope")]) == 2
    assert "nope does not exist" in capsys.readouterr().err
    assert main(["make-dataset", "-o", str(tmp_path), "-d", "22", "--swc-scale", "0"]) == 2
    assert "--swc-scale must be positive" in capsys.readouterr().err
    assert not (tmp_path / "Dataset022_NeurinoSynthetic").exists()


def test_preview_refuses_bad_input(tmp_path):
    from nnunetv2_neurino.data.preview import preview_dataset, write_case_preview

    with pytest.raises(NeurinoError, match="no images"):
        preview_dataset(tmp_path)
    with pytest.raises(NeurinoError, match="label shape"):
        write_case_preview(tmp_path / "x.png", np.zeros((4, 5, 6)), np.zeros((4, 5, 5)))
    assert not (tmp_path / "x.png").exists()


def test_cli_help_renders_and_lists_make_dataset(capsys):
    # argparse %-formats every help text: a stray "%" in any command's HELP breaks `neurino --help`
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "make-dataset" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["make-dataset", "--help"])
    assert "--swc-mode" in capsys.readouterr().out


def test_cli_default_output_is_nnunet_raw(tmp_path, monkeypatch):
    monkeypatch.setenv("nnUNet_raw", str(tmp_path))
    assert main(["make-dataset", "-d", "23", "--n-train", "1", "--n-test", "0", "--shape", "12", "12",
                 "12"]) == 0
    assert (tmp_path / "Dataset023_NeurinoSynthetic" / "dataset.json").is_file()
