"""Data-set converters → nnU-Net raw: the public releases' layouts (BigNeuron, NeuroFly, CWMBS,
DIADEM OP) rebuilt with tiny volumes."""

from __future__ import annotations

import json
import sqlite3
import struct
import warnings

import numpy as np
import pytest
import SimpleITK as sitk

from nnunetv2_neurino.cli import main
from nnunetv2_neurino.data.nnunet_raw import split_train_test, unique_case_names
from nnunetv2_neurino.data.readers import write_image
from nnunetv2_neurino.dataset_conversion.neurofly import read_graph_db, skeleton_to_tubes
from nnunetv2_neurino.dataset_conversion.run import convert
from nnunetv2_neurino.errors import NeurinoError
from nnunetv2_neurino.swc import SWCTree, read_swc, write_swc

SHAPE = (12, 20, 24)


def _tree(seed: int) -> SWCTree:
    """A small Y-shaped tree inside SHAPE (x, y, z voxel coordinates)."""
    rng = np.random.default_rng(seed)
    xyz = np.array([[4, 5, 3], [10, 8, 5], [18, 6, 6], [16, 15, 8]], float) + rng.uniform(-1, 1, (4, 3))
    return SWCTree.from_parent_index(xyz, [-1, 0, 1, 1], radius=1.0)


def _image(tree: SWCTree, seed: int, dtype=np.uint8) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 30, SHAPE).astype(dtype)
    z, y, x = np.round(tree.to_zyx()).astype(int).T
    img[z, y, x] = 200
    return img


def _read_nii(path):
    img = sitk.ReadImage(str(path))
    return sitk.GetArrayFromImage(img), tuple(reversed(img.GetSpacing()))


def _check_dataset(folder, n_train, n_test):
    meta = json.loads((folder / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "zscore"}
    assert meta["labels"] == {"background": 0, "neuron": 1}
    assert meta["file_ending"] == ".nii.gz"
    assert meta["numTraining"] == n_train == len(list((folder / "labelsTr").glob("*.nii.gz")))
    assert len(list((folder / "imagesTr").glob("*_0000.nii.gz"))) == n_train
    if n_test:
        assert len(list((folder / "imagesTs").glob("*_0000.nii.gz"))) == n_test
        assert len(list((folder / "labelsTs").glob("*.nii.gz"))) == n_test
    return meta


@pytest.fixture
def bigneuron_src(tmp_path):
    src = tmp_path / "gold166"
    a = src / "p_checked6_mouse_tufts"
    b = src / "p_checked7_taiwan_flycirciut" / "case1"
    a.mkdir(parents=True)
    b.mkdir(parents=True)
    trees = {}
    for i, (folder, fname, swcname) in enumerate([
            (a, "m1.v3dpbd", "m1.swc"), (a, "m2.v3draw", "m2.v3draw.swc"), (a, "m3.tif", "m3.swc"),
            (b, "ChaMARCM-F000586.v3dpbd", "ChaMARCM-F000586_gold_standard.swc")]):
        tree = _tree(i)
        write_image(folder / fname, _image(tree, i))
        write_swc(tree, folder / swcname)
        trees[fname] = tree
    write_image(a / "lonely.v3dpbd", _image(_tree(9), 9))          # no SWC → skipped
    (a / "broken.v3dpbd").write_bytes(b"v3d_volume_pkbitdf_encod" + b"L" + b"\x01\x00" + b"\x00" * 5)
    write_swc(_tree(8), a / "broken.swc")                            # corrupt image → skipped
    return src, trees


def test_bigneuron_conversion_writes_nnunet_dataset(tmp_path, bigneuron_src):
    src, trees = bigneuron_src
    out = tmp_path / "raw"
    report = convert("bigneuron", src, 501, out_root=out, test_fraction=0.25, seed=0, progress=False)
    folder = out / "Dataset501_BigNeuron"
    assert report.path == folder
    meta = _check_dataset(folder, 3, 1)
    assert meta["neurino"]["radius_floor"] == 1.0
    skipped = {s.name: s.reason for s in report.skipped}
    assert "no SWC" in skipped["p_checked6_mouse_tufts_lonely"]
    assert "broken.v3dpbd" in skipped["p_checked6_mouse_tufts_broken"]
    log = (folder / "conversion_log.tsv").read_text()
    assert "lonely" in log and "broken" in log and log.count("\ttrain\t") == 3
    # voxels survive the round trip, the label covers every SWC node, SWCs are kept beside the images
    case = "p_checked6_mouse_tufts_m1"
    split = "Tr" if case in report.train else "Ts"
    image, spacing = _read_nii(folder / f"images{split}" / f"{case}_0000.nii.gz")
    assert np.array_equal(image, _image(trees["m1.v3dpbd"], 0)) and spacing == (1.0, 1.0, 1.0)
    label, _ = _read_nii(folder / f"labels{split}" / f"{case}.nii.gz")
    assert set(np.unique(label)) == {0, 1}
    z, y, x = np.round(trees["m1.v3dpbd"].to_zyx()).astype(int).T
    assert label[z, y, x].all()
    kept = read_swc(folder / f"swc{split}" / f"{case}.swc")
    assert np.allclose(np.sort(kept.xyz, axis=0), np.sort(trees["m1.v3dpbd"].xyz, axis=0), atol=1e-5)
    assert "p_checked7_taiwan_flycirciut_ChaMARCM-F000586" in report.train + report.test


def test_existing_dataset_needs_force_and_ids_stay_unique(tmp_path, bigneuron_src):
    src, _ = bigneuron_src
    out = tmp_path / "raw"
    convert("bigneuron", src, 502, out_root=out, progress=False)
    marker = out / "Dataset502_BigNeuron" / "dataset.json"
    before = marker.stat().st_mtime_ns
    with pytest.raises(NeurinoError, match="already exists"):
        convert("bigneuron", src, 502, out_root=out, progress=False)
    assert marker.stat().st_mtime_ns == before
    with pytest.raises(NeurinoError, match="already used"):
        convert("bigneuron", src, 502, name="Other", out_root=out, progress=False)
    convert("bigneuron", src, 502, out_root=out, force=True, progress=False)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]   # no partial folder left behind


