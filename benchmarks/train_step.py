"""Training-step speed and memory: networks against stock nnU-Net, topology losses against Dice + CE.

Run: ``.venv/bin/python benchmarks/train_step.py`` (defaults: 64³ patch, batch 2, 3 timed steps after 1
warm-up, 2 CPU threads; CUDA with AMP when a GPU is present). Quick CPU run:
``.venv/bin/python benchmarks/train_step.py --patch 32 --repeats 2``. Prints one Markdown table.

What is timed: ``trainer.train_step(batch)`` of the real trainers — forward, loss, backward, gradient
clipping and the optimiser step, exactly what ``nnUNetv2_train`` runs per iteration (nnU-Net's AMP +
GradScaler on CUDA, fp32 on the CPU). All configurations live in one process and their steps are
interleaved round-robin, so they see the same machine load; the loss configurations share one network
and optimiser. Times are the best of ``--repeats`` steps: wall clock (CUDA synchronised) and process CPU
time (all threads, including the official TASL's background thread). Ratios use wall time on CUDA and
CPU time on the CPU, which other jobs on a shared machine distort far less.

Rows
----
* Networks (Dice + CE): stock nnU-Net ``PlainConvUNet`` as nnU-Net's planner configures it for the patch
  (64³: 5 stages, 32→320 features, 16.55 M parameters), NeurINO-T, NeurINO-S (random init; pretrained
  weights do not change the cost) and MedNeXt-L k3 GRN. Ratio = step time / nnU-Net's step time.
  Target: NeurINO-T ≤ 2.5× nnU-Net (docs/benchmarks.md).
* Losses on one backbone (``--loss-backbone``, default NeurINO-T): Dice + CE, official TASL (gradient
  rescaling, TASL computed in a background thread while backward runs), differentiable TASL (node + edge
  + path terms, path = minimum-cost path search per step) and Skeleton Recall. Ratio = step time / Dice+CE
  step time. Targets: official TASL ≤ 1.15×, differentiable TASL ≤ 1.25×.
  The official TASL's cost depends on the prediction it skeletonizes: an untrained network predicts noise
  (p ≈ 0.5 everywhere) whose skeleton is far larger than any trained model's. The ``official TASL`` row
  therefore feeds the TASL thread a trained-looking prediction (the Y tube, slightly thicker, cut in one
  arm: p = 0.9 inside, 0.1 outside) after computing the network's own foreground probability as the
  trainer does; ``official TASL, untrained net`` is the same step on the untrained network's own output
  (a worst case, printed for transparency).
* Loss alone (second table): each loss's forward + backward on fixed logits of the loss backbone (and the
  official TASL computed), best of 3 × ``--repeats``; the difference to Dice + CE is the loss's own cost
  per step, and 1 + difference / (Dice + CE step) the step ratio it implies. These runs take milliseconds
  to a fraction of a second, so a loaded machine distorts them far less than whole steps.
* Data pipeline (not in the step; nnU-Net runs it in its augmentation workers): time per sample of the
  transforms that append the ground-truth channels — the skeleton graph (differentiable TASL) and the
  Skeleton Recall tube.

Peak memory per step (the largest over the steps): CUDA ``max_memory_allocated`` (counter reset before
each step: parameters, optimiser state, gradients, activations); CPU: growth of the process's peak
resident set during the step over its resident set before it (freed heap returned to the OS with
``malloc_trim`` and VmHWM reset before each step) — activations and gradients; the first step also
allocates the optimiser state (2 × parameters for AdamW). The loss configurations share their network,
so only the first of them to run pays for the optimiser state.
The machine's load average is printed with the table: on a shared CPU the times are upper bounds.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("nnUNet_def_n_proc", "2")
os.environ.setdefault("nnUNet_n_proc_DA", "0")
os.environ.setdefault("nnUNet_compile", "false")  # eager networks: compile time would distort the ratios

MODELS = ("nnunet", "neurino-t", "neurino-s", "mednext-l")
LOSSES = ("dcce", "official", "official-raw", "dtasl", "sr")
LABELS = {"nnunet": "stock nnU-Net PlainConvUNet", "neurino-t": "NeurINO-T", "neurino-s": "NeurINO-S",
          "mednext-l": "MedNeXt-L k3 GRN", "dcce": "Dice + CE", "official": "+ official TASL",
          "official-raw": "+ official TASL, untrained net (worst case)", "dtasl": "+ differentiable TASL",
          "sr": "+ Skeleton Recall"}
TARGETS = {"neurino-t": 2.5, "official": 1.15, "dtasl": 1.25}
DATASET = "Dataset985_TrainStepBench"


# ----------------------------------------------------------------------------------------------------
# trainers
# ----------------------------------------------------------------------------------------------------
def trainer_class(backbone: str, loss: str):
    """The trainer class of a (backbone, loss) configuration; random init, no pretrained-weights check."""
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    import nnunetv2_neurino.trainers as tr

    table = {
        "nnunet": {"dcce": nnUNetTrainer, "official": tr.nnUNetTrainerTASL,
                   "dtasl": tr.nnUNetTrainerTASL_dTASL, "sr": tr.nnUNetTrainerSkeletonRecall},
        "neurino-t": {"dcce": tr.nnUNetTrainerNeurINO_noTASL, "official": tr.nnUNetTrainerNeurINO_scratch,
                      "dtasl": tr.nnUNetTrainerNeurINO_scratch_dTASL,
                      "sr": tr.nnUNetTrainerNeurINO_SkeletonRecall},
        "neurino-s": {"dcce": tr.nnUNetTrainerNeurINO_S, "official": tr.nnUNetTrainerNeurINO_S,
                      "dtasl": tr.nnUNetTrainerNeurINO_S_dTASL},
        "mednext-l": {"dcce": tr.nnUNetTrainerMedNeXt, "official": tr.nnUNetTrainerMedNeXtTASL,
                      "dtasl": tr.nnUNetTrainerMedNeXtTASL_dTASL},
    }
    key = "official" if loss == "official-raw" else loss
    if key not in table[backbone]:
        raise SystemExit(f"no {loss} trainer for backbone {backbone}")
    base = table[backbone][key]
    attrs = {"use_pretrained": False} if backbone.startswith("neurino") else {}
    if backbone == "neurino-s" and loss == "dcce":
        attrs["topology_loss"] = "none"
    return type(f"Bench_{base.__name__}", (base,), attrs)


def stock_architecture(patch: list[int]) -> dict:
    """nnU-Net's PlainConvUNet for an isotropic patch, configured as its default planner does."""
    from nnunetv2.experiment_planning.experiment_planners.network_topology import get_pool_and_conv_props

    _, pool, conv, _, _ = get_pool_and_conv_props([1.0, 1.0, 1.0], patch, 4, 999999)
    n = len(pool)
    return {
        "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
        "arch_kwargs": {
            "n_stages": n, "features_per_stage": [min(32 * 2**i, 320) for i in range(n)],
            "conv_op": "torch.nn.modules.conv.Conv3d", "kernel_sizes": [list(k) for k in conv],
            "strides": [list(s) for s in pool], "n_conv_per_stage": [2] * n,
            "n_conv_per_stage_decoder": [2] * (n - 1), "conv_bias": True,
            "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
            "norm_op_kwargs": {"eps": 1e-05, "affine": True}, "dropout_op": None, "dropout_op_kwargs": None,
            "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True},
        },
        "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
    }


