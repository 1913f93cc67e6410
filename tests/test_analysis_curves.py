"""`neurino plot-curves`: per-epoch curves from nnU-Net checkpoints and training logs."""

from __future__ import annotations

import csv
import pickle
import re

import matplotlib.image as mpimg
import numpy as np
import pytest
import torch
from _neurino_run_factory import epoch_values, log_text, make_run

from nnunetv2_neurino.analysis.curves import parse_training_logs, read_fold_curve, read_run_curves
from nnunetv2_neurino.cli import main
from nnunetv2_neurino.errors import NeurinoError
from nnunetv2_neurino.inference.run_folder import load_checkpoint


def test_checkpoint_values_and_nnunet_ema(tmp_path):
    tdir = make_run(tmp_path, ckpt_epochs=6, seed=3)
    curve = read_fold_curve(tdir / "fold_0", "x")
    log = load_checkpoint(tdir / "fold_0" / "checkpoint_final.pth")["logging"]
    assert curve.source == ["checkpoint"] * 6
    np.testing.assert_allclose(curve.train_loss, np.float64(log["train_losses"]), rtol=0, atol=0)
    np.testing.assert_allclose(curve.val_loss, np.float64(log["val_losses"]), rtol=0, atol=0)
    np.testing.assert_allclose(curve.pseudo_dice, np.float64(log["mean_fg_dice"]), rtol=0, atol=0)
    # our recomputed EMA equals the one nnU-Net's own MetaLogger stored
    np.testing.assert_allclose(curve.ema_pseudo_dice, np.float64(log["ema_fg_dice"]), rtol=1e-6)


def test_running_training_uses_log_beyond_checkpoint(tmp_path):
    # checkpoint after 3 epochs, the log has 7 finished epochs and an 8th that has only started
    tdir = make_run(tmp_path, ckpt_epochs=3, log_epochs=7, seed=1)
    curve = read_fold_curve(tdir / "fold_0", "x")
    values = epoch_values(7, 1)
    assert list(curve.epochs) == list(range(7))
    assert curve.source == ["checkpoint"] * 3 + ["log"] * 4
    np.testing.assert_allclose(curve.train_loss[3:], [round(float(v[0]), 4) for v in values[3:]], atol=1e-9)
    np.testing.assert_allclose(curve.pseudo_dice[3:], [round(float(v[2]), 4) for v in values[3:]], atol=1e-9)
    np.testing.assert_allclose(curve.val_loss[:3], [float(v[1]) for v in values[:3]], rtol=0)


def test_resumed_run_later_log_wins_and_nan_dice(tmp_path):
    fold = tmp_path / "fold_0"
    fold.mkdir()
    first = epoch_values(4, 0)
    second = [(np.float32(0.5), np.float32(0.25), np.float32(0.75)), (np.float32(0.4), np.float32(0.2),
                                                                       np.float32(np.nan))]
    (fold / "training_log_2026_1_1_10_00_00.txt").write_text(log_text(first))
    (fold / "training_log_2026_1_2_10_00_00.txt").write_text(log_text(second, first_epoch=3))
    got = parse_training_logs(fold)
    assert sorted(got) == [0, 1, 2, 3, 4]
    assert got[3] == (0.5, 0.25, 0.75)
    assert got[4][:2] == (0.4, 0.2) and np.isnan(got[4][2])
    assert got[0][0] == pytest.approx(round(float(first[0][0]), 4), abs=1e-12)


