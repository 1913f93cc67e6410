"""`neurino trace` and the tracer's volume reader: file formats, folder mode, refusals."""

from __future__ import annotations

import numpy as np
import pytest

from nnunetv2_neurino.cli import main
from nnunetv2_neurino.data.readers import write_nifti
from nnunetv2_neurino.data.render import render_swc
from nnunetv2_neurino.data.volumes import read_volume
from nnunetv2_neurino.errors import NeurinoError
from nnunetv2_neurino.io_utils import OUTPUT_MARKER
from nnunetv2_neurino.swc import SWCTree, read_swc
from nnunetv2_neurino.tracing import trace_mask


@pytest.fixture()
def mask() -> np.ndarray:
    xyz = np.array([[4.0, 6, 5], [20, 10, 8], [10, 20, 12]])
    tree = SWCTree.from_parent_index(xyz, [-1, 0, 1], radius=1.5)
    return render_swc(tree, (18, 26, 26))


def _xyz_set(t: SWCTree) -> set:
    return {tuple(np.round(p, 6)) for p in t.xyz}


def test_read_volume_formats(tmp_path, mask):
    prob = np.stack([1.0 - mask, mask * 0.9]).astype(np.float32)            # nnU-Net (C, Z, Y, X)
    np.savez_compressed(tmp_path / "case.npz", probabilities=prob)
    vol, spacing = read_volume(tmp_path / "case.npz")
    np.testing.assert_array_equal(vol, prob[1])
    assert spacing == (1.0, 1.0, 1.0)
    np.save(tmp_path / "m.npy", mask.astype(np.uint8))
    np.testing.assert_array_equal(read_volume(tmp_path / "m.npy")[0], mask)
    write_nifti(tmp_path / "m.nii.gz", mask.astype(np.uint8), spacing=(2.0, 1.0, 0.5))
    vol, spacing = read_volume(tmp_path / "m.nii.gz")
    np.testing.assert_array_equal(vol != 0, mask)
    assert spacing == pytest.approx((2.0, 1.0, 0.5))
    three = np.stack([1.0 - 0.9 * mask, mask * 0.3, mask * 0.6]).astype(np.float32)
    np.save(tmp_path / "three.npy", three)                                 # any foreground class
    np.testing.assert_allclose(read_volume(tmp_path / "three.npy")[0], mask * 0.9, atol=1e-6)
    np.savez(tmp_path / "bad.npz", a=mask, b=mask)
    with pytest.raises(NeurinoError, match="probabilities"):
        read_volume(tmp_path / "bad.npz")


def test_trace_command_single_file_and_refusals(tmp_path, mask, capsys):
    np.savez_compressed(tmp_path / "case.npz", probabilities=np.stack([1.0 - mask, mask]).astype(np.float32))
    out = tmp_path / "case.swc"
    assert main(["trace", str(tmp_path / "case.npz"), "-o", str(out), "--root", "4", "6", "5"]) == 0
    got = read_swc(out)
    expected = trace_mask(mask, root=(4, 6, 5))
    assert _xyz_set(got) == _xyz_set(expected)
    assert (got.types == 1).sum() == 1
    assert main(["trace", str(tmp_path / "case.npz"), "-o", str(out)]) == 2         # exists, no --force
    assert "already exists" in capsys.readouterr().err
    assert main(["trace", str(tmp_path / "nope.npz"), "-o", str(tmp_path / "x.swc")]) == 2


def test_trace_command_folder_mode(tmp_path, mask):
    src = tmp_path / "pred"
    src.mkdir()
    write_nifti(src / "a.nii.gz", mask.astype(np.uint8))
    np.save(src / "b.npy", mask[:, ::-1].astype(np.uint8))
    (src / "dataset.json").write_text("{}")                                         # ignored
    flipped = mask[::-1].copy()                                    # nnU-Net: a.npz beside a.nii.gz
    np.savez(src / "a.npz", probabilities=np.stack([1.0 - flipped, flipped]).astype(np.float32))
    out = tmp_path / "swc"
    assert main(["trace", str(src), "-o", str(out), "--min-size", "5"]) == 0
    assert sorted(p.name for p in out.iterdir() if p.name != OUTPUT_MARKER) == ["a.swc", "b.swc"]
    assert _xyz_set(read_swc(out / "a.swc")) == _xyz_set(trace_mask(mask))
    assert _xyz_set(read_swc(out / "b.swc")) == _xyz_set(trace_mask(mask[:, ::-1].copy()))
    assert main(["trace", str(src), "-o", str(out)]) == 2                           # exists
    assert main(["trace", str(src), "-o", str(out), "--force", "--use-probabilities"]) == 0
    assert _xyz_set(read_swc(out / "a.swc")) == _xyz_set(trace_mask(flipped))
    full_n = read_swc(out / "b.swc").n
    assert main(["trace", str(src), "-o", str(out), "--force", "--step", "3"]) == 0
    coarse = read_swc(out / "b.swc")
    expected = trace_mask(mask[:, ::-1].copy(), resample_step=3)
    assert _xyz_set(coarse) == _xyz_set(expected) and coarse.n < full_n / 2


