"""Real-data benchmark on the DIADEM olfactory projection fibres (not a timed test; CPU by default).

Train on three real confocal stacks, test on the fourth (and on any further DIADEM OP stacks named with
``--test``), score against the manual gold-standard SWCs (Jefferis et al., Cell 2007; DIADEM: Brown et
al., Neuroinformatics 2011)::

    python benchmarks/real_diadem.py --data ../shared/data/diadem_op -o real_diadem_run \
        --epochs 10 --iterations-per-epoch 10 --seed 0 --device auto

Stages, each through the command-line tools a user runs (logs in ``WORK/logs``):

1. **stacks**: the DIADEM download, optionally 2×2 mean-pooled in x/y (``--xy-downsample``, default 2:
   512² → 256² pixels, 0.66 µm; gold SWC x/y and radii scaled alike) into ``WORK/diadem`` — same layout;
2. ``neurino convert diadem WORK/diadem -d ID --test-cases …`` (labels rendered from the gold SWCs);
3. ``nnUNetv2_plan_and_preprocess -c 3d_fullres``; the plan's patch is replaced by ``--patch`` (rounded up
   to the plan network's total stride per axis) for the CPU, and a split writes all training stacks as
   training cases (the last one doubles as nnU-Net's per-epoch validation case);
4. ``nnUNetv2_train`` of the four learned rows with the same seeded budget of ``--epochs`` ×
   ``--iterations-per-epoch`` iterations (trainer subclasses written to ``WORK/trainers``; nnU-Net's final
   validation is skipped: the test stacks are what is scored), ``nnUNetv2_predict`` on the test stacks;
5. two reference rows without learning: an Otsu threshold of the test image, and the gold-rendered label;
6. ``neurino evaluate --gt-swc`` for every row (F1, HD95; the built-in tracer → ESA/DSA/PDS against the
   gold SWCs, in voxels of the stacks as converted, the paper's convention);
7. ``real_diadem.md`` / ``real_diadem.json`` (metrics, budget, seed, wall seconds per row) and one MIP
   figure per row (``benchmarks/real_diadem_report.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.real_diadem_report import ROWS, write_figures, write_tables  # noqa: E402
from nnunetv2_neurino.demo.pipeline import nnunet_env, planner_env  # noqa: E402
from nnunetv2_neurino.demo.subprocesses import cli_path, run_cli  # noqa: E402
from nnunetv2_neurino.errors import NeurinoError  # noqa: E402
from nnunetv2_neurino.nnunet_layout import dataset_folder_name  # noqa: E402

DATASET_ID = 980
DATASET_NAME = "DIADEM_OP_bench"
FULL_SPACING = (0.9988, 0.3296, 0.3296)  # (z, y, x) µm of the DIADEM OP stacks
TOP = "OlfactoryProjectionFibers"
#: the generated trainers: the same budget for every learned row (class attributes, nnUNetv2_train takes
#: no options); the base classes are the demo's seeded, no-mirroring trainers (trainers/demo.py)
TRAINER_MODULE = '''"""Trainers of benchmarks/real_diadem.py (generated; {epochs} x {ipe} iterations)."""
from nnunetv2_neurino.trainers.demo import DemoRunMixin, nnUNetTrainer_demo, nnUNetTrainerNeurINO_demo
from nnunetv2_neurino.trainers.nnUNetTrainerTASL import nnUNetTrainerTASL
from nnunetv2_neurino.trainers.settings import ClassSettingsMixin, NoMirroringMixin


class _Budget:
    num_epochs = {epochs}
    num_iterations_per_epoch = {ipe}
    num_val_iterations_per_epoch = 1
    save_every = 1000000

    def perform_actual_validation(self, save_probabilities=False):
        self.print_to_log_file("final validation skipped (benchmarks/real_diadem.py scores the test stacks)")


class nnUNetTrainerRealDIADEM_NeurINO(_Budget, nnUNetTrainerNeurINO_demo):
    pass


class nnUNetTrainerRealDIADEM_NeurINO_noTASL(_Budget, nnUNetTrainerNeurINO_demo):
    topology_loss = "none"


class nnUNetTrainerRealDIADEM_nnUNet(_Budget, nnUNetTrainer_demo):
    pass


class nnUNetTrainerRealDIADEM_nnUNet_TASL(_Budget, DemoRunMixin, NoMirroringMixin, ClassSettingsMixin,
                                          nnUNetTrainerTASL):
    pass
'''
TRAINERS = {"neurino_tasl": "nnUNetTrainerRealDIADEM_NeurINO",
            "neurino_notasl": "nnUNetTrainerRealDIADEM_NeurINO_noTASL",
            "nnunet": "nnUNetTrainerRealDIADEM_nnUNet", "nnunet_tasl": "nnUNetTrainerRealDIADEM_nnUNet_TASL"}


def default_data() -> Path:
    """``../shared/data/diadem_op`` beside the repository (the project's shared data)."""
    return Path(__file__).resolve().parents[1].parent / "shared" / "data" / "diadem_op"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=default_data(),
                   help="DIADEM OP download (default %(default)s)")
    p.add_argument("-o", "--work", type=Path, default=Path("real_diadem_run"), help="work folder")
    p.add_argument("--train", nargs="+", default=["OP_1", "OP_2", "OP_3"], help="training stacks")
    p.add_argument("--test", nargs="+", default=["OP_4"], help="test stacks (any further OP_k of --data)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--iterations-per-epoch", type=int, default=10)
    p.add_argument("--seed", type=int, default=0, help="training seed (all rows)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--xy-downsample", type=int, default=2, help="mean-pool factor in x/y (1 = full size)")
    p.add_argument("--patch", type=int, nargs=3, default=[32, 64, 64], metavar=("Z", "Y", "X"))
    p.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS), help="rows to run")
    p.add_argument("--stage-timeout", type=float, default=7200.0, help="hard limit per subprocess, s")
    p.add_argument("--figures", type=Path, default=None, help="also copy the figures here")
    p.add_argument("--force", action="store_true", help="replace an existing work folder")
    args = p.parse_args(argv)
    if args.epochs < 1 or args.iterations_per_epoch < 1 or args.xy_downsample < 1 or min(args.patch) < 4:
        p.error("--epochs, --iterations-per-epoch, --xy-downsample must be >= 1 and --patch >= 4")
    if set(args.train) & set(args.test):
        p.error(f"a stack cannot be both training and test: {sorted(set(args.train) & set(args.test))}")
    return args