def plans_for(patch: list[int], batch: int) -> dict:
    arch = stock_architecture(patch)
    resampling = {}
    for k in ("data", "seg", "probabilities"):
        resampling[f"resampling_fn_{k}"] = "resample_data_or_seg_to_shape"
        resampling[f"resampling_fn_{k}_kwargs"] = {"is_seg": k == "seg", "order": 1, "order_z": 0,
                                                   "force_separate_z": None}
    return {
        "dataset_name": DATASET, "plans_name": "nnUNetPlans", "image_reader_writer": "SimpleITKIO",
        "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2],
        "original_median_spacing_after_transp": [1.0] * 3, "original_median_shape_after_transp": patch,
        "label_manager": "LabelManager", "experiment_planner_used": "ExperimentPlanner",
        "foreground_intensity_properties_per_channel": {
            "0": {"mean": 0.0, "std": 1.0, "percentile_00_5": -1.0, "percentile_99_5": 1.0}},
        "configurations": {"3d_fullres": {
            "data_identifier": "nnUNetPlans_3d_fullres", "preprocessor_name": "DefaultPreprocessor",
            "batch_size": batch, "patch_size": list(patch), "median_image_size_in_voxels": list(patch),
            "spacing": [1.0] * 3, "normalization_schemes": ["ZScoreNormalization"],
            "use_mask_for_norm": [False], "batch_dice": False, "architecture": arch, **resampling,
        }},
        "continue_training": False,
    }


