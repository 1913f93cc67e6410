"""The main job (``neurino demo``): built-in data → nnU-Net plan/train/predict → tracing → comparison.

Everything nnU-Net does runs through its own command-line tools in subprocesses, exactly as a user runs
them, with ``nnUNet_raw`` / ``nnUNet_preprocessed`` / ``nnUNet_results`` inside the work folder and
``nnUNet_extTrainer`` pointing at the plugin's trainers:

1. ``data``      the built-in synthetic neuron data set (``data.synthetic.write_neuron_dataset``)
2. ``plan``      ``nnUNetv2_plan_and_preprocess -np 2``; the 3d_fullres patch is set to a small CPU patch
                 and a split with one validation case is written
3. ``train``     ``nnUNetv2_train`` of NeurINO (``nnUNetTrainerNeurINO_demo``, from scratch; the pretrained
                 demo trainer when a DINOv3 file is given) and of stock nnU-Net (``nnUNetTrainer_demo``),
                 each time-boxed (``NEURINO_TRAIN_SECONDS``, see ``trainers/demo.py``)
4. ``predict``   ``nnUNetv2_predict -npp 1 -nps 1`` on the test images, for both
5. ``evaluate``  ``neurino evaluate`` (F1, HD95, built-in tracing → ESA/DSA/PDS against the gold SWCs)
6. ``compare``   ``neurino compare`` tables (Markdown, CSV, LaTeX), printed; loss curves figure

CPU settings (SPEC §2): ``nnUNet_def_n_proc=2``, ``nnUNet_n_proc_DA=0`` — except for the planner, which
calls ``torch.set_num_threads(nnUNet_n_proc_DA)`` and fails with 0, so it gets at least 1.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from nnunetv2_neurino.errors import NeurinoError

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
    train_seconds : time box per training run (stops at an epoch boundary).
    stage_timeout : hard limit per subprocess, seconds.
    """

    quick: bool
    n_train: int
    n_test: int
    shape: tuple[int, int, int]
    patch: tuple[int, int, int]
    neurino_trainer: str
    nnunet_trainer: str
    pretrained: bool
    train_seconds: float
    stage_timeout: float
    seed: int = 0


def demo_plan(quick: bool = False, pretrained: bool = False, seed: int = 0) -> DemoPlan:
    """The demo's settings: full (≤ 15 min on 2 CPU cores) or ``quick`` (≤ 5 min)."""
    suffix = "Quick" if quick else ""
    neurino = f"nnUNetTrainerNeurINO_demo{'Pretrained' if pretrained else ''}{suffix}"
    if quick:
        return DemoPlan(True, 4, 1, (48, 48, 48), (32, 32, 32), neurino, f"nnUNetTrainer_demo{suffix}",
                        pretrained, train_seconds=35, stage_timeout=600, seed=seed)
    return DemoPlan(False, 8, 2, (64, 64, 64), (32, 32, 32), neurino, f"nnUNetTrainer_demo{suffix}",
                    pretrained, train_seconds=240, stage_timeout=900, seed=seed)


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
    data_source: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def total_seconds(self) -> float:
        return sum(self.stage_seconds.values())


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


def _cli(name: str) -> str:
    exe = Path(sys.executable).parent / name
    if exe.is_file():
        return str(exe)
    found = shutil.which(name)
    if not found:
        raise NeurinoError(f"{name} not found next to {sys.executable} nor on PATH: is nnunetv2 installed?")
    return found


EPOCH_DONE_RE = re.compile(r": Epoch time: [\d.]+ s")


