"""Packaging: the distribution installs one top-level name, with converters and trainer configs under it."""

import importlib.metadata
from importlib import resources

import pytest


def test_only_the_package_name_is_installed_at_top_level():
    try:
        dist = importlib.metadata.distribution("nnunetv2-neurino")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("nnunetv2-neurino is not installed (run `pip install -e .`)")
    top_level = (dist.read_text("top_level.txt") or "").split()
    # generic names such as `dataset_conversion` or `trainer_configs` would collide with other projects
    assert top_level == ["nnunetv2_neurino"]


def test_converters_and_trainer_configs_live_under_the_package():
    from nnunetv2_neurino.dataset_conversion.run import CONVERTERS

    assert {"bigneuron", "neurofly", "cwmbs", "generic", "diadem"} <= set(CONVERTERS)
    configs = resources.files("nnunetv2_neurino.trainer_configs")
    assert {p.name for p in configs.iterdir() if p.name.endswith(".json")} >= {"paper32.json", "paper64.json"}