def test_cli_several_runs_png_and_csv(tmp_path, capsys):
    a = make_run(tmp_path / "a", trainer="nnUNetTrainerA", folds=(0, 1), ckpt_epochs=4, seed=0)
    b = make_run(tmp_path / "b", trainer="nnUNetTrainerB", ckpt_epochs=2, log_epochs=5, seed=5)
    out = tmp_path / "fig" / "curves.png"
    assert main(["plot-curves", str(a), str(b / "fold_0"), "--names", "A", "B", "-o", str(out)]) == 0
    img = mpimg.imread(out)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 300
    rows = list(csv.DictReader(open(out.with_suffix(".csv"))))
    by_run = {}
    for r in rows:
        by_run.setdefault(r["run"], []).append(int(r["epoch"]))
    # every finished epoch of every fold: trainer dir -> one curve per fold; B's log is ahead of its
    # checkpoint
    assert by_run == {"A fold 0": [0, 1, 2, 3], "A fold 1": [0, 1, 2, 3], "B": [0, 1, 2, 3, 4]}
    # overwriting needs --force
    assert main(["plot-curves", str(a), "-o", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["plot-curves", str(a), "-o", str(out), "--force"]) == 0


def test_not_an_nnunet_run(tmp_path, capsys):
    assert main(["plot-curves", str(tmp_path), "-o", str(tmp_path / "c.png")]) == 2
    assert "not an nnU-Net run" in capsys.readouterr().err
    tdir = make_run(tmp_path, ckpt_epochs=0, log_epochs=0)
    with pytest.raises(NeurinoError, match="no finished epoch"):
        read_run_curves([tdir])
    with pytest.raises(NeurinoError, match=r"^names gives 2 name\(s\) for 1 run folder"):
        read_run_curves([tdir], names=["a", "b"])
    assert main(["plot-curves", str(tdir), "--names", "a", "b", "-o", str(tmp_path / "n.png")]) == 2
    assert "--names gives 2 name(s) for 1 run folder" in capsys.readouterr().err


class _Evil:
    def __reduce__(self):
        return (print, ("pickle executed",))


def test_checkpoint_needing_pickle_is_refused(tmp_path, capsys):
    tdir = make_run(tmp_path, ckpt_epochs=2)
    path = tdir / "fold_0" / "checkpoint_final.pth"
    ckpt = torch.load(path, weights_only=False)
    ckpt["logging"]["extra"] = _Evil()
    torch.save(ckpt, path, pickle_protocol=pickle.DEFAULT_PROTOCOL)
    with pytest.raises(NeurinoError, match=r"refused: .* contains pickled objects \(GLOBAL builtins.print\)"):
        read_fold_curve(tdir / "fold_0", "x")
    assert "pickle executed" not in capsys.readouterr().out


def _log_epochs(fold_dir) -> dict[int, float]:
    """Epoch -> train loss of every epoch with a 'Pseudo dice' line, from all logs (independent parse)."""
    out = {}
    for log in sorted(fold_dir.glob("training_log_*.txt")):
        for block in re.split(r": Epoch (?=\d+ *\n)", log.read_text())[1:]:
            if "Pseudo dice" in block:
                out[int(block.split()[0])] = float(re.search(r"train_loss (\S+)", block)[1])
    return out


def test_trained_run_curve_covers_every_logged_epoch(trained_run, tmp_path):
    """On the shared end-to-end NeurINO run (train, --c for more epochs, --val): every finished epoch."""
    fold_dir = trained_run.fold_dir
    logged = _log_epochs(fold_dir)
    ckpt = torch.load(fold_dir / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    n_ckpt = len(ckpt["logging"]["train_losses"])
    first_run_epochs = int(trained_run.env["NEURINO_E2E_EPOCHS"])
    assert n_ckpt > first_run_epochs  # the --c continuation trained more epochs
    assert sorted(logged) == list(range(n_ckpt))
    assert len(list(fold_dir.glob("training_log_*.txt"))) >= 2  # the first run and the --c run
    out = tmp_path / "c.png"
    assert main(["plot-curves", str(fold_dir), "-o", str(out)]) == 0
    rows = list(csv.DictReader(open(out.with_suffix(".csv"))))
    assert [int(r["epoch"]) for r in rows] == list(range(n_ckpt))
    assert {r["run"] for r in rows} == {f"{trained_run.trainer} fold 0"}
    for r in rows:
        e = int(r["epoch"])
        assert float(r["train_loss"]) == float(ckpt["logging"]["train_losses"][e])
        assert float(r["val_loss"]) == float(ckpt["logging"]["val_losses"][e])
        assert float(r["pseudo_dice"]) == pytest.approx(float(ckpt["logging"]["mean_fg_dice"][e]), abs=1e-7)
        assert round(float(r["train_loss"]), 4) == pytest.approx(logged[e], abs=1e-9)
    assert mpimg.imread(out).ndim == 3