def test_trace_command_threshold_min_size_and_spacing(tmp_path, mask, capsys):
    """--threshold picks a probability map's foreground, --min-size drops specks, --spacing sets radii."""
    from scipy.ndimage import binary_dilation

    halo = binary_dilation(mask, iterations=2) & ~mask
    prob = np.where(mask, 0.9, np.where(halo, 0.6, 0.05)).astype(np.float32)
    prob[17, 25, 23:26] = 0.9                                    # a 3-voxel speck far from the tube
    np.save(tmp_path / "p.npy", prob)
    out = tmp_path / "o.swc"

    def trace(*extra) -> SWCTree:
        assert main(["trace", str(tmp_path / "p.npy"), "-o", str(out), "--force", *extra]) == 0
        return read_swc(out)

    thick, thin = trace("--threshold", "0.5"), trace("--threshold", "0.7")
    assert len(thick.roots) == len(thin.roots) == 1                   # speck < 10 voxels removed
    assert _xyz_set(thin) == _xyz_set(trace_mask(mask))              # 0.7 keeps the tube only
    assert np.median(thick.radius) >= np.median(thin.radius) + 1.0   # the halo thickens the tube
    assert len(trace("--threshold", "0.7", "--min-size", "1").roots) == 2
    aniso = trace("--threshold", "0.7", "--spacing", "1", "1", "0.5")
    expected = trace_mask(mask, spacing=(1, 1, 0.5))
    np.testing.assert_allclose(sorted(aniso.radius), sorted(np.round(expected.radius, 6)), atol=1e-6)
    assert np.median(aniso.radius) > np.median(thin.radius)        # radii in units of the finest axis
    for bad in (["--step", "0"], ["--prune", "-1"]):
        assert main(["trace", str(tmp_path / "p.npy"), "-o", str(tmp_path / "x.swc"), *bad]) == 2
        assert not (tmp_path / "x.swc").exists()
    capsys.readouterr()


@pytest.mark.parametrize("case", ["ones", "bar2", "bar4"])
def test_trace_command_degenerate_masks_exit_0_with_valid_swc(tmp_path, case):
    """These raised 'zero-size array' before the tracer used the robust skeleton."""
    if case == "ones":
        vol = np.ones((32, 32, 32), np.uint8)
    else:
        t = int(case[-1])
        vol = np.zeros((30, 12, 12), np.uint8)
        vol[3:27, 4:4 + t, 4:4 + t] = 1
    np.save(tmp_path / "m.npy", vol)
    assert main(["trace", str(tmp_path / "m.npy"), "-o", str(tmp_path / "m.swc")]) == 0
    tree = read_swc(tmp_path / "m.swc")
    assert tree.n >= 1 and len(tree.roots) == 1


def test_unknown_tracer_same_error_from_trace_and_evaluate(tmp_path, capsys):
    """Both commands check --tracer through the tracer registry: exit 2, one message naming every tracer."""
    from nnunetv2_neurino.tracing.registry import TRACER_NAMES

    np.save(tmp_path / "m.npy", np.ones((4, 4, 4), np.uint8))
    (tmp_path / "pred").mkdir()
    (tmp_path / "gt").mkdir()
    messages = []
    for argv in (["trace", str(tmp_path / "m.npy"), "-o", str(tmp_path / "m.swc"), "--tracer", "magic"],
                 ["evaluate", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"), "--tracer",
                  "builtin", "magic", "-o", str(tmp_path / "ev")]):
        assert main(argv) == 2
        messages.append(capsys.readouterr().err.strip().splitlines()[-1].split("error: ", 1)[1])
    assert messages[0] == messages[1]
    assert "unknown tracer 'magic'" in messages[0] and all(t in messages[0] for t in TRACER_NAMES)
    assert not (tmp_path / "m.swc").exists() and not (tmp_path / "ev").exists()


def test_trace_json_reports_what_was_written(tmp_path, mask, capsys):
    import json

    np.savez_compressed(tmp_path / "case.npz", probabilities=np.stack([1.0 - mask, mask]).astype(np.float32))
    out = tmp_path / "case.swc"
    capsys.readouterr()
    assert main(["trace", str(tmp_path / "case.npz"), "-o", str(out), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)                    # stdout is one JSON document, nothing else
    tree = read_swc(out)
    assert doc == {"output": str(out), "nodes": tree.n, "trees": len(tree.roots), "empty_reason": None}
    assert tree.n > 0