def make_batch(trainer, batch: int, seed: int = 0):
    """Y-tube labels through the trainer's own topology transform and nnU-Net's DS downsampling."""
    import numpy as np
    import torch
    from batchgeneratorsv2.transforms.utils.deep_supervision_downsampling import DownsampleSegForDSTransform

    from nnunetv2_neurino.testing.phantoms import y_tube

    patch = tuple(trainer.configuration_manager.patch_size)
    rng = np.random.default_rng(seed)
    label = y_tube(patch, 2.5)
    labels = np.stack([np.roll(label, 3 * i, axis=2) for i in range(batch)])[:, None].astype(np.int16)
    make = getattr(type(trainer), "topology_transform", None)
    transform = make(trainer.label_manager.ignore_label) if make is not None else None
    scales = trainer._get_deep_supervision_scales()
    per_sample = []
    for lab in labels:
        seg = torch.from_numpy(lab)
        if transform is not None:
            seg = transform(segmentation=seg)["segmentation"]
        if scales is not None:
            seg = DownsampleSegForDSTransform(ds_scales=scales)(segmentation=seg)["segmentation"]
        per_sample.append(seg)
    target = ([torch.stack([s[i] for s in per_sample]) for i in range(len(scales))] if scales is not None
              else torch.stack(per_sample))
    data = torch.from_numpy(labels.astype(np.float32) + rng.normal(0, 0.5, labels.shape).astype(np.float32))
    return {"data": data, "target": target}


def trained_looking_probability(patch, batch: int):
    """p = 0.9 inside a slightly thicker Y tube with a 3-voxel cut in one arm, 0.1 elsewhere (B, Z, Y, X)."""
    import numpy as np
    import torch

    from nnunetv2_neurino.testing.phantoms import y_tube, y_tube_segments

    pred = y_tube(tuple(patch), 3.0)
    (a, b) = y_tube_segments(tuple(patch))[1]
    mid = np.round((a + b) / 2).astype(int)
    pred[max(mid[0] - 1, 0):mid[0] + 2] = False  # cut the first arm's level (a gap in the prediction)
    prob = np.where(pred, 0.9, 0.1).astype(np.float32)
    return torch.from_numpy(np.stack([np.roll(prob, 3 * i, axis=2) for i in range(batch)]))


