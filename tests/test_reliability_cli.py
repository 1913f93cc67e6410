"""Bad and dangerous inputs to the `neurino` commands (issue 11): refused with a message, inputs untouched.

Every case is listed in docs/reliability.md.
"""

from __future__ import annotations

import hashlib
import os
import stat

import numpy as np
import pytest

from nnunetv2_neurino.cli import main
from nnunetv2_neurino.data.readers import write_nifti
from nnunetv2_neurino.errors import NeurinoError
from nnunetv2_neurino.io_utils import OUTPUT_MARKER, atomic_directory, check_output_paths


def _bar(shape=(12, 12, 24)) -> np.ndarray:
    """A 3x3-voxel bar along x: one tree for the built-in tracer."""
    m = np.zeros(shape, np.uint8)
    m[5:8, 5:8, 2:-2] = 1
    return m


def _digest(root) -> dict[str, str]:
    """Every file under ``root`` (or ``root`` itself) → sha256, to assert byte-for-byte survival."""
    root = os.fspath(root)
    if os.path.isfile(root):
        return {root: hashlib.sha256(open(root, "rb").read()).hexdigest()}
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            out[os.path.relpath(p, root)] = hashlib.sha256(open(p, "rb").read()).hexdigest()
    return out


@pytest.fixture
def masks(tmp_path):
    src = tmp_path / "masks"
    src.mkdir()
    write_nifti(src / "a.nii.gz", _bar())
    write_nifti(src / "b.nii.gz", _bar()[:, ::-1].copy())
    (src / "notes.txt").write_text("unrelated file of the user")
    return src


# --- §1 --force never loses data -------------------------------------------------------------------------

def test_trace_into_the_current_folder_with_force_is_refused(masks, monkeypatch, capsys):
    monkeypatch.chdir(masks.parent)
    before = _digest(masks.parent)
    assert main(["trace", "masks", "-o", ".", "--force"]) == 2
    err = capsys.readouterr().err
    assert "contains the input masks" in err and "--force" not in err.split("error:")[1]
    assert _digest(masks.parent) == before


def test_trace_onto_its_input_folder_with_force_is_refused(masks, capsys):
    before = _digest(masks)
    assert main(["trace", str(masks), "-o", str(masks), "--force"]) == 2
    assert "is the input" in capsys.readouterr().err
    assert main(["trace", str(masks), "-o", str(masks / "swc"), "--force"]) == 2     # inside the input
    assert "lies inside the input" in capsys.readouterr().err
    assert _digest(masks) == before


def test_trace_onto_its_input_file_with_force_is_refused(masks, capsys):
    before = _digest(masks)
    assert main(["trace", str(masks / "a.nii.gz"), "-o", str(masks / "a.nii.gz"), "--force"]) == 2
    assert "is the input" in capsys.readouterr().err
    assert _digest(masks) == before


def test_evaluate_onto_the_predictions_with_force_is_refused(masks, tmp_path, capsys):
    gt = tmp_path / "gt"
    gt.mkdir()
    write_nifti(gt / "a.nii.gz", _bar())
    before = _digest(masks)
    assert main(["evaluate", "--pred", str(masks), "--gt", str(gt), "-o", str(masks), "--force",
                 "--no-figures"]) == 2
    err = capsys.readouterr().err
    assert str(masks) in err and "is the input" in err
    assert _digest(masks) == before


def test_folder_force_replaces_only_marked_folders_and_follows_the_umask(tmp_path, capsys):
    user = tmp_path / "user"
    user.mkdir()
    (user / "thesis.tex").write_text("years of work")
    with pytest.raises(NeurinoError, match="not written by neurino") as e:
        with atomic_directory(user, force=True):
            pass
    assert "--force" not in str(e.value) and (user / "thesis.tex").read_text() == "years of work"
    old = os.umask(0o022)
    try:
        with atomic_directory(tmp_path / "ours") as tmp:
            (tmp / "x").write_text("1")
        with atomic_directory(tmp_path / "ours", force=True) as tmp:         # marked: replaced
            (tmp / "y").write_text("2")
    finally:
        os.umask(old)
    ours = tmp_path / "ours"
    assert sorted(p.name for p in ours.iterdir()) == sorted([OUTPUT_MARKER, "y"])
    assert stat.S_IMODE(ours.stat().st_mode) == 0o755                            # not mkdtemp's 0700
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporaries


def test_current_and_home_folders_are_never_replaced(tmp_path, monkeypatch):
    work = tmp_path / "work"
    with atomic_directory(work) as tmp:
        (tmp / "x").write_text("1")
    monkeypatch.chdir(work)                            # even a neurino output, once it is the current folder
    for target in (".", str(work), str(tmp_path)):
        with pytest.raises(NeurinoError, match="current folder"):
            with atomic_directory(target, force=True):
                pass
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / OUTPUT_MARKER).write_text("")
    with pytest.raises(NeurinoError, match="home folder"):
        with atomic_directory(tmp_path / "home", force=True):
            pass
    assert (work / "x").read_text() == "1"


def test_check_output_paths_resolves_links(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "data")
    with pytest.raises(NeurinoError, match="is the input"):
        check_output_paths([tmp_path / "link"], [tmp_path / "data"])
    check_output_paths([tmp_path / "out"], [tmp_path / "data", None])          # unrelated: fine


def test_other_commands_refuse_outputs_over_inputs(tmp_path, capsys):
    ck = tmp_path / "k3.pth"
    ck.write_bytes(b"not really a checkpoint")
    before = _digest(ck)
    assert main(["upkern", str(ck), "-o", str(ck), "--force"]) == 2
    assert "is the input" in capsys.readouterr().err and _digest(ck) == before
    src = tmp_path / "src"
    src.mkdir()
    (src / "x.swc").write_text("1 3 0 0 0 1 -1\n")
    assert main(["convert", "generic", str(src), "-d", "7", "-o", str(src), "--force"]) == 2
    assert "lies inside the input" in capsys.readouterr().err and sorted(os.listdir(src)) == ["x.swc"]


# --- §2 seg-metrics on probabilities ---------------------------------------------------------------------

def test_seg_metrics_refuses_probabilities_nan_and_absent_labels(tmp_path, capsys):
    gt = _bar().astype(np.uint8)
    prob = np.where(gt > 0, 0.9, 0.1).astype(np.float32)             # 0.5-threshold == gt, but all nonzero
    np.save(tmp_path / "gt.npy", gt)
    np.save(tmp_path / "prob.npy", prob)
    assert main(["seg-metrics", str(tmp_path / "prob.npy"), str(tmp_path / "gt.npy")]) == 2
    assert "--threshold" in capsys.readouterr().err
    assert main(["seg-metrics", str(tmp_path / "prob.npy"), str(tmp_path / "gt.npy"), "--threshold", "0.5",
                 "--json"]) == 0
    assert '"f1": 1.0' in capsys.readouterr().out
    nan = prob.copy()
    nan[0, 0, 0] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    assert main(["seg-metrics", str(tmp_path / "nan.npy"), str(tmp_path / "gt.npy"),
                 "--threshold", "0.5"]) == 2
    assert "nan.npy" in capsys.readouterr().err
    assert main(["seg-metrics", str(tmp_path / "gt.npy"), str(tmp_path / "gt.npy"), "--label", "3"]) == 2
    assert "neither" in capsys.readouterr().err


# --- §5 tracebacks become messages; folder runs go on --------------------------------------------------

def test_file_output_onto_a_folder_or_an_unwritable_place(masks, tmp_path, capsys):
    (tmp_path / "dir").mkdir()
    assert main(["trace", str(masks / "a.nii.gz"), "-o", str(tmp_path / "dir"), "--force"]) == 2
    assert "is a folder" in capsys.readouterr().err
    # /proc refuses new files even to root
    assert main(["trace", str(masks / "a.nii.gz"), "-o", "/proc/neurino-test.swc"]) == 2
    assert "cannot write" in capsys.readouterr().err
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        code = main(["trace", str(masks / "a.nii.gz"), "-o", str(ro / "a.swc")])
    finally:
        ro.chmod(0o755)
    assert code == (0 if os.geteuid() == 0 else 2)          # root may write a read-only folder


def test_swc_distance_given_a_folder(tmp_path, capsys):
    (tmp_path / "a.swc").write_text("1 3 0 0 0 1 -1\n2 3 1 0 0 1 1\n")
    assert main(["swc-distance", str(tmp_path), str(tmp_path / "a.swc")]) == 2
    assert "is a folder" in capsys.readouterr().err