def run_cli(args: list[str], env: dict[str, str], log_path: Path, timeout: float,
            on_line: Callable[[str], None] | None = None) -> None:
    """Run one command, its output going to ``log_path`` (and line by line to ``on_line``).

    Raises
    ------
    NeurinoError : non-zero exit or more than ``timeout`` seconds (the process is killed); the message has the
        command, the log file and the last lines of output.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    tail: deque[str] = deque(maxlen=25)
    timed_out = threading.Event()
    with open(log_path, "w", encoding="utf-8", buffering=1) as log:  # line-buffered: `tail -f` works
        log.write("$ " + " ".join(args) + "\n")
        log.flush()
        proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                bufsize=1, errors="replace")

        def kill():
            timed_out.set()
            proc.kill()

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            for line in proc.stdout:
                log.write(line)
                tail.append(line.rstrip("\n"))
                if on_line is not None:
                    on_line(line)
            rc = proc.wait()
        finally:
            timer.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    if timed_out.is_set():
        raise NeurinoError(f"`{Path(args[0]).name}` ran longer than {timeout:.0f} s and was stopped; "
                           f"log: {log_path}")
    if rc != 0:
        last = "\n".join(tail)
        raise NeurinoError(f"`{' '.join(Path(a).name if i == 0 else a for i, a in enumerate(args))}` failed "
                           f"(exit {rc}); log: {log_path}\n--- last lines ---\n{last}")


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process and its finished (waited-for) descendants."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


class _Stages:
    """Prints ``[i/n] stage …`` and ``done in Xs (elapsed m:ss)``; records each stage's wall and CPU seconds.

    CPU seconds (all cores, subprocesses included) tell what a stage costs independently of other load on
    the machine; wall seconds are what the user waits.
    """

    def __init__(self, total: int, result: DemoResult, echo: Callable[[str], None]):
        self.total, self.result, self.echo = total, result, echo
        self.index = 0
        self.start = time.monotonic()

    def run(self, key: str, title: str, fn: Callable[[], object]):
        self.index += 1
        self.echo(f"[{self.index}/{self.total}] {title} …")
        t0, c0 = time.monotonic(), _cpu_seconds()
        out = fn()
        dt, cpu = time.monotonic() - t0, _cpu_seconds() - c0
        self.result.stage_seconds[key] = round(dt, 2)
        self.result.stage_cpu_seconds[key] = round(cpu, 2)
        el = time.monotonic() - self.start
        self.echo(f"      done in {dt:.0f} s, {cpu:.0f} CPU s (elapsed {int(el // 60)}:{int(el % 60):02d})")
        return out


def _epoch_bar(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit="epoch", disable=not enabled, leave=False, file=sys.stderr)

    def on_line(line: str) -> None:
        if EPOCH_DONE_RE.search(line):
            bar.update(1)
        elif "Time box" in line:
            bar.write("      " + line.split(": ", 1)[-1].strip())

    return bar, on_line


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
    ds = preprocessed / f"Dataset{DATASET_ID:03d}_{DATASET_NAME}"
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
             echo: Callable[[str], None] = print) -> DemoResult:
    """Run the whole demo in ``work_dir`` (see the module docstring) and return what it produced.

    Parameters
    ----------
    work_dir : output folder; must be empty or absent unless ``force``.
    quick : the ≤ 5 minute variant (fewer, smaller cases; shorter training).
    device : ``"auto"`` (CUDA when available, else CPU), ``"cpu"`` or ``"cuda"``.
    seed : seed of the data set.
    progress : tqdm bars for data generation, training epochs and evaluation.
    echo : where stage lines go.
    """
    work_dir = Path(work_dir).resolve()
    if device not in ("auto", "cpu", "cuda"):
        raise NeurinoError(f"--device must be auto, cpu or cuda, got {device!r}")
    weights = find_weights()
    plan = demo_plan(quick=quick, pretrained=weights is not None, seed=seed)
    prepare_work_dir(work_dir, force)
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    result = DemoResult(work_dir=work_dir, plan=plan)
    env = nnunet_env(work_dir, plan.pretrained)
    logs = work_dir / "logs"
    did = str(DATASET_ID)
    ds_name = f"Dataset{DATASET_ID:03d}_{DATASET_NAME}"
    raw_ds = work_dir / "nnUNet_raw" / ds_name
    methods = {"NeurINO": plan.neurino_trainer, "nnU-Net": plan.nnunet_trainer}
    labels = {"NeurINO": "NeurINO-T (DINOv3 init)" if plan.pretrained else "NeurINO-T (scratch)",
              "nnU-Net": "nnU-Net"}
    echo(f"neurino demo{' --quick' if quick else ''}: {work_dir} on {device}; NeurINO "
         f"{'from ' + str(weights) if weights else 'from scratch (set NEURINO_DINOV3_WEIGHTS for DINOv3)'}; "
         f"{plan.n_train} training + {plan.n_test} test cases of {'×'.join(map(str, plan.shape))} voxels, "
         f"patch {'×'.join(map(str, plan.patch))}, training time box {plan.train_seconds:.0f} s per model")
    stages = _Stages(6 + 2 * len(methods), result, echo)

    result.data_source = stages.run("data", "build the built-in data set",
                                    lambda: write_data(plan, work_dir / "nnUNet_raw", progress))
    stages.run("plan", "nnUNetv2_plan_and_preprocess", lambda: run_cli(
        [_cli("nnUNetv2_plan_and_preprocess"), "-d", did, "-c", "3d_fullres", "-np", "2"],
        planner_env(env), logs / "plan_and_preprocess.log", plan.stage_timeout))
    stages.run("split", "set the demo patch in the plan, hold out one validation case",
               lambda: edit_plan_and_split(work_dir / "nnUNet_preprocessed", plan.patch))

    from nnunetv2_neurino.trainers import demo as demo_trainers

    for key, trainer in methods.items():
        epochs = getattr(demo_trainers, trainer).num_epochs

        def train(trainer=trainer, key=key, epochs=epochs):
            bar, on_line = _epoch_bar(epochs, f"      {key}", progress)
            try:
                run_cli([_cli("nnUNetv2_train"), did, "3d_fullres", "0", "-tr", trainer, "-device", device],
                        dict(env, NEURINO_TRAIN_SECONDS=str(plan.train_seconds)), logs / f"train_{key}.log",
                        plan.stage_timeout, on_line)
            finally:
                bar.close()

        stages.run(f"train {key}", f"nnUNetv2_train -tr {trainer} (≤ {epochs} epochs, then nnU-Net's "
                   f"validation + topology summary)", train)

    pred_root = work_dir / "predictions"
    for key, trainer in methods.items():
        args = [_cli("nnUNetv2_predict"), "-i", str(raw_ds / "imagesTs"), "-o", str(pred_root / key),
                "-d", did, "-c", "3d_fullres", "-f", "0", "-tr", trainer, "-device", device, "-npp", "1",
                "-nps", "1", "--disable_tta", "--disable_progress_bar"]
        log = logs / f"predict_{key}.log"
        stages.run(f"predict {key}", f"nnUNetv2_predict -tr {trainer}",
                   lambda args=args, log=log: run_cli(args, env, log, plan.stage_timeout))

    from nnunetv2_neurino.evaluation.evaluate import evaluate_folders

    def evaluate():
        for key in methods:
            out = work_dir / "evaluation" / key
            gt_swc = raw_ds / "swcTs"
            summary = evaluate_folders(pred_root / key, raw_ds / "labelsTs", out,
                                       images_dir=raw_ds / "imagesTs",
                                       gt_swc_dir=gt_swc if gt_swc.is_dir() else None, tracers=("builtin",),
                                       method=labels[key], dataset=DATASET_NAME, workers=1, progress=progress)
            result.eval_dirs[key] = out
            result.metrics[key] = summary["metrics"]
            if summary["n_failed"]:
                result.notes.append(f"{key}: {summary['n_failed']} case(s) failed to score: "
                                    f"{summary['failed']}")

    stages.run("evaluate", "neurino evaluate (F1, HD95, tracing → ESA/DSA/PDS)", evaluate)

    def compare():
        from nnunetv2_neurino.evaluation.comparison import compare as compare_runs
        from nnunetv2_neurino.evaluation.comparison import to_markdown, write_comparison

        tables = compare_runs([result.eval_dirs[k] for k in methods], names=[labels[k] for k in methods])
        result.comparison_dir = write_comparison(tables, work_dir / "comparison", force=True)
        for t in tables.values():
            echo("")
            echo(to_markdown(t))
        result.figures.extend(_curves(work_dir, methods, labels, ds_name, result))
        result.figures.extend(sorted((work_dir / "evaluation").glob("*/figures/*.png")))

    stages.run("compare", "neurino compare + figures", compare)
    (work_dir / "demo_summary.json").write_text(json.dumps(_summary_dict(result), indent=2, default=str))
    cpu_min = sum(result.stage_cpu_seconds.values()) / 60
    echo(f"\nTotal {result.total_seconds / 60:.1f} min ({cpu_min:.1f} CPU min). Outputs in {work_dir}: "
         f"comparison/comparison.md, evaluation/<method>/report.md, figures/loss_curves.png, logs/, "
         f"demo_summary.json")
    for note in result.notes:
        echo(f"note: {note}")
    return result


def _curves(work_dir: Path, methods: dict, labels: dict, ds_name: str, result: DemoResult) -> list[Path]:
    """Loss curves of both runs (figures/loss_curves.png + .csv); a failure is noted, not fatal."""
    from nnunetv2_neurino.analysis.curves import plot_curves, read_run_curves, write_curves_csv

    fig_dir = work_dir / "figures"
    fig_dir.mkdir(exist_ok=True)
    folds = [work_dir / "nnUNet_results" / ds_name / f"{t}__nnUNetPlans__3d_fullres" / "fold_0"
             for t in methods.values()]
    try:
        curves = read_run_curves(folds, [labels[k] for k in methods])
        write_curves_csv(curves, fig_dir / "loss_curves.csv")
        plot_curves(curves, fig_dir / "loss_curves.png", title="neurino demo: training curves")
    except NeurinoError as e:
        result.notes.append(f"loss curves not drawn: {e}")
        return []
    return [fig_dir / "loss_curves.png"]


def _summary_dict(result: DemoResult) -> dict:
    def headline(metrics: dict) -> dict:
        keys = ("f1", "hd95", "builtin/ESA", "builtin/DSA", "builtin/PDS")
        return {k: metrics.get(k, {}).get("mean") for k in keys}

    return {"work_dir": str(result.work_dir), "plan": asdict(result.plan), "data": result.data_source,
            "stage_seconds": result.stage_seconds, "total_seconds": round(result.total_seconds, 1),
            "stage_cpu_seconds": result.stage_cpu_seconds,
            "total_cpu_seconds": round(sum(result.stage_cpu_seconds.values()), 1),
            "evaluation": {k: str(v) for k, v in result.eval_dirs.items()},
            "comparison": str(result.comparison_dir), "figures": [str(f) for f in result.figures],
            "headline": {k: headline(m) for k, m in result.metrics.items()}, "notes": result.notes}
