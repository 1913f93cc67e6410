"""Shared test fixtures.

``shared_dir`` / ``cwmbs_swc_files`` skip with a reason when ../shared is absent (users' machines).
The session-scoped end-to-end nnU-Net run lives in ``_e2e_fixture.py`` and is imported here so every
test module can request ``trained_run``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("nnUNet_def_n_proc", "2")
os.environ.setdefault("nnUNet_n_proc_DA", "0")
os.environ.setdefault("MPLBACKEND", "Agg")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = REPO_ROOT.parent / "shared"

from _e2e_fixture import *  # noqa: E402,F401,F403


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED_DIR.is_dir():
        pytest.skip(f"{SHARED_DIR} is absent (it exists for developers and CI only)")
    return SHARED_DIR


@pytest.fixture(scope="session")
def cwmbs_swc_files(shared_dir) -> list[Path]:
    files = sorted((shared_dir / "data" / "cwmbs_swc").glob("*.swc"))
    if not files:
        pytest.skip(f"no SWC files in {shared_dir / 'data' / 'cwmbs_swc'}")
    return files
