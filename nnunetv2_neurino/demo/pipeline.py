"""The main job (``neurino demo``): built-in data → nnU-Net plan/train/predict → tracing → comparison.

Everything nnU-Net does runs through its own command-line tools in subprocesses, exactly as a user runs
them, with ``nnUNet_raw`` / ``nnUNet_preprocessed`` / ``nnUNet_results`` inside the work folder and
``nnUNet_extTrainer`` pointing at the plugin's trainers:

1. ``data``      the built-in synthetic neuron data set (``data.synthetic.write_neuron_dataset``)
2. ``plan``      ``nnUNetv2_plan_and_preprocess -np 2``; the 3d_fullres patch is set to a small CPU patch
                 and a split with one validation case is written
3. ``train``     ``nnUNetv2_train`` of NeurINO (``nnUNetTrainerNeurINO_demo``, from scratch; the pretrained
                 demo trainer when a DINOv3 file is given) and of stock nnU-Net (``nnUNetTrainer_demo``),
                 both for the same fixed number of iterations, seeded (``NEURINO_TRAIN_SEED``); a generous
                 wall-clock safety stop (``NEURINO_TRAIN_SAFETY_SECONDS``) only guards against a far too
                 slow machine, and a run it ends is marked "stopped early — not comparable" in the tables
                 and ``demo_summary.json`` (see ``trainers/demo.py``)
4. ``predict``   ``nnUNetv2_predict -npp 1 -nps 1`` on the test images, for both
5. ``evaluate``  ``neurino evaluate`` (F1, HD95, built-in tracing → ESA/DSA/PDS against the gold SWCs)
6. ``compare``   ``neurino compare`` tables (Markdown, CSV, LaTeX), printed; loss curves figure

CPU settings (nnU-Net's environment variables): ``nnUNet_def_n_proc=2``, ``nnUNet_n_proc_DA=0`` — except
for the planner, which calls ``torch.set_num_threads(nnUNet_n_proc_DA)`` and fails with 0, so it gets at
least 1.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from nnunetv2_neurino.demo.subprocesses import Stages, cli_path, epoch_bar, run_cli
from nnunetv2_neurino.errors import NeurinoError
from nnunetv2_neurino.nnunet_layout import dataset_folder_name

#: appended to a method's name in the tables when the safety stop ended its training
NOT_COMPARABLE = "stopped early — not comparable"
DATASET_ID = 990
DATASET_NAME = "NeurinoSynthetic"
WEIGHT_VARS = ("NEURINO_DINOV3_WEIGHTS_TINY", "NEURINO_DINOV3_WEIGHTS")
#: what the demo writes inside its work folder (``--force`` removes exactly these, nothing else)
OUTPUTS = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "predictions", "evaluation", "comparison",
           "figures", "logs", "demo_summary.json")


@dataclass(frozen=True)
class DemoPlan:
    """Sizes and budgets of one demo run.

    Attributes
    ----------
    n_train, n_test : cases of the built-in data set (one training case is held out for validation).
    shape : (Z, Y, X) voxels per case; patch : the 3d_fullres training patch written into the plan.
    epochs, iterations_per_epoch : the training budget, the same for both methods (``trainers/demo.py``).
    safety_seconds : wall-clock safety stop per training (checked between epochs); generous, so that it
        fires only on a machine far slower than expected — the run is then marked not comparable.
    stage_timeout : hard limit per subprocess, seconds (longer than the safety stop plus validation).
    seed : seed of the data set and of both trainings.
    """

    quick: bool
    n_train: int
    n_test: int
    shape: tuple[int, int, int]
    patch: tuple[int, int, int]
    neurino_trainer: str
    nnunet_trainer: str
    pretrained: bool
    epochs: int
    iterations_per_epoch: int
    safety_seconds: float
    stage_timeout: float
    seed: int = 0

    @property
    def iterations(self) -> int:
        """Optimiser steps per training, identical for both methods."""
        return self.epochs * self.iterations_per_epoch


def demo_plan(quick: bool = False, pretrained: bool = False, seed: int = 0,
              safety_seconds: float | None = None) -> DemoPlan:
    """The demo's settings: full (≤ 15 min on a quiet 2-core CPU) or ``quick`` (≤ 5 min).

    The budgets in iterations are :data:`~nnunetv2_neurino.trainers.demo.FULL_BUDGET` /
    ``QUICK_BUDGET`` (the reasoning is there). The safety stop is generous: NeurINO-T, the slower of the
    two, took ~270 s for the full budget and 55–77 s for the quick one (start-up and validation
    included) on a quiet 2-core machine, so 1800 s / 600 s still let a machine 6–10× slower (a busy
    shared one) train the whole budget, and only a stuck or hopelessly slow run ends early;
    ``safety_seconds`` overrides it.
    """
    from nnunetv2_neurino.trainers.demo import FULL_BUDGET, QUICK_BUDGET

    suffix = "Quick" if quick else ""
    neurino = f"nnUNetTrainerNeurINO_demo{'Pretrained' if pretrained else ''}{suffix}"
    budget = QUICK_BUDGET if quick else FULL_BUDGET
    if safety_seconds is None:
        safety_seconds = 600.0 if quick else 1800.0
    if not safety_seconds > 0:
        raise NeurinoError(f"the training safety stop must be > 0 seconds, got {safety_seconds}")
    # the hard subprocess limit must leave room for the stop (checked between epochs) and the validation
    stage_timeout = max(600.0 if quick else 900.0, 2 * safety_seconds + 300)
    if quick:
        return DemoPlan(True, 4, 1, (48, 48, 48), (32, 32, 32), neurino, f"nnUNetTrainer_demo{suffix}",
                        pretrained, budget.epochs, budget.iterations_per_epoch, safety_seconds,
                        stage_timeout, seed=seed)
    return DemoPlan(False, 8, 2, (64, 64, 64), (32, 32, 32), neurino, f"nnUNetTrainer_demo{suffix}",
                    pretrained, budget.epochs, budget.iterations_per_epoch, safety_seconds, stage_timeout,
                    seed=seed)


@dataclass
class DemoResult:
    """What a demo run produced (also written as ``demo_summary.json``)."""

    work_dir: Path
    plan: DemoPlan
    stage_seconds: dict[str, float] = field(default_factory=dict)
    stage_cpu_seconds: dict[str, float] = field(default_factory=dict)
    eval_dirs: dict[str, Path] = field(default_factory=dict)
    comparison_dir: Path | None = None
    figures: list[Path] = field(default_factory=list)
    metrics: dict[str, dict] = field(default_factory=dict)
    training: dict = field(default_factory=dict)  # method key → TrainingRecord (trainers/demo.py)
    failed_cases: dict[str, list] = field(default_factory=dict)  # method key → cases that failed to score
    data_source: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def total_seconds(self) -> float:
        return sum(self.stage_seconds.values())

    @property
    def stopped_early(self) -> list[str]:
        """Method keys whose training the safety stop ended (their rows are not comparable)."""
        return [k for k, r in self.training.items() if r.stopped_early]


def find_weights() -> Path | None:
    """The DINOv3 ConvNeXt-Tiny file from the environment, or None (then NeurINO trains from scratch)."""
    for var in WEIGHT_VARS:
        value = os.environ.get(var)
        if value:
            path = Path(value).expanduser()
            if not path.is_file():
                raise NeurinoError(f"{var}={value} is not a file (unset it to train NeurINO from scratch)")
            return path
    return None


def prepare_work_dir(work_dir: Path, force: bool) -> None:
    """Create the work folder; a non-empty one is refused unless ``force`` (removes only :data:`OUTPUTS`)."""
    if work_dir.exists() and not work_dir.is_dir():
        raise NeurinoError(f"{work_dir} exists and is not a folder")
    if work_dir.is_dir() and any(work_dir.iterdir()):
        if not force:
            raise NeurinoError(f"{work_dir} is not empty: choose another folder with -o, or pass --force to "
                               f"replace the demo outputs in it ({', '.join(OUTPUTS)})")
        for name in OUTPUTS:
            p = work_dir / name
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            elif p.exists() or p.is_symlink():
                p.unlink()
    work_dir.mkdir(parents=True, exist_ok=True)


def nnunet_env(work_dir: Path, pretrained: bool) -> dict[str, str]:
    """Environment of the nnU-Net subprocesses (see module docstring)."""
    from nnunetv2_neurino.commands.trainer_path import trainer_folder

    env = {k: v for k, v in os.environ.items() if pretrained or not k.startswith("NEURINO_DINOV3_WEIGHTS")}
    env.update(nnUNet_raw=str(work_dir / "nnUNet_raw"),
               nnUNet_preprocessed=str(work_dir / "nnUNet_preprocessed"),
               nnUNet_results=str(work_dir / "nnUNet_results"), nnUNet_extTrainer=str(trainer_folder()),
               nnUNet_def_n_proc=os.environ.get("nnUNet_def_n_proc", "2"),
               nnUNet_n_proc_DA=os.environ.get("nnUNet_n_proc_DA", "0"), nnUNet_compile="false",
               PYTHONUNBUFFERED="1", MPLBACKEND="Agg")
    return env


def planner_env(env: dict[str, str]) -> dict[str, str]:
    """The planner calls ``torch.set_num_threads(nnUNet_n_proc_DA)``: 0 (our CPU default) would crash it."""
    try:
        n = int(env.get("nnUNet_n_proc_DA", "0"))
    except ValueError:
        n = 0
    return dict(env, nnUNet_n_proc_DA=str(max(1, n)))


def write_data(plan: DemoPlan, raw: Path, progress: bool) -> str:
    """Write the built-in neuron data set (with gold SWCs) under ``raw``; returns a description."""
    from nnunetv2_neurino.data.synthetic import write_neuron_dataset

    write_neuron_dataset(raw, DATASET_ID, DATASET_NAME, n_train=plan.n_train, n_test=plan.n_test,
                         shape=plan.shape, seed=plan.seed, progress=progress)
    return "built-in synthetic neurons (nnunetv2_neurino.data.synthetic)"


def edit_plan_and_split(preprocessed: Path, patch: tuple[int, int, int]) -> list[str]:
    """Set the 3d_fullres patch in ``nnUNetPlans.json`` and write a split holding out one case.

    Returns the validation case names.
    """
    ds = preprocessed / dataset_folder_name(DATASET_ID, DATASET_NAME)
    plans_file = ds / "nnUNetPlans.json"
    plans = json.loads(plans_file.read_text())
    config = plans["configurations"]["3d_fullres"]
    config["patch_size"] = [int(p) for p in patch]
    plans_file.write_text(json.dumps(plans, indent=2))
    cases = sorted(p.name[:-len(".nii.gz")] for p in (ds / "gt_segmentations").glob("*.nii.gz"))
    if len(cases) < 2:
        raise NeurinoError(f"need at least 2 training cases for a train/validation split, found {cases}")
    split = [{"train": cases[:-1], "val": cases[-1:]}]
    (ds / "splits_final.json").write_text(json.dumps(split, indent=2))
    return cases[-1:]


def run_demo(work_dir: str | os.PathLike = "neurino_demo", quick: bool = False, force: bool = False,
             device: str = "auto", seed: int = 0, progress: bool = True,
             echo: Callable[[str], None] = print, safety_seconds: float | None = None) -> DemoResult:
    """Run the whole demo in ``work_dir`` (see the module docstring) and return what it produced.

    Parameters
    ----------
    work_dir : output folder; must be empty or absent unless ``force``.
    quick : the ≤ 5 minute variant (fewer, smaller cases; fewer iterations).
    device : ``"auto"`` (CUDA when available, else CPU), ``"cpu"`` or ``"cuda"``.
    seed : seed of the data set and of both trainings.
    progress : tqdm bars for data generation, training epochs and evaluation.
    echo : where stage lines go.
    safety_seconds : wall-clock safety stop per training (default: see :func:`demo_plan`).
    """
    work_dir = Path(work_dir).resolve()
    if device not in ("auto", "cpu", "cuda"):
        raise NeurinoError(f"device must be auto, cpu or cuda, got {device!r}")
    weights = find_weights()
    plan = demo_plan(quick=quick, pretrained=weights is not None, seed=seed, safety_seconds=safety_seconds)
    prepare_work_dir(work_dir, force)
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    result = DemoResult(work_dir=work_dir, plan=plan)
    env = nnunet_env(work_dir, plan.pretrained)
    logs = work_dir / "logs"
    did = str(DATASET_ID)
    ds_name = dataset_folder_name(DATASET_ID, DATASET_NAME)
    raw_ds = work_dir / "nnUNet_raw" / ds_name
    methods = {"NeurINO": plan.neurino_trainer, "nnU-Net": plan.nnunet_trainer}
    labels = {"NeurINO": "NeurINO-T (DINOv3 init)" if plan.pretrained else "NeurINO-T (scratch)",
              "nnU-Net": "nnU-Net"}
    echo(f"neurino demo{' --quick' if quick else ''}: {work_dir} on {device}; NeurINO "
         f"{'from ' + str(weights) if weights else 'from scratch (set NEURINO_DINOV3_WEIGHTS for DINOv3)'}; "
         f"{plan.n_train} training + {plan.n_test} test cases of {'×'.join(map(str, plan.shape))} voxels, "
         f"patch {'×'.join(map(str, plan.patch))}; both methods train {plan.iterations} iterations "
         f"({plan.epochs} epochs × {plan.iterations_per_epoch}), seed {plan.seed}; safety stop "
         f"{plan.safety_seconds:.0f} s per training")
    stages = Stages(6 + 2 * len(methods), result, echo)

    result.data_source = stages.run("data", "build the built-in data set",
                                    lambda: write_data(plan, work_dir / "nnUNet_raw", progress))
    stages.run("plan", "nnUNetv2_plan_and_preprocess", lambda: run_cli(
        [cli_path("nnUNetv2_plan_and_preprocess"), "-d", did, "-c", "3d_fullres", "-np", "2"],
        planner_env(env), logs / "plan_and_preprocess.log", plan.stage_timeout))
    stages.run("split", "set the demo patch in the plan, hold out one validation case",
               lambda: edit_plan_and_split(work_dir / "nnUNet_preprocessed", plan.patch))

    from nnunetv2_neurino.trainers.demo import SAFETY_STOP_ENV, SEED_ENV, TrainingRecord

    train_env = dict(env, **{SAFETY_STOP_ENV: str(plan.safety_seconds), SEED_ENV: str(plan.seed)})
    for key, trainer in methods.items():
        fold_dir = work_dir / "nnUNet_results" / ds_name / f"{trainer}__nnUNetPlans__3d_fullres" / "fold_0"

        def train(trainer=trainer, key=key, fold_dir=fold_dir):
            bar, on_line = epoch_bar(plan.epochs, f"      {key}", progress)
            try:
                run_cli([cli_path("nnUNetv2_train"), did, "3d_fullres", "0", "-tr", trainer,
                         "-device", device], train_env, logs / f"train_{key}.log", plan.stage_timeout,
                        on_line)
            finally:
                bar.close()
            result.training[key] = TrainingRecord.read(fold_dir)

        stages.run(f"train {key}", f"nnUNetv2_train -tr {trainer} ({plan.epochs} epochs × "
                   f"{plan.iterations_per_epoch} iterations, then nnU-Net's validation + topology summary)",
                   train)
    labels = mark_stopped_runs(result, labels)

    pred_root = work_dir / "predictions"
    for key, trainer in methods.items():
        args = [cli_path("nnUNetv2_predict"), "-i", str(raw_ds / "imagesTs"), "-o", str(pred_root / key),
                "-d", did, "-c", "3d_fullres", "-f", "0", "-tr", trainer, "-device", device, "-npp", "1",
                "-nps", "1", "--disable_tta", "--disable_progress_bar"]
        log = logs / f"predict_{key}.log"
        stages.run(f"predict {key}", f"nnUNetv2_predict -tr {trainer}",
                   lambda args=args, log=log: run_cli(args, env, log, plan.stage_timeout))

    stages.run("evaluate", "neurino evaluate (F1, HD95, tracing → ESA/DSA/PDS)",
               lambda: evaluate_methods(result, labels, pred_root, raw_ds, progress))
    stages.run("compare", "neurino compare + figures", lambda: compare_methods(
        result, labels, {k: work_dir / "nnUNet_results" / ds_name / f"{t}__nnUNetPlans__3d_fullres" / "fold_0"
                         for k, t in methods.items()}, echo))
    write_summary(result)
    cpu_min = sum(result.stage_cpu_seconds.values()) / 60
    echo(f"\nTotal {result.total_seconds / 60:.1f} min ({cpu_min:.1f} CPU min). Outputs in {work_dir}: "
         f"comparison/comparison.md, evaluation/<method>/report.md, figures/loss_curves.png, logs/, "
         f"demo_summary.json")
    for note in result.notes:
        echo(f"note: {note}")
    return result


def mark_stopped_runs(result: DemoResult, labels: dict[str, str]) -> dict[str, str]:
    """The method names for the tables: "NAME [stopped early — not comparable]" where the safety stop fired.

    Reads ``result.training`` (method key → :class:`~nnunetv2_neurino.trainers.demo.TrainingRecord`) and
    adds a note per stopped run; returns a new key → name mapping.
    """
    marked = dict(labels)
    for key in result.stopped_early:
        record = result.training[key]
        marked[key] = f"{labels[key]} [{NOT_COMPARABLE}]"
        result.notes.append(f"{key}: the {record.safety_seconds:.0f} s safety stop ended training after "
                            f"{record.iterations_done} of {record.planned_iterations} iterations: its row is "
                            f"{NOT_COMPARABLE}")
    return marked


def evaluate_methods(result: DemoResult, labels: dict[str, str], pred_root: Path, raw_ds: Path,
                     progress: bool) -> None:
    """``neurino evaluate`` of ``pred_root/<key>`` for each key of ``labels`` against ``raw_ds``'s test set.

    Fills ``result.eval_dirs``, ``result.metrics`` and ``result.failed_cases`` (cases that failed to score).
    """
    from nnunetv2_neurino.evaluation.evaluate import evaluate_folders

    for key, label in labels.items():
        out = result.work_dir / "evaluation" / key
        gt_swc = raw_ds / "swcTs"
        summary = evaluate_folders(pred_root / key, raw_ds / "labelsTs", out, images_dir=raw_ds / "imagesTs",
                                   gt_swc_dir=gt_swc if gt_swc.is_dir() else None, tracers=("builtin",),
                                   method=label, dataset=DATASET_NAME, workers=1, progress=progress)
        result.eval_dirs[key] = out
        result.metrics[key] = summary["metrics"]
        if summary["n_failed"]:
            result.failed_cases[key] = list(summary["failed"])
            result.notes.append(f"{key}: {summary['n_failed']} case(s) failed to score: {summary['failed']}")


def compare_methods(result: DemoResult, labels: dict[str, str], fold_dirs: dict[str, Path],
                    echo: Callable[[str], None]) -> None:
    """``neurino compare`` of the evaluations (tables written and printed) and the loss-curve figure."""
    from nnunetv2_neurino.evaluation.comparison import compare as compare_runs
    from nnunetv2_neurino.evaluation.comparison import to_markdown, write_comparison

    keys = list(labels)
    tables = compare_runs([result.eval_dirs[k] for k in keys], names=[labels[k] for k in keys])
    result.comparison_dir = write_comparison(tables, result.work_dir / "comparison", force=True)
    for t in tables.values():
        echo("")
        echo(to_markdown(t))
    result.figures.extend(_curves(result, labels, fold_dirs))
    result.figures.extend(sorted((result.work_dir / "evaluation").glob("*/figures/*.png")))


def _curves(result: DemoResult, labels: dict[str, str], fold_dirs: dict[str, Path]) -> list[Path]:
    """Loss curves of both runs (figures/loss_curves.png + .csv); a failure is noted, not fatal."""
    from nnunetv2_neurino.analysis.curves import plot_curves, read_run_curves, write_curves_csv

    fig_dir = result.work_dir / "figures"
    fig_dir.mkdir(exist_ok=True)
    try:
        curves = read_run_curves([fold_dirs[k] for k in labels], [labels[k] for k in labels])
        write_curves_csv(curves, fig_dir / "loss_curves.csv")
        plot_curves(curves, fig_dir / "loss_curves.png", title="neurino demo: training curves")
    except NeurinoError as e:
        result.notes.append(f"loss curves not drawn: {e}")
        return []
    return [fig_dir / "loss_curves.png"]


def summary_dict(result: DemoResult) -> dict:
    """``demo_summary.json``: settings, stage times, training records, headline metrics, comparability."""
    def headline(metrics: dict) -> dict:
        keys = ("f1", "hd95", "builtin/ESA", "builtin/DSA", "builtin/PDS")
        return {k: metrics.get(k, {}).get("mean") for k in keys}

    plan = dict(asdict(result.plan), iterations=result.plan.iterations)
    return {"work_dir": str(result.work_dir), "plan": plan, "data": result.data_source,
            "stage_seconds": result.stage_seconds, "total_seconds": round(result.total_seconds, 1),
            "stage_cpu_seconds": result.stage_cpu_seconds,
            "total_cpu_seconds": round(sum(result.stage_cpu_seconds.values()), 1),
            "training": {k: asdict(r) for k, r in result.training.items()},
            "stopped_early": result.stopped_early, "comparable": not result.stopped_early,
            "failed_cases": result.failed_cases,
            "evaluation": {k: str(v) for k, v in result.eval_dirs.items()},
            "comparison": str(result.comparison_dir), "figures": [str(f) for f in result.figures],
            "headline": {k: headline(m) for k, m in result.metrics.items()}, "notes": result.notes}


def write_summary(result: DemoResult) -> Path:
    """Write :func:`summary_dict` to ``work_dir/demo_summary.json`` (atomically); returns the path."""
    from nnunetv2_neurino.io_utils import atomic_file

    path = result.work_dir / "demo_summary.json"
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(summary_dict(result), indent=2, default=str))
    return path