def test_split_is_deterministic_and_sized():
    names = [f"c{i}" for i in range(10)]
    a = split_train_test(names, 0.3, seed=1)
    assert a == split_train_test(list(reversed(names)), 0.3, seed=1)
    assert len(a) == 3 and a <= set(names)
    assert any(split_train_test(names, 0.3, seed=s) != a for s in range(2, 6))
    assert split_train_test(["only"], 0.5, 0) == set()                   # always one training case
    assert unique_case_names(["a b", "a_b", "x.y"]) == ["a_b", "a_b_2", "x_y"]


def test_cwmbs_with_real_swc_topology_and_cli(tmp_path, cwmbs_swc_files):
    """A real CWMBS reconstruction (scaled to a small stack) through `neurino convert cwmbs`."""
    src = tmp_path / "cwmbs"
    (src / "image").mkdir(parents=True)
    (src / "swc").mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        small = read_swc(cwmbs_swc_files[3])
    small.xyz = small.xyz * 0.2
    shape = tuple(int(v) + 3 for v in small.to_zyx().max(0))
    (src / "swc" / "SN45.tif.swc").write_text(_swc_text_with_original_parents(cwmbs_swc_files[3], 0.2))
    write_image(src / "image" / "SN45.tif", np.full(shape, 10, np.uint16), spacing=(2.0, 1.0, 1.0))
    out = tmp_path / "raw"
    assert main(["convert", "cwmbs", str(src), "-d", "7", "-o", str(out), "--test-fraction", "0"]) == 0
    folder = out / "Dataset007_CWMBS"
    _check_dataset(folder, 1, 0)
    _, spacing = _read_nii(folder / "imagesTr" / "SN45_0000.nii.gz")
    assert spacing == (2.0, 1.0, 1.0)
    log = (folder / "conversion_log.tsv").read_text()
    assert "missing" in log.lower()                      # the reader's warning about absent parents is kept
    assert main(["convert", "cwmbs", str(src), "-d", "7", "-o", str(out)]) == 2   # exists, no --force


def _swc_text_with_original_parents(path, scale):
    rows = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        n, t, x, y, z, r, p = parts[:7]
        rows.append(f"{n} {t} {float(x) * scale:.3f} {float(y) * scale:.3f} {float(z) * scale:.3f} {r} {p}")
    return "\n".join(rows) + "\n"


def _generic_layout(tmp_path):
    """Images a.nii.gz, b.nii.gz with SWCs of the same stems, plus an SWC without an image (orphan.swc)."""
    imgs, swcs = tmp_path / "imgs", tmp_path / "swcs"
    imgs.mkdir()
    swcs.mkdir()
    for i, name in enumerate(["a", "b"]):
        write_image(imgs / f"{name}.nii.gz", _image(_tree(i), i), spacing=(1.5, 0.5, 0.5))
        write_swc(_tree(i), swcs / f"{name}.swc")
    write_swc(_tree(5), swcs / "orphan.swc")
    return imgs, swcs