def _vm_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _reset_peak_rss() -> None:
    """Return freed heap memory to the OS (glibc ``malloc_trim``) and reset this process's peak-RSS
    counter VmHWM (Linux ≥ 4.0), so the next step's VmHWM − VmRSS is that step's own peak."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _nnunet_dirs() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="neurino_bench_"))
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        os.environ[name] = str(tmp / name)
    data_dir = tmp / "nnUNet_preprocessed" / DATASET / "nnUNetPlans_3d_fullres"
    data_dir.mkdir(parents=True)
    (data_dir / "case.b2nd").touch()  # nnU-Net infers its dataset class from the files; none is read


def build_trainer(backbone: str, loss: str, args):
    """An initialised trainer of one configuration, on ``args.device``."""
    import contextlib
    import io

    import torch

    cls = trainer_class(backbone, loss)
    if loss == "official":
        realistic = trained_looking_probability([args.patch] * 3, args.batch)

        def _official_tasl_step(self, base=cls._official_tasl_step):
            step = base(self)  # the trainer's own step: it still computes the prediction's probability
            if not getattr(step, "realistic", False):
                submit = step.official.submit
                step.official.submit = lambda prob, target_fg: submit(realistic, target_fg)
                step.realistic = True
            return step

        cls = type(cls.__name__, (cls,), {"_official_tasl_step": _official_tasl_step})
    dataset_json = {"channel_names": {"0": "zscore"}, "labels": {"background": 0, "neurite": 1},
                    "numTraining": 1, "file_ending": ".nii.gz"}
    with contextlib.redirect_stdout(io.StringIO()):  # nnU-Net's banner and log lines
        plans = copy.deepcopy(plans_for([args.patch] * 3, args.batch))
        trainer = cls(plans=plans, configuration="3d_fullres", fold=0, dataset_json=dataset_json,
                      device=torch.device(args.device))
        trainer.initialize()
    trainer.network.train()
    return trainer


def measure(args) -> dict:
    """Build every configuration in this process and time their steps round-robin.

    Interleaving the configurations step by step exposes them to the same machine load. The loss
    configurations share the network and optimiser of the loss backbone's Dice + CE trainer, so they differ
    only by their loss (and, for the official TASL, its gradient rescaling).
    """
    import torch

    torch.set_num_threads(args.threads)
    _nnunet_dirs()
    configs = [f"{m}:dcce" for m in args.models]
    if f"{args.loss_backbone}:dcce" not in configs:
        configs.append(f"{args.loss_backbone}:dcce")
    configs += [f"{args.loss_backbone}:{loss}" for loss in args.losses if loss != "dcce"]
    trainers, batches = {}, {}
    shared = None
    for config in configs:
        backbone, loss = config.split(":")
        trainer = build_trainer(backbone, loss, args)
        if backbone == args.loss_backbone:
            if shared is None:
                shared = trainer
            else:
                trainer.network, trainer.optimizer = shared.network, shared.optimizer
        trainers[config] = trainer
        batches[config] = make_batch(trainer, args.batch)
        print(f"  built {config}", file=sys.stderr)
    cuda = args.device == "cuda"
    results = {c: {"params": sum(p.numel() for p in trainers[c].network.parameters()), "times": [],
                   "cpu_times": [], "peak_mib": 0.0} for c in configs}
    for round_ in range(args.warmup + args.repeats):
        order = configs[round_ % len(configs):] + configs[:round_ % len(configs)]
        for config in order:
            trainer = trainers[config]
            if cuda:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            _reset_peak_rss()
            rss_before = _vm_kib("VmRSS")
            start, start_cpu = time.perf_counter(), time.process_time()
            trainer.train_step(batches[config])
            if cuda:
                torch.cuda.synchronize()
            wall, cpu = time.perf_counter() - start, time.process_time() - start_cpu
            peak = (torch.cuda.max_memory_allocated() / 2**20 if cuda
                    else (_vm_kib("VmHWM") - rss_before) / 1024)
            r = results[config]
            r["peak_mib"] = max(r["peak_mib"], peak)
            if round_ >= args.warmup:
                r["times"].append(wall)
                r["cpu_times"].append(cpu)
            print(f"  round {round_} {config:24s} wall {wall:8.3f} s  cpu {cpu:8.3f} s  peak {peak:7.0f} MiB",
                  file=sys.stderr)
    results["_loss_costs"] = loss_costs({c: trainers[c] for c in configs if c.startswith(args.loss_backbone)},
                                        batches, args)
    return results


def loss_costs(trainers: dict, batches: dict, args) -> dict:
    """Seconds (best of 3 × repeats) of each loss alone on fixed logits: forward + backward of the loss,
    plus, for the official TASL, computing TASL (thread submit + wait). Far less exposed to machine load
    than whole steps; the difference to Dice + CE is the loss's own cost per step."""
    import torch

    out = {}
    for config, trainer in trainers.items():
        batch = batches[config]
        target = batch["target"]
        with torch.no_grad():
            logits = trainer.network(batch["data"].to(trainer.device))
        logits = logits if isinstance(logits, (list, tuple)) else [logits]
        device = trainer.device
        target = [t.to(device) for t in target] if isinstance(target, list) else target.to(device)
        best = float("inf")
        uses_official = getattr(trainer, "topology_loss", "none") == "official"
        for _ in range(3 * max(args.repeats, 1)):
            outs = [o.detach().clone().requires_grad_() for o in logits]
            if args.device == "cuda":
                torch.cuda.synchronize()
            start = time.process_time() if args.device == "cpu" else time.perf_counter()
            loss = trainer.loss(outs if len(outs) > 1 else outs[0], target if len(outs) > 1 else target[0])
            official = trainer._official_tasl_step() if uses_official else None
            if official is not None:
                official.start(outs, target)
            loss.backward()
            if official is not None:
                official.finish(outs)
            if args.device == "cuda":
                torch.cuda.synchronize()
            best = min(best, (time.process_time() if args.device == "cpu" else time.perf_counter()) - start)
        out[config] = best
    return out