def prepare_stacks(src: Path, dst: Path, cases: list[str], factor: int) -> tuple[float, float, float]:
    """Copy (``factor`` 1) or x/y mean-pool the named stacks and their gold SWCs into ``dst``'s layout.

    Returns the spacing (z, y, x) µm of the written stacks.
    """
    import tifffile

    from nnunetv2_neurino.data.slices import read_slice_folder
    from nnunetv2_neurino.swc import read_swc, write_swc

    base = src / TOP if (src / TOP).is_dir() else src
    out = dst / TOP
    for case in cases:
        stack_dir, swc = base / "ImageStacks" / case, base / "GoldStandardReconstructions" / f"{case}.swc"
        if not stack_dir.is_dir() or not swc.is_file():
            raise NeurinoError(f"{case}: need {stack_dir}/ and {swc} (DIADEM layout)")
        (out / "ImageStacks" / case).mkdir(parents=True, exist_ok=True)
        (out / "GoldStandardReconstructions").mkdir(parents=True, exist_ok=True)
        image = read_slice_folder(stack_dir).image
        if image.ndim != 3:
            raise NeurinoError(f"{stack_dir}: expected one grey channel, got shape {image.shape}")
        z, y, x = image.shape
        y2, x2 = y // factor * factor, x // factor * factor
        pooled = image[:, :y2, :x2].reshape(z, y2 // factor, factor, x2 // factor, factor).mean(axis=(2, 4))
        for k in range(z):
            tifffile.imwrite(out / "ImageStacks" / case / f"{k + 1}.tif",
                             np.round(pooled[k]).astype(image.dtype))
        tree = read_swc(swc)
        xyz = tree.xyz.copy()
        xyz[:, :2] = (xyz[:, :2] + 0.5) / factor - 0.5  # pixel centres of the pooled grid
        write_swc(replace(tree, xyz=xyz, radius=tree.radius / factor), out / "GoldStandardReconstructions" /
                  f"{case}.swc")
    return (FULL_SPACING[0], FULL_SPACING[1] * factor, FULL_SPACING[2] * factor)


def set_patch_and_split(ds: Path, patch: list[int], train: list[str]) -> list[int]:
    """Write ``patch`` (rounded up to the plan network's stride per axis) and an all-training split."""
    plans_file = ds / "nnUNetPlans.json"
    plans = json.loads(plans_file.read_text())
    config = plans["configurations"]["3d_fullres"]
    strides = config["architecture"]["arch_kwargs"]["strides"]
    total = [int(np.prod([s[a] for s in strides])) for a in range(3)]
    rounded = [int(-(-p // t) * t) for p, t in zip(patch, total)]
    config["patch_size"] = rounded
    plans_file.write_text(json.dumps(plans, indent=2))
    (ds / "splits_final.json").write_text(json.dumps([{"train": train, "val": train[-1:]}], indent=2))
    return rounded


def otsu_predictions(images: Path, out: Path) -> None:
    """Otsu threshold of each test image (``CASE_0000.nii.gz`` → ``CASE.nii.gz``, same spacing)."""
    from skimage.filters import threshold_otsu

    from nnunetv2_neurino.data.readers import read_image, write_nifti

    out.mkdir(parents=True, exist_ok=True)
    for img in sorted(images.glob("*_0000.nii.gz")):
        image, spacing = read_image(img)
        mask = (image > threshold_otsu(image)).astype(np.uint8)
        write_nifti(out / img.name.replace("_0000.nii.gz", ".nii.gz"), mask, spacing)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = args.work.resolve()
    if work.exists() and any(work.iterdir()):
        if not args.force:
            raise NeurinoError(f"{work} is not empty: pass --force to replace it, or choose another -o")
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    device = args.device
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    env = nnunet_env(work, pretrained=False)
    (work / "trainers").mkdir()
    (work / "trainers" / "real_diadem_trainers.py").write_text(
        TRAINER_MODULE.format(epochs=args.epochs, ipe=args.iterations_per_epoch))
    env["nnUNet_extTrainer"] = str(work / "trainers")
    env["NEURINO_TRAIN_SEED"] = str(args.seed)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]),
                                                      env.get("PYTHONPATH", "")]))
    logs, did = work / "logs", str(DATASET_ID)
    ds_name = dataset_folder_name(DATASET_ID, DATASET_NAME)
    raw_ds = work / "nnUNet_raw" / ds_name
    t_start = time.monotonic()
    stage: dict[str, float] = {}

    def timed(key, fn):
        t0 = time.monotonic()
        print(f"[{time.strftime('%H:%M:%S')}] {key} …", flush=True)
        fn()
        stage[key] = round(time.monotonic() - t0, 1)
        print(f"      {key} done in {stage[key]:.0f} s", flush=True)

    spacing: list = []
    timed("stacks", lambda: spacing.extend(prepare_stacks(args.data, work / "diadem", args.train + args.test,
                                                          args.xy_downsample)))
    timed("convert", lambda: run_cli(
        [cli_path("neurino"), "convert", "diadem", str(work / "diadem"), "-d", did, "--name", DATASET_NAME,
         "-o", str(work / "nnUNet_raw"), "--spacing", *map(str, spacing), "--test-cases", *args.test],
        env, logs / "convert.log", args.stage_timeout))
    learned = [r for r in args.rows if r in TRAINERS]
    patch: list = []
    if learned:
        timed("plan", lambda: run_cli(
            [cli_path("nnUNetv2_plan_and_preprocess"), "-d", did, "-c", "3d_fullres", "-np", "2"],
            planner_env(env), logs / "plan_and_preprocess.log", args.stage_timeout))
        patch = set_patch_and_split(work / "nnUNet_preprocessed" / ds_name, args.patch, args.train)
    rows: dict[str, dict] = {}
    for key in args.rows:
        pred = work / "predictions" / key
        row = {"name": ROWS[key], "seconds": {}}
        t0 = time.monotonic()
        if key in TRAINERS:
            tr = TRAINERS[key]
            timed(f"train {key}", lambda tr=tr, key=key: run_cli(
                [cli_path("nnUNetv2_train"), did, "3d_fullres", "0", "-tr", tr, "-device", device], env,
                logs / f"train_{key}.log", args.stage_timeout))
            row["seconds"]["train"] = stage[f"train {key}"]
            timed(f"predict {key}", lambda tr=tr, key=key, pred=pred: run_cli(
                [cli_path("nnUNetv2_predict"), "-i", str(raw_ds / "imagesTs"), "-o", str(pred), "-d", did,
                 "-c", "3d_fullres", "-f", "0", "-tr", tr, "-device", device, "-npp", "1", "-nps", "1",
                 "--disable_tta", "--disable_progress_bar"], env, logs / f"predict_{key}.log",
                args.stage_timeout))
            row["seconds"]["predict"] = stage[f"predict {key}"]
            budget = work / "nnUNet_results" / ds_name / f"{tr}__nnUNetPlans__3d_fullres" / "fold_0"
            row["training"] = json.loads((budget / "training_budget.json").read_text())
            row["trainer"] = tr
        elif key == "otsu":
            otsu_predictions(raw_ds / "imagesTs", pred)
        else:  # gold-rendered mask: the tracer's ceiling
            shutil.copytree(raw_ds / "labelsTs", pred)
        timed(f"evaluate {key}", lambda key=key, pred=pred: run_cli(
            [cli_path("neurino"), "evaluate", "--pred", str(pred), "--gt", str(raw_ds / "labelsTs"),
             "--images", str(raw_ds / "imagesTs"), "--gt-swc", str(raw_ds / "swcTs"), "--name", ROWS[key],
             "--dataset", "DIADEM OP", "--spacing", "1", "1", "1", "-o", str(work / "evaluation" / key)], env,
            logs / f"evaluate_{key}.log", args.stage_timeout))
        row["seconds"]["evaluate"] = stage[f"evaluate {key}"]
        row["seconds"]["total"] = round(time.monotonic() - t0, 1)
        row["summary"] = json.loads((work / "evaluation" / key / "summary.json").read_text())
        rows[key] = row
    meta = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "device": device,
            "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} CPUs, {platform.platform()}",
            "started_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(time.time() - (time.monotonic()
                                                                                          - t_start))),
            "train": args.train, "test": args.test, "epochs": args.epochs,
            "iterations_per_epoch": args.iterations_per_epoch,
            "iterations": args.epochs * args.iterations_per_epoch, "seed": args.seed,
            "xy_downsample": args.xy_downsample, "spacing_zyx_um": spacing, "patch": patch,
            "stage_seconds": stage, "total_seconds": round(time.monotonic() - t_start, 1)}
    write_tables(work, meta, rows)
    figs = write_figures(work, raw_ds, rows)
    if args.figures:
        args.figures.mkdir(parents=True, exist_ok=True)
        for f in figs:
            shutil.copy(f, args.figures / f.name)
    print((work / "real_diadem.md").read_text())
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except NeurinoError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