def test_generic_matches_by_stem(tmp_path):
    imgs, swcs = _generic_layout(tmp_path)
    report = convert("generic", imgs, 9, swc_dir=swcs, out_root=tmp_path / "raw", test_fraction=0,
                     progress=False)
    assert report.train == ["a", "b"]
    assert [s.name for s in report.skipped] == ["orphan.swc"]


def _graph_db(path, coord_kind):
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE nodes (nid INTEGER PRIMARY KEY, coord, type INTEGER)")
    con.execute("CREATE TABLE edges (src INTEGER, des INTEGER, type INTEGER)")
    con.execute("CREATE TABLE segments (sid INTEGER, points TEXT)")
    pts = {10: (2, 3, 4), 11: (8, 3, 4), 12: (14, 3, 4), 13: (14, 12, 4), 20: (3, 15, 9), 21: (9, 15, 9)}
    for nid, xyz in pts.items():
        value = (",".join(map(str, xyz)) if coord_kind == "text" else struct.pack("<3d", *xyz))
        con.execute("INSERT INTO nodes VALUES (?, ?, 0)", (nid, value))
    # a cycle 10-11-12-13-10 in one component, and a separate 2-node fragment
    for s, d in [(10, 11), (11, 12), (12, 13), (13, 10), (20, 21)]:
        con.execute("INSERT INTO edges VALUES (?, ?, 0)", (s, d))
    con.commit()
    con.close()
    return pts


@pytest.mark.parametrize("coord_kind", ["text", "blob"])
def test_neurofly_sqlite_graph_becomes_spanning_forest(tmp_path, coord_kind):
    pts = _graph_db(tmp_path / "g.db", coord_kind)
    tree = read_graph_db(tmp_path / "g.db")
    assert tree.n == 6
    assert len(tree.roots) == 2                           # one tree per connected component
    # a spanning forest: cycle broken, no edge lost twice
    assert len(tree.edges()[0]) == 6 - 2
    got = {tuple(np.round(p).astype(int)) for p in tree.xyz}
    assert got == set(pts.values())


def test_neurofly_blocks_with_graph_and_skeleton_labels(tmp_path):
    src = tmp_path / "neurofly"
    (src / "images").mkdir(parents=True)
    (src / "labels").mkdir()
    _graph_db(src / "labels" / "block1.db", "text")
    write_image(src / "images" / "block1.tif", np.full(SHAPE, 5, np.uint8))
    skel = np.zeros(SHAPE, np.uint8)
    skel[6, 10, 3:20] = 1
    write_image(src / "images" / "block2.zarr.zip", np.full(SHAPE, 7, np.uint16), spacing=(2.0, 1.0, 1.0))
    write_image(src / "labels" / "block2.tif", skel)
    write_image(src / "images" / "block3.tif", np.zeros(SHAPE, np.uint8))      # no label → skipped
    (src / "images" / "block4.ims").write_bytes(b"\x89HDF")                    # unsupported → skipped
    out = tmp_path / "raw"
    report = convert("neurofly", src, 11, out_root=out, test_fraction=0, skeleton_radius=2.0, progress=False)
    assert report.train == ["images_block1", "images_block2"]
    assert {s.name for s in report.skipped} == {"images_block3", "block4.ims"}
    folder = out / "Dataset011_NeuroFly"
    assert (folder / "swcTr" / "images_block1.swc").exists()
    assert not (folder / "swcTr" / "images_block2.swc").exists()
    label, spacing = _read_nii(folder / "labelsTr" / "images_block2.nii.gz")
    assert spacing == (2.0, 1.0, 1.0)
    assert np.array_equal(label.astype(bool), skeleton_to_tubes(skel, 2.0, (2.0, 1.0, 1.0)))


def test_skeleton_tubes_match_analytic_cross_section():
    skel = np.zeros((9, 15, 15), bool)
    skel[:, 7, 7] = True                                   # a line along z
    tubes = skeleton_to_tubes(skel, 2.0)
    yy, xx = np.mgrid[:15, :15]
    disk = (yy - 7) ** 2 + (xx - 7) ** 2 <= 4
    assert all(np.array_equal(tubes[z], disk) for z in range(9))
    # coarse z: radius 2 (finest-axis voxels) reaches ±1 slice at z spacing 2
    dot = np.zeros((9, 9, 9), bool)
    dot[4, 4, 4] = True
    aniso = skeleton_to_tubes(dot, 2.0, (2.0, 1.0, 1.0))
    assert aniso[:, 4, 4].nonzero()[0].tolist() == [3, 4, 5]
    assert aniso[4, 4].nonzero()[0].tolist() == [2, 3, 4, 5, 6]


