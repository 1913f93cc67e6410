"""The per-layer strides and the fitted patch the NeurINO and MedNeXt trainers derive from an nnU-Net plan.

Path under test = the one ``initialize()`` takes: the trainer's ``network_total_stride`` classmethod (which
maps the plan's ``strides`` onto the network's 4 strided layers with
:func:`~nnunetv2_neurino.networks.neurino.neurino_strides_from_plan`) fed to
:func:`~nnunetv2_neurino.trainers.patch.fit_patch_to_network` (the only place that rounds the patch: down,
to a multiple of the total stride per axis). The configuration is nnU-Net's own ``ConfigurationManager``.

Expectations are worked out by hand: the total stride on an axis is the product of that axis' factors over
(stem, down1, down2, down3) = plan entries 1-4 (entry 0 is nnU-Net's unstrided first stage), the stride-4 stem
turns a factor 2 of the stem into 4, and each patch axis becomes ``floor(p / total) * total``.
"""

from __future__ import annotations

import pytest
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager

from nnunetv2_neurino.trainers import (
    nnUNetTrainerMedNeXt,
    nnUNetTrainerMedNeXt_S,
    nnUNetTrainerNeurINO,
    nnUNetTrainerNeurINO_stride4,
)
from nnunetv2_neurino.trainers.patch import fit_patch_to_network

# nnU-Net's 3d_fullres plan for isotropic data: 6 stages, every downsampling 2 on each axis
ISOTROPIC = [[1, 1, 1]] + [[2, 2, 2]] * 5
# a z-anisotropic plan (thick slices): z is halved only from the third downsampling on
ANISOTROPIC = [[1, 1, 1], [1, 2, 2], [1, 2, 2], [2, 2, 2], [2, 2, 2], [1, 2, 2]]
# a plan with only 2 strided stages: the missing layers get 2 on an axis while the patch stays divisible
SHORT = [[1, 1, 1], [1, 2, 2], [2, 2, 2]]


def _configuration(plan_strides: list[list[int]], patch: list[int]) -> ConfigurationManager:
    return ConfigurationManager({"patch_size": list(patch),
                                 "architecture": {"network_class_name": "unused",
                                                  "arch_kwargs": {"strides": plan_strides},
                                                  "_kw_requires_import": []}})


def _strides(trainer, cm: ConfigurationManager, patch: list[int]) -> list[tuple[int, int, int]]:
    return trainer.network_strides(cm, patch)


CASES = [
    # trainer, plan, planned patch, expected per-layer strides, expected fitted patch
    (nnUNetTrainerNeurINO, ISOTROPIC, [128, 128, 128], [(2, 2, 2)] * 4, [128, 128, 128]),
    (nnUNetTrainerNeurINO, ISOTROPIC, [120, 136, 100], [(2, 2, 2)] * 4, [112, 128, 96]),  # total 16
    (nnUNetTrainerNeurINO_stride4, ISOTROPIC, [120, 136, 100], [(4, 4, 4)] + [(2, 2, 2)] * 3,
     [96, 128, 96]),  # total 32
    (nnUNetTrainerMedNeXt, ISOTROPIC, [120, 136, 100], [(2, 2, 2)] * 4, [112, 128, 96]),
    # total (4, 16, 16): 42 -> 40, 230 -> 224, 190 -> 176
    (nnUNetTrainerNeurINO, ANISOTROPIC, [42, 230, 190], [(1, 2, 2), (1, 2, 2), (2, 2, 2), (2, 2, 2)],
     [40, 224, 176]),
    (nnUNetTrainerNeurINO, ANISOTROPIC, [40, 224, 192], [(1, 2, 2), (1, 2, 2), (2, 2, 2), (2, 2, 2)],
     [40, 224, 192]),  # already divisible: unchanged
    # stride-4 stem on a z factor 1 stays 1: total (4, 32, 32)
    (nnUNetTrainerNeurINO_stride4, ANISOTROPIC, [42, 230, 190], [(1, 4, 4), (1, 2, 2), (2, 2, 2), (2, 2, 2)],
     [40, 224, 160]),
    (nnUNetTrainerMedNeXt, ANISOTROPIC, [42, 230, 190], [(1, 2, 2), (1, 2, 2), (2, 2, 2), (2, 2, 2)],
     [40, 224, 176]),
    # short plan, patch-dependent fill: for (20, 50, 70) the fill gives total (4, 4, 4) -> (20, 48, 68);
    # for (20, 48, 68): down2 = (2, 2, 1) (68 % 8 != 0), down3 = (1, 2, 1) -> total (4, 16, 4), a fixed point
    (nnUNetTrainerNeurINO, SHORT, [20, 50, 70], [(1, 2, 2), (2, 2, 2), (2, 2, 1), (1, 2, 1)], [20, 48, 68]),
]


PLAN_NAMES = {id(ISOTROPIC): "iso", id(ANISOTROPIC): "aniso", id(SHORT): "short"}


@pytest.mark.parametrize("trainer, plan, planned, strides, fitted", CASES,
                         ids=[f"{c[0].__name__}-{PLAN_NAMES[id(c[1])]}-{'x'.join(map(str, c[2]))}"
                              for c in CASES])
def test_trainer_strides_and_fitted_patch(trainer, plan, planned, strides, fitted):
    cm = _configuration(plan, planned)
    got = fit_patch_to_network(planned, lambda p: trainer.network_total_stride(cm, p))
    assert got == fitted
    assert _strides(trainer, cm, got) == strides
    total = trainer.network_total_stride(cm, got)
    assert all(p % t == 0 for p, t in zip(got, total))


def test_built_network_has_the_fitted_strides():
    """The networks built for the fitted patch (as the predictor rebuilds them from plans.json) have the
    strides pinned above."""
    cm = _configuration(ANISOTROPIC, [40, 224, 176])
    net = nnUNetTrainerNeurINO.build_network_architecture(None, cm, 1, 2, True)
    assert net.output_strides == [(1, 1, 1), (1, 2, 2), (1, 4, 4), (2, 8, 8), (4, 16, 16)]
    mednext = nnUNetTrainerMedNeXt_S.build_network_architecture(None, cm, 1, 2, True)
    assert mednext.output_strides == net.output_strides
