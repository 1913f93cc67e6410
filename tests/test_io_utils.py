"""Atomic outputs: complete or absent, never half-written, permissions like a plain ``open``."""

from __future__ import annotations

import os
import stat

import pytest

from nnunetv2_neurino.errors import NeurinoError
from nnunetv2_neurino.io_utils import atomic_directory, atomic_file


def test_atomic_file_follows_the_umask_like_open(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_file(tmp_path / "a.csv") as tmp:
            tmp.write_text("x\n")
        (tmp_path / "b.csv").write_text("x\n")
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "a.csv").stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / "b.csv").stat().st_mode) == 0o644


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_file(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]
    with pytest.raises(NeurinoError, match="already exists"):
        with atomic_file(target, force=False):
            pass


def test_atomic_directory_replaces_only_on_success(tmp_path):
    target = tmp_path / "ds"
    with atomic_directory(target) as tmp:
        (tmp / "f").write_text("1")
    with pytest.raises(NeurinoError, match="--force"):
        with atomic_directory(target):
            pass
    with pytest.raises(KeyboardInterrupt):
        with atomic_directory(target, force=True) as tmp:
            (tmp / "g").write_text("2")
            raise KeyboardInterrupt
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"] and (target / "f").read_text() == "1"
