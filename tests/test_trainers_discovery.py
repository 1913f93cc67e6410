"""nnU-Net finds every plugin trainer through ``nnUNet_extTrainer`` = ``neurino trainer-path``, and the class
it finds is the very class object of the package (no duplicate classes)."""

from __future__ import annotations

import io
import os
from contextlib import redirect_stdout
from pathlib import Path

import pytest
from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

import nnunetv2_neurino.trainers as trainers
from nnunetv2_neurino.cli import main


def test_trainer_path_command_prints_the_ext_folder():
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["trainer-path"]) == 0
    folder = Path(out.getvalue().strip())
    assert folder.is_dir() and folder == Path(trainers.__file__).resolve().parents[1] / "nnunet_ext"
    modules = sorted(p.name for p in folder.glob("*.py") if p.name != "__init__.py")
    assert modules == ["neurino_trainers.py"]  # one re-exporting module, nothing else to import
    with redirect_stdout(io.StringIO()) as out:
        main(["trainer-path", "--export"])
    assert out.getvalue().strip() == f"export nnUNet_extTrainer={folder}"


@pytest.mark.parametrize("name", trainers.__all__)
def test_nnunet_lookup_returns_the_package_class(name, monkeypatch):
    out = io.StringIO()
    with redirect_stdout(out):
        main(["trainer-path"])
    monkeypatch.setenv("nnUNet_extTrainer", os.pathsep.join(["/nonexistent/folder", out.getvalue().strip()]))
    assert "__" not in name  # nnU-Net splits output folder names at "__"
    found = recursive_find_trainer_class_by_name(name)
    assert found is getattr(trainers, name)
    # a second lookup (nnU-Net cleans up the imports of the ext folder in between) gives the same object
    assert recursive_find_trainer_class_by_name(name) is found


def test_unknown_trainer_is_not_found(monkeypatch):
    with redirect_stdout(io.StringIO()) as out:
        main(["trainer-path"])
    monkeypatch.setenv("nnUNet_extTrainer", out.getvalue().strip())
    with pytest.raises(RuntimeError, match="nnUNetTrainerNeurINO_doesNotExist"):
        recursive_find_trainer_class_by_name("nnUNetTrainerNeurINO_doesNotExist")