def pipeline_times(patch: int, repeats: int) -> dict:
    """Seconds per sample of the ground-truth-channel transforms on a Y-tube label of the patch size."""
    import torch

    from nnunetv2_neurino.losses.transforms import SkeletonRecallTubeTransform, TopologyGraphTransform
    from nnunetv2_neurino.testing.phantoms import y_tube

    seg = torch.from_numpy(y_tube((patch,) * 3, 2.5).astype("int16"))[None]
    out = {}
    for name, transform in (("graph", TopologyGraphTransform()), ("tube", SkeletonRecallTubeTransform())):
        best = float("inf")
        for _ in range(max(repeats, 1)):
            start = time.perf_counter()
            transform(segmentation=seg.clone())
            best = min(best, time.perf_counter() - start)
        out[name] = best
    return out


# ----------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patch", type=int, default=64, help="isotropic patch edge, voxels (default 64)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per configuration (best is kept)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--losses", nargs="+", default=list(LOSSES), choices=LOSSES)
    parser.add_argument("--loss-backbone", default="neurino-t", choices=MODELS)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    args = parser.parse_args(argv)
    if args.device is None:
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    started = time.time()
    results = measure(args)
    pipe = pipeline_times(args.patch, args.repeats)
    load = os.getloadavg()

    cuda = args.device == "cuda"
    # the ratio uses wall time on CUDA and process CPU time (all threads, incl. the TASL thread) on the
    # CPU, which a shared machine's load distorts far less than wall time
    key = "times" if cuda else "cpu_times"

    def best(config, which=key):
        return min(results[config][which])

    amp = " + AMP" if cuda else " (fp32)"
    print(f"Patch {args.patch}³, batch {args.batch}, device {args.device}{amp}, {args.threads} CPU threads; "
          f"best of {args.repeats} steps after {args.warmup} warm-up; load average "
          f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}; total {time.time() - started:.0f} s. "
          f"Ratios from {'wall' if cuda else 'CPU'} time.\n")
    print("| configuration | params | step wall (s) | step CPU (s) | ratio | peak memory (MiB) | target |")
    print("|---|---:|---:|---:|---:|---:|---|")

    def row(label, c, params, ratio, ref_name, target):
        mark = "" if target is None else f"≤ {target}× {'✓' if ratio <= target else '✗'}"
        print(f"| {label} | {params} | {best(c, 'times'):.3f} | {best(c, 'cpu_times'):.3f} | "
              f"{ratio:.2f}× {ref_name} | {results[c]['peak_mib']:.0f} | {mark} |")

    ref_model = "nnunet:dcce" if "nnunet:dcce" in results else None
    for m in args.models:
        c = f"{m}:dcce"
        ratio = best(c) / best(ref_model) if ref_model else float("nan")
        row(f"{LABELS[m]} (Dice + CE)", c, f"{results[c]['params'] / 1e6:.2f} M", ratio, "nnU-Net",
            TARGETS.get(m) if m != "nnunet" else None)
    ref_loss = f"{args.loss_backbone}:dcce"
    for loss in args.losses:
        c = f"{args.loss_backbone}:{loss}"
        ratio = best(c) / best(ref_loss) if ref_loss in results else float("nan")
        row(f"{LABELS[args.loss_backbone]} {LABELS[loss]}", c, "", ratio, "Dice + CE", TARGETS.get(loss))
    costs = results["_loss_costs"]
    ref_cost = costs.get(ref_loss)
    if ref_cost is not None and ref_loss in results:
        name = LABELS[args.loss_backbone]
        print(f"\nLoss alone on fixed logits ({name} outputs; forward + backward of the loss, official "
              f"TASL computed too; best of {3 * args.repeats}, {'CPU' if not cuda else 'wall'} time) and "
              f"the step ratio it implies (1 + extra / {name} Dice + CE step):\n")
        print("| loss | seconds | extra over Dice + CE (s) | implied step ratio | target |")
        print("|---|---:|---:|---:|---|")
        for loss in args.losses:
            c = f"{args.loss_backbone}:{loss}"
            extra = costs[c] - ref_cost
            implied = 1 + extra / best(ref_loss)
            target = TARGETS.get(loss)
            mark = "" if target is None else f"≤ {target}× {'✓' if implied <= target else '✗'}"
            print(f"| {LABELS[loss].lstrip('+ ')} | {costs[c]:.3f} | {extra:+.3f} | {implied:.2f}× | "
                  f"{mark} |")
    print(f"\nData pipeline per sample ({args.patch}³ Y-tube label, in nnU-Net's augmentation workers, not "
          f"in the step): skeleton graph channels {pipe['graph']:.3f} s, Skeleton Recall tube "
          f"{pipe['tube']:.3f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