def test_interrupted_conversion_leaves_nothing_that_looks_complete(tmp_path, bigneuron_src, monkeypatch):
    """Ctrl-C in the middle of writing: no DatasetXXX folder, no partial folder, an old data set untouched."""
    import nnunetv2_neurino.data.nnunet_raw as raw

    src, _ = bigneuron_src
    out = tmp_path / "raw"
    calls = {"n": 0}
    real_write = raw._write_nifti

    def write_then_interrupt(path, array, spacing):
        calls["n"] += 1
        if calls["n"] == 3:                                   # after the first case's image and label
            raise KeyboardInterrupt
        real_write(path, array, spacing)

    monkeypatch.setattr(raw, "_write_nifti", write_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        convert("bigneuron", src, 503, out_root=out, progress=False)
    assert calls["n"] == 3 and list(out.iterdir()) == []     # nothing left at all

    monkeypatch.setattr(raw, "_write_nifti", real_write)
    convert("bigneuron", src, 503, out_root=out, progress=False)
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    calls["n"] = 0
    monkeypatch.setattr(raw, "_write_nifti", write_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        convert("bigneuron", src, 503, out_root=out, progress=False, force=True)
    # --force run cut off: old set intact
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before


@pytest.mark.parametrize("seed", range(6))
def test_split_is_drawn_after_dropping_bad_cases(tmp_path, seed):
    """Issue 11: with one usable case and one bad one, the usable case never lands in the test split."""
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for name in ("a", "b"):
        write_image(imgs / f"{name}.nii.gz", _image(_tree(0), 0))
    write_swc(_tree(0), imgs / "a.swc")
    far = _tree(1)
    write_swc(SWCTree(far.ids, far.types, far.xyz + 500.0, far.radius, far.parent), imgs / "b.swc")
    report = convert("generic", imgs, 60, out_root=tmp_path / "raw", test_fraction=0.5, seed=seed,
                     progress=False)
    assert report.train == ["a"] and report.test == []
    assert [s.name for s in report.skipped] == ["b"] and "inside the image" in report.skipped[0].reason
    meta = json.loads((report.path / "dataset.json").read_text())
    assert meta["numTraining"] == 1 and meta["numTest"] == 0 and not (report.path / "imagesTs").exists()


def test_swc_nodes_outside_the_image_are_counted_in_the_log(tmp_path):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    tree = _tree(0)
    # two extra nodes beyond x = 24 and below z = 0; the rest of the tree stays inside SHAPE
    xyz = np.vstack([tree.xyz, [[30.0, 8.0, 5.0], [10.0, 8.0, -3.0]]])
    tree = SWCTree.from_parent_index(xyz, [-1, 0, 1, 1, 2, 1], radius=1.0)
    write_image(imgs / "a.nii.gz", _image(_tree(0), 0))
    write_swc(tree, imgs / "a.swc")
    report = convert("generic", imgs, 61, out_root=tmp_path / "raw", test_fraction=0, progress=False)
    lines = (report.path / "conversion_log.tsv").read_text().splitlines()
    header, row = lines[0].split("\t"), dict(zip(lines[0].split("\t"), lines[1].split("\t")))
    assert "swc_nodes_outside" in header and row["swc_nodes_outside"] == "2" and row["swc_nodes"] == "6"
    assert "2 of 6 SWC nodes lie outside the image (12, 20, 24)" in row["notes"]
    assert len(read_swc(report.path / "swcTr" / "a.swc")) == 6
    label, _ = _read_nii(report.path / "labelsTr" / "a.nii.gz")
    a, b = tree.xyz[2], tree.xyz[4]                     # the edge that leaves through the x = 23 face
    t = (np.arange(20, 24) - a[0]) / (b[0] - a[0])
    x, y, z = np.round(a[None] + t[:, None] * (b - a)[None]).astype(int).T
    assert label[z, y, x].all()        # drawn up to the border, nothing beyond it to draw


def test_convert_json_reports_the_written_data_set(tmp_path, capsys):
    imgs, swcs = _generic_layout(tmp_path)
    capsys.readouterr()
    raw = tmp_path / "raw"
    assert main(["convert", "generic", str(imgs), "--swc-dir", str(swcs), "-d", "9", "-o", str(raw),
                 "--test-fraction", "0", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)                    # stdout: one JSON document
    folder = tmp_path / "raw" / "Dataset009_Generic"
    assert doc["dataset"] == str(folder) and (folder / "dataset.json").is_file()
    assert doc["train"] == ["a", "b"] and doc["test"] == []
    assert [s["name"] for s in doc["skipped"]] == ["orphan.swc"]
    assert doc["log"] == str(folder / "conversion_log.tsv") and (folder / "conversion_log.tsv").is_file()
