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
    assert r["ESA"] == pytest.approx(21 / 38) and r["DSA"] == pytest.approx(4) and r["n21"] == 19
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
    assert main(["swc-distance", a, a]) == 0
    assert "ESA" in capsys.readouterr().out


def test_swc_distance_vaa3d_compat_reports_warning(tmp_path, capsys):
    a = _write(tmp_path, "a.swc", "1 3 0 0 0 1 -1\n2 3 10 0 0 1 1\n3 3 10 10 0 1 7\n4 3 10 20 0 1 3\n")
    assert main(["swc-distance", a, a, "--json", "--vaa3d-compat"]) == 0
    out = capsys.readouterr()
    # node 3 links to row 1 in compat mode: segment (10,10)-(0,0) adds int(1+sqrt(200)+0.5) = 15 samples
    plain = 11 + 11
    assert json.loads(out.out)["n12"] == plain + 15 and "missing" in out.err


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