def test_predict_refuses_a_2d_image_before_loading_a_model(tmp_path, capsys):
    import tifffile

    tifffile.imwrite(tmp_path / "slice.tif", np.zeros((32, 32), np.uint16))
    assert main(["predict", "-i", str(tmp_path / "slice.tif"), "-m", str(tmp_path / "no_run"),
                 "-o", str(tmp_path / "out")]) == 2
    assert "2D image" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_trace_folder_goes_on_after_a_corrupt_case(masks, tmp_path, capsys):
    (masks / "c.nii.gz").write_bytes(b"\x1f\x8b garbage, not a NIfTI")
    out = tmp_path / "swc"
    assert main(["trace", str(masks), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "FAILED c.nii.gz" in err
    assert sorted(p.name for p in out.iterdir() if p.name != OUTPUT_MARKER) == ["a.swc", "b.swc"]


# --- §6 unchecked values and messages ------------------------------------------------------------------

def test_trace_refuses_out_of_range_values_and_explains_empty_results(masks, tmp_path, capsys):
    f, o = str(masks / "a.nii.gz"), str(tmp_path / "o.swc")
    for extra, word in ((["--threshold", "2"], "--threshold"), (["--min-size", "-5"], "--min-size"),
                        (["--root", "5", "6", "99"], "outside")):
        assert main(["trace", f, "-o", o, *extra]) == 2
        assert word in capsys.readouterr().err
    assert not os.path.exists(o)
    assert main(["trace", f, "-o", o, "--min-size", "1000"]) == 0                # bar: 3*3*20 = 180 voxels
    assert "fewer than --min-size 1000 voxels (largest: 180)" in capsys.readouterr().out


def test_help_and_small_messages(tmp_path, capsys):
    from nnunetv2_neurino.inference.run_folder import checkpoint_path

    with pytest.raises(SystemExit):
        main(["trace", "--help"])
    assert ".npy" in capsys.readouterr().out
    (tmp_path / "fold_0").mkdir()
    with pytest.raises(NeurinoError) as e:
        checkpoint_path(tmp_path / "fold_0", "best")
    assert "--checkpoint best" not in str(e.value)
    (tmp_path / "fold_0" / "checkpoint_latest.pth").write_bytes(b"")
    with pytest.raises(NeurinoError, match="try --checkpoint latest"):
        checkpoint_path(tmp_path / "fold_0", "best")
    (tmp_path / "empty").mkdir()
    assert main(["convert", "generic", str(tmp_path / "empty"), "-d", "5", "-o", str(tmp_path / "raw")]) == 2
    assert "holds no files" in capsys.readouterr().err


def test_evaluate_goes_on_after_a_corrupt_case_and_compare_keeps_its_input(tmp_path, capsys):
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    pred.mkdir(), gt.mkdir()
    for case in ("a", "c"):
        write_nifti(gt / f"{case}.nii.gz", _bar())
    write_nifti(pred / "a.nii.gz", _bar())
    (pred / "c.nii.gz").write_bytes(b"\x1f\x8b garbage, not a NIfTI")
    ev = tmp_path / "eval"
    assert main(["evaluate", "--pred", str(pred), "--gt", str(gt), "-o", str(ev), "--no-figures"]) == 1
    out = capsys.readouterr().out
    assert "1/2 cases scored" in out and "FAILED c" in out
    before = _digest(ev)
    assert main(["compare", str(ev), str(ev), "--names", "x", "y", "-o", str(ev), "--force"]) == 2
    assert "is the input" in capsys.readouterr().err and _digest(ev) == before


# --- issue 12 §6: library errors name parameters, commands name their flags ---------------------------------

def test_library_errors_name_parameters_and_commands_their_flags(masks, tmp_path, capsys):
    from nnunetv2_neurino.data.synthetic.dataset import write_neuron_dataset
    from nnunetv2_neurino.evaluation import evaluate_folders
    from nnunetv2_neurino.metrics.segmentation import foreground
    from nnunetv2_neurino.tracing.folder import TraceSettings

    library = (
        (lambda: TraceSettings(threshold=2.0).check(), "threshold must be a probability", "--threshold"),
        (lambda: TraceSettings(min_component_size=-5).check(), "min_component_size must be >= 0",
         "--min-size"),
        (lambda: evaluate_folders(masks, masks, tmp_path / "e", workers=0), "workers must be >= 1", "-j"),
        (lambda: foreground(np.full((2, 2, 2), 0.5), "p.npy"), "pass threshold T", "--threshold"),
        (lambda: write_neuron_dataset(tmp_path, 5, swc_mode="bend"), "swc_mode must be one of", "--swc-mode"),
    )
    for call, message, flag in library:
        with pytest.raises(NeurinoError, match=message) as e:
            call()
        assert flag not in str(e.value)
    assert main(["evaluate", "--pred", str(masks), "--gt", str(masks), "-j", "0", "-o",
                 str(tmp_path / "e")]) == 2
    assert "-j must be >= 1, got 0" in capsys.readouterr().err
    # a parameter name inside a path is left alone
    (tmp_path / "threshold").mkdir()
    prob = tmp_path / "threshold" / "p.npy"
    np.save(prob, np.full((4, 4, 4), 0.5, np.float32))
    assert main(["seg-metrics", str(prob), str(prob)]) == 2
    err = capsys.readouterr().err
    assert f"{prob}: holds non-integer values" in err and "pass --threshold T" in err
