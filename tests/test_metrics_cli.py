"""`neurino swc-distance` and `neurino seg-metrics` end to end through the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nnunetv2_neurino.cli import main


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_swc_distance_json_hand_case(tmp_path, capsys):
    a = _write(tmp_path, "a.swc", "1 3 0 0 0 1 -1\n2 3 10 0 0 1 1\n")
    b = _write(tmp_path, "b.swc", "1 3 0 0 0 1 -1\n2 3 5 0 0 1 1\n3 3 10 0 0 1 2\n4 3 5 6 0 1 2\n")
    assert main(["swc-distance", a, b, "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    keys = "ESA12 ESA21 ESA DSA12 DSA21 DSA PDS12 PDS21 PDS n12 n21 n12big n21big".split()
    assert set(keys) <= set(r) and all(isinstance(r[k], (int, float)) for k in keys)
    assert r["ESA"] == pytest.approx(21 / 38) and r["DSA"] == pytest.approx(4) and r["n21"] == 19
    # hand case from Vaa3D neuron_distance's definition; directional values: A lies on B (0),
    # B's side branch is 6 voxels off A
    assert (r["ESA12"], r["DSA12"], r["PDS12"]) == (0, 0, 0)
    assert r["ESA21"] == pytest.approx(21 / 19) and r["DSA21"] == pytest.approx(4)
    assert r["PDS21"] == pytest.approx(5 / 19) and r["PDS"] == pytest.approx(5 / 38)
    assert (r["n12"], r["n12big"], r["n21big"]) == (11, 0, 5)
    # a larger threshold only removes "different" samples
    assert main(["swc-distance", a, b, "--json", "--threshold", "5"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["n21big"] == 2 and r["DSA"] == pytest.approx(5.5)


def test_swc_distance_table_and_nan_json(tmp_path, capsys):
    a = _write(tmp_path, "a.swc", "1 3 0 0 0 1 -1\n2 3 10 0 0 1 1\n")
    one = _write(tmp_path, "one.swc", "1 1 0 0 0 1 -1\n")
    assert main(["swc-distance", a, one, "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["ESA"] is None and r["valid"] is False and "tree 2" in r["flag"]
    assert all(r[k] is None for k in ("ESA12", "ESA21", "DSA", "DSA12", "DSA21", "PDS", "PDS12", "PDS21"))
    assert (r["n12"], r["n21"], r["empty_1"], r["empty_2"]) == (0, 0, False, True)
    assert main(["swc-distance", a, a]) == 0
    assert "ESA" in capsys.readouterr().out


def test_swc_distance_vaa3d_compat_reports_warning(tmp_path, capsys):
    a = _write(tmp_path, "a.swc", "1 3 0 0 0 1 -1\n2 3 10 0 0 1 1\n3 3 10 10 0 1 7\n4 3 10 20 0 1 3\n")
    assert main(["swc-distance", a, a, "--json", "--vaa3d-compat"]) == 0
    out = capsys.readouterr()
    # node 3 links to row 1 in compat mode: segment (10,10)-(0,0) adds int(1+sqrt(200)+0.5) = 15 samples
    plain = 11 + 11
    assert json.loads(out.out)["n12"] == plain + 15 and "missing" in out.err


def test_swc_distance_vaa3d_compat_first_row_with_missing_parent(tmp_path, capsys):
    """The first row's parent is missing: Vaa3D samples a zero-length segment there (one more sample)."""
    a = _write(tmp_path, "a.swc", "5 3 0 0 0 1 4\n6 3 10 0 0 1 5\n")
    b = _write(tmp_path, "b.swc", "5 3 0 3 0 1 4\n6 3 10 3 0 1 5\n")
    assert main(["swc-distance", a, b, "--json"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert main(["swc-distance", a, b, "--json", "--vaa3d-compat"]) == 0
    compat = json.loads(capsys.readouterr().out)
    assert (plain["n12"], plain["n21"]) == (11, 11) and (compat["n12"], compat["n21"]) == (12, 12)
    for r in (plain, compat):                      # every sample is 3 voxels from the other tree
        assert r["ESA"] == pytest.approx(3) and r["DSA"] == pytest.approx(3) and r["PDS"] == 1


def test_swc_distance_missing_file_exit_2(tmp_path, capsys):
    assert main(["swc-distance", str(tmp_path / "nope.swc"), str(tmp_path / "nope.swc")]) == 2
    assert "nope.swc" in capsys.readouterr().err


def test_seg_metrics_npy_and_errors(tmp_path, capsys):
    gt = np.zeros((20, 20, 20), np.uint8)
    gt[5:15, 5:15, 5:15] = 1
    pred = np.roll(gt, 2, axis=2)
    np.save(tmp_path / "gt.npy", gt)
    np.save(tmp_path / "pred.npy", pred)
    assert main(["seg-metrics", str(tmp_path / "pred.npy"), str(tmp_path / "gt.npy"), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["f1"] == pytest.approx(0.8) and r["hd95"] == pytest.approx(2)
    assert main(["seg-metrics", str(tmp_path / "pred.npy"), str(tmp_path / "gt.npy"), "--json",
                 "--spacing", "1", "1", "3"]) == 0
    assert json.loads(capsys.readouterr().out)["hd95"] == pytest.approx(6)
    np.save(tmp_path / "empty.npy", np.zeros_like(gt))
    assert main(["seg-metrics", str(tmp_path / "empty.npy"), str(tmp_path / "gt.npy"), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)          # strict JSON: NaN written as null, with the reason
    assert r["f1"] == 0 and r["hd95"] is None and "prediction empty" in r["flag"]
    np.save(tmp_path / "small.npy", gt[:10])
    assert main(["seg-metrics", str(tmp_path / "small.npy"), str(tmp_path / "gt.npy")]) == 2
    assert "shape" in capsys.readouterr().err


def test_seg_metrics_nifti_spacing_mismatch(tmp_path, capsys):
    from nnunetv2_neurino.data.readers import write_nifti

    m = np.zeros((8, 8, 8), np.uint8)
    m[2:6, 2:6, 2:6] = 1
    write_nifti(tmp_path / "a.nii.gz", m, (2.0, 1.0, 1.0))
    write_nifti(tmp_path / "b.nii.gz", m, (1.0, 1.0, 1.0))
    assert main(["seg-metrics", str(tmp_path / "a.nii.gz"), str(tmp_path / "b.nii.gz")]) == 2
    assert "spacing" in capsys.readouterr().err
    assert main(["seg-metrics", str(tmp_path / "a.nii.gz"), str(tmp_path / "a.nii.gz"), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["f1"] == 1 and r["hd95"] == 0 and r["spacing"] == [2.0, 1.0, 1.0]
