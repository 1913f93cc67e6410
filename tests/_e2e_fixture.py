"""Session-scoped end-to-end nnU-Net run through nnU-Net's own CLIs: ``trained_run``.

Generates a tiny tube data set (4 training cases, 1 validation case by a custom ``splits_final.json``,
1 test case), then in subprocesses with their own nnUNet_raw/preprocessed/results:
``nnUNetv2_plan_and_preprocess`` → plan edited to a patch NOT divisible by 16 → ``nnUNetv2_train`` with
a short NeurINO test trainer (``tests/nnunet_test_trainers``) on the CPU → ``nnUNetv2_predict`` →
``nnUNetv2_train --c`` (one more epoch) → ``nnUNetv2_train --val``. No DINOv3 weights variable is set
in any step. Every test that needs a trained run requests this fixture (it runs once per session).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
TEST_TRAINER_DIR = TESTS_DIR / "nnunet_test_trainers"
E2E_DATASET_ID = 923
E2E_DATASET_NAME = "NeurinoE2E"
E2E_TRAINER = "nnUNetTrainerNeurINO_e2eTest"
E2E_PLANNED_PATCH = [40, 36, 36]  # written into the plan: not divisible by NeurINO's total stride 16 → 32³
E2E_CASE_SHAPE = (24, 24, 24)
DINOV3_ENV_PREFIX = "NEURINO_DINOV3_WEIGHTS"


@dataclass
class TrainedRun:
    """Paths and facts of the end-to-end run (see module docstring)."""

    raw: Path
    preprocessed: Path
    results: Path
    fold_dir: Path
    predictions: Path
    test_images: Path
    dataset_id: int
    dataset_name: str
    trainer: str
    planned_patch: list[int]
    env: dict[str, str]
    logs: dict[str, str] = field(default_factory=dict)  # step name → combined stdout/stderr
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def model_dir(self) -> Path:
        return self.fold_dir.parent


def _cli(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def _run_step(run: TrainedRun, step: str, args: list[str], extra_env: dict[str, str] | None = None) -> None:
    env = dict(run.env, **(extra_env or {}))
    start = time.time()
    proc = subprocess.run(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=900)
    run.seconds[step] = time.time() - start
    run.logs[step] = proc.stdout
    if proc.returncode != 0:
        pytest.fail(f"e2e step '{step}' failed (exit {proc.returncode}): {' '.join(args)}\n"
                    f"{proc.stdout[-6000:]}", pytrace=False)


def _edit_plan(plans_file: Path, patch: list[int]) -> None:
    """Set the 3d_fullres patch, with 4 strided stages so NeurINO's full stride applies."""
    plans = json.loads(plans_file.read_text())
    config = plans["configurations"]["3d_fullres"]
    config["patch_size"] = list(patch)
    arch = config["architecture"]["arch_kwargs"]
    n_stages = len(arch["strides"])
    if n_stages < 5:  # tiny images: the planner pools fewer times; NeurINO maps missing stages itself
        arch["strides"] = [[1, 1, 1]] + [[2, 2, 2]] * 4
        arch["n_stages"] = 5
        for key in ("features_per_stage", "kernel_sizes", "n_conv_per_stage"):
            arch[key] = list(arch[key]) + [arch[key][-1]] * (5 - n_stages)
        arch["n_conv_per_stage_decoder"] = list(arch["n_conv_per_stage_decoder"]) + \
            [arch["n_conv_per_stage_decoder"][-1]] * (5 - n_stages)
    plans_file.write_text(json.dumps(plans, indent=2))


def build_trained_run(root: Path) -> TrainedRun:
    """Run the whole pipeline under ``root`` and return its :class:`TrainedRun`."""
    from nnunetv2_neurino.commands.trainer_path import trainer_folder
    from nnunetv2_neurino.testing.tubes import write_tube_dataset

    env = {k: v for k, v in os.environ.items() if not k.startswith(DINOV3_ENV_PREFIX)}
    dirs = {name: root / name for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}
    env.update({k: str(v) for k, v in dirs.items()})
    env.update(nnUNet_extTrainer=f"{trainer_folder()}{os.pathsep}{TEST_TRAINER_DIR}", nnUNet_def_n_proc="2",
               nnUNet_n_proc_DA="0", nnUNet_compile="false", NEURINO_E2E_EPOCHS="2", MPLBACKEND="Agg")
    dataset_name = f"Dataset{E2E_DATASET_ID:03d}_{E2E_DATASET_NAME}"
    model_dir = dirs["nnUNet_results"] / dataset_name / f"{E2E_TRAINER}__nnUNetPlans__3d_fullres"
    run = TrainedRun(raw=dirs["nnUNet_raw"], preprocessed=dirs["nnUNet_preprocessed"],
                     results=dirs["nnUNet_results"], fold_dir=model_dir / "fold_0",
                     predictions=root / "predictions",
                     test_images=dirs["nnUNet_raw"] / dataset_name / "imagesTs",
                     dataset_id=E2E_DATASET_ID, dataset_name=dataset_name, trainer=E2E_TRAINER,
                     planned_patch=list(E2E_PLANNED_PATCH), env=env)

    write_tube_dataset(run.raw, E2E_DATASET_ID, E2E_DATASET_NAME, n_train=4, n_test=1, shape=E2E_CASE_SHAPE)
    did = str(E2E_DATASET_ID)
    _run_step(run, "plan_and_preprocess",
              [_cli("nnUNetv2_plan_and_preprocess"), "-d", did, "-c", "3d_fullres", "-np", "2"],
              {"nnUNet_n_proc_DA": "1"})  # the planner calls torch.set_num_threads(n_proc_DA): 0 fails
    _edit_plan(run.preprocessed / dataset_name / "nnUNetPlans.json", run.planned_patch)
    splits = [{"train": ["tubes_000", "tubes_001", "tubes_002"], "val": ["tubes_003"]}]
    (run.preprocessed / dataset_name / "splits_final.json").write_text(json.dumps(splits))

    train = [_cli("nnUNetv2_train"), did, "3d_fullres", "0", "-tr", E2E_TRAINER, "-device", "cpu"]
    _run_step(run, "train", train)
    _run_step(run, "predict", [_cli("nnUNetv2_predict"), "-i", str(run.test_images),
                               "-o", str(run.predictions), "-d", did, "-c", "3d_fullres", "-f", "0",
                               "-tr", E2E_TRAINER, "-device", "cpu", "-npp", "1", "-nps", "1"])
    _run_step(run, "continue", train + ["--c"], {"NEURINO_E2E_EPOCHS": "3"})
    _run_step(run, "validate", train + ["--val"], {"NEURINO_E2E_EPOCHS": "3"})
    return run


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> TrainedRun:
    """The session's one end-to-end nnU-Net run with a NeurINO trainer (built on first use)."""
    return build_trained_run(tmp_path_factory.mktemp("e2e"))
