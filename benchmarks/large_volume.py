"""Whole-brain volumes (issue 9 §7): predict-large at two volume sizes, nnU-Net's whole-volume predictor,
and trace-large, in one run.

What it does, all in ``--workdir``:

1. two synthetic volumes with ``make-volume`` (written block by block), the second ``8×`` the voxels of the
   first (every side doubled);
2. one nnU-Net run folder in nnU-Net's layout (``plans.json``, ``dataset.json``,
   ``fold_0/checkpoint_final.pth``) built as the tests build one
   (``tests/_neurino_run_factory.make_run``: a stock ``PlainConvUNet`` with seeded **random weights**,
   no training — the timings are those of the network, the masks are meaningless), its patch size set
   by ``--patch`` and its spacing to the volumes' 1 × 1 × 1;
3. ``predict-large`` on both volumes with the same run folder, block ``--block``, one dask worker
   process (a ``LocalCluster``), no test-time mirroring, no empty-block skipping (every block predicted):
   wall time, voxels/s, tiles/s and the peak RSS of the worker (its own summary); with ``--extra-block``
   once more on the larger volume at that block (default 256: the issue's RSS bound is stated there);
4. nnU-Net's whole-volume predictor (``nnUNetPredictor.predict_single_npy_array``, tile step 0.5, no
   mirroring) on the smaller volume (``--nnunet-on both``: on both), with as many torch threads as the
   worker had: read + model load + preprocessing + sliding window, timed like predict-large's wall time,
   once in this process ("warm": torch and nnU-Net already imported) and once in a fresh Python process
   ("cold", timed from its start to its exit: as a user runs a predictor, and as predict-large's worker
   process starts; ``--nnunet-start``);
5. ``trace-large`` (default block 128, halo 32) on the volumes' gold labels (``labels/neurites``: sparse
   neurons), in this process: voxels/s.

It prints one table and the ratios the issue's targets are about. On a CUDA machine (``--device cuda``)
it also samples the GPU's utilisation with ``nvidia-smi`` while predict-large runs. Example (the figures
in docs/benchmarks.md)::

    python benchmarks/large_volume.py --workdir /tmp/large_bench --sizes 256 256 256 256 512 512 \\
        --block 256 --patch 64 64 64 --extra-block 0 --nnunet-on both
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def make_run_folder(results: Path, patch: tuple[int, int, int]) -> Path:
    """A random-weight nnU-Net run (tests/_neurino_run_factory.make_run), patch ``patch``, spacing 1."""
    sys.path.insert(0, str(REPO / "tests"))
    import torch
    from _neurino_run_factory import make_run

    run = make_run(results, seed=0)
    plans_path = run / "plans.json"
    plans = json.loads(plans_path.read_text())
    cfg = plans["configurations"]["3d_fullres"]
    cfg["patch_size"] = list(patch)
    cfg["median_image_size_in_voxels"] = [float(p) for p in patch]
    cfg["spacing"] = [1.0, 1.0, 1.0]
    plans["original_median_spacing_after_transp"] = [1.0, 1.0, 1.0]
    plans_path.write_text(json.dumps(plans))
    ckpt_path = run / "fold_0" / "checkpoint_final.pth"      # keep the checkpoint's copy of the plans equal
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    ckpt["init_args"]["plans"] = plans
    torch.save(ckpt, ckpt_path)
    return run


class GpuSampler:
    """Mean / max GPU utilisation (%) from ``nvidia-smi`` every 0.5 s while running (CUDA only)."""

    def __init__(self) -> None:
        self.values: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(0.5):
            try:
                query = ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"]
                out = subprocess.run(query, capture_output=True, text=True, timeout=5).stdout
                self.values.append(float(out.split()[0]))
            except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
                pass

    def __enter__(self) -> GpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> str:
        return f"{np.mean(self.values):.0f} / {np.max(self.values):.0f}" if self.values else "n/a"


def run_predict_large(volume: Path, run: Path, out: Path, block: int, device: str) -> dict:
    """predict-large on ``volume``: its summary figures (and GPU utilisation on CUDA)."""
    from nnunetv2_neurino.large.predict import predict_large

    sampler = GpuSampler() if device.startswith("cuda") else None
    kwargs = dict(block=block, device=device, use_mirroring=False, skip_empty=False, workers=1, force=True)
    if sampler is None:
        res = predict_large(volume, run, out, **kwargs)
    else:
        with sampler:
            res = predict_large(volume, run, out, **kwargs)
    print(res.summary(), flush=True)
    return {"seconds": res.seconds, "voxels_per_s": res.voxels_per_second, "tiles": res.tiles,
            "tiles_per_s": res.tiles / max(res.seconds, 1e-9), "peak_rss_mib": res.peak_worker_rss / 2 ** 20,
            "blocks": res.blocks_total, "threads": max(res.torch_threads, default=0),
            "gpu_util": sampler.summary() if sampler else "-"}


def run_nnunet_whole(volume: Path, run: Path, device: str, threads: int) -> dict:
    """nnU-Net's whole-volume predictor on ``volume`` (read, load, preprocess, sliding window, threshold)."""
    import torch

    from nnunetv2_neurino.inference.model import load_predictor
    from nnunetv2_neurino.inference.predict import mask_from_probabilities, predict_array
    from nnunetv2_neurino.inference.run_folder import resolve_run
    from nnunetv2_neurino.large.readers import open_volume

    torch.set_num_threads(max(1, threads))
    t0 = time.perf_counter()
    vol = open_volume(volume, level=0)
    image = np.asarray(vol.array[...])
    predictor = load_predictor(resolve_run(run), device=device, use_mirroring=False)
    mask = mask_from_probabilities(predict_array(predictor, image, vol.spacing or (1.0, 1.0, 1.0)))
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "voxels_per_s": image.size / seconds, "foreground": float((mask > 0).mean()),
            "voxels": int(image.size)}


def run_nnunet_cold(volume: Path, run: Path, device: str, threads: int) -> dict:
    """:func:`run_nnunet_whole` in a fresh Python process, timed from its start to its exit.

    A cold start, as a user runs a predictor and as predict-large's worker starts (interpreter, torch and
    nnU-Net imports, model load, then the prediction); the in-process ("warm") figure leaves the imports out.
    """
    t0 = time.perf_counter()
    cmd = [sys.executable, str(Path(__file__).resolve()), "--nnunet-child", str(volume), str(run), device,
           str(threads)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    seconds = time.perf_counter() - t0
    child = json.loads(out.strip().splitlines()[-1])
    return {"seconds": seconds, "voxels_per_s": child["voxels"] / seconds, "foreground": child["foreground"]}


def run_trace_large(volume: Path) -> dict:
    """trace-large (default block and halo) on the gold label ``labels/neurites`` of ``volume``."""
    from nnunetv2_neurino.large.readers import open_volume
    from nnunetv2_neurino.large.trace import trace_large

    t0 = time.perf_counter()
    vol = open_volume(volume / "labels" / "neurites", level=0)
    forest = trace_large(vol.array, vol.spacing or (1.0, 1.0, 1.0), progress=False)
    seconds = time.perf_counter() - t0
    n = int(np.prod(vol.shape))
    return {"seconds": seconds, "voxels_per_s": n / seconds, "trees": len(forest.roots), "nodes": forest.n}


def foreground_fraction(volume: Path) -> float:
    """Fraction of labelled voxels, read chunk-row by chunk-row."""
    from nnunetv2_neurino.large.readers import open_volume

    arr = open_volume(volume / "labels" / "neurites", level=0).array
    step = 32
    total = sum(int(np.count_nonzero(np.asarray(arr[z:z + step]))) for z in range(0, arr.shape[0], step))
    return total / float(np.prod(arr.shape))


def _dims(shape) -> str:
    return "x".join(map(str, shape))


def print_tables(sizes: dict, args, pred: dict, whole: dict, trace: dict, threads: int,
                 seconds: float) -> None:
    """The results table and the ratios of the issue's targets (markdown)."""
    print(f"\nsizes {_dims(sizes['small'])} and {_dims(sizes['large'])}, patch {_dims(args.patch)}, "
          f"device {args.device}, 1 worker x {threads} torch threads, random-weight PlainConvUNet "
          f"(8-16-32), no TTA, no skipping; total {seconds:.0f} s\n")
    print("| run | volume | block | blocks | wall s | voxels/s | tiles | tiles/s | peak RSS/worker MiB "
          "| GPU % |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for (name, block), r in pred.items():
        print(f"| predict-large | {name} {_dims(sizes[name])} | {block} | {r['blocks']} | "
              f"{r['seconds']:.1f} | {r['voxels_per_s']:.3g} | {r['tiles']} | {r['tiles_per_s']:.3g} | "
              f"{r['peak_rss_mib']:.0f} | "
              f"{r['gpu_util']} |")
    for (name, start), r in whole.items():
        print(f"| nnU-Net whole volume, {start} | {name} {_dims(sizes[name])} | - | - | {r['seconds']:.1f} | "
              f"{r['voxels_per_s']:.3g} | - | - | - | - |")
    for name, r in trace.items():
        print(f"| trace-large, gold labels ({r['trees']} trees) | {name} {_dims(sizes[name])} | 128 | - | "
              f"{r['seconds']:.1f} | {r['voxels_per_s']:.3g} | - | - | - | - |")
    block = args.block
    rss_ratio = pred[("large", block)]["peak_rss_mib"] / pred[("small", block)]["peak_rss_mib"]
    if any(block < 256 for _, block in pred):
        print("\n(each block evaluates every lattice tile touching its core: below block 256 the lattice "
              "overhead, not the engine, dominates the time ratio; see large/lattice.py)")
    print("\n| ratio | value | target |")
    print("|---|---|---|")
    print(f"| peak RSS per worker, large / small (block {block}) | {rss_ratio:.2f} | <= 1.1 |")
    for (name, b), r in pred.items():
        print(f"| peak RSS per worker, {name} at block {b}, GB | {r['peak_rss_mib'] / 1024:.2f} | "
              f"<= 3 at block 256 |")
    for (name, b), r in pred.items():
        for (wname, start), w in whole.items():
            if wname == name:
                print(f"| time per voxel, predict-large (block {b}) / nnU-Net whole volume ({start}), "
                      f"{name} | {w['voxels_per_s'] / r['voxels_per_s']:.2f} | <= 1.3 |")
    for name, r in trace.items():
        print(f"| trace-large voxels/s per worker, {name} | {r['voxels_per_s'] / 1e6:.1f} M | >= 5 M |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workdir", required=True, help="scratch folder (volumes, run, outputs); emptied first")
    p.add_argument("--sizes", type=int, nargs=6, default=(128, 128, 128, 256, 256, 256),
                   metavar="N", help="Z Y X of the smaller volume, then of the larger one")
    p.add_argument("--block", type=int, default=128, help="predict-large block core (voxels)")
    p.add_argument("--patch", type=int, nargs=3, default=(64, 64, 64), help="network patch size Z Y X")
    p.add_argument("--neurons", type=int, default=8, help="neurons per volume (make-volume)")
    p.add_argument("--extra-block", type=int, default=256,
                   help="also run predict-large on the larger volume at this block (0: no)")
    p.add_argument("--nnunet-on", choices=("small", "both"), default="small",
                   help="volumes nnU-Net's whole-volume predictor runs on (default: the smaller one)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--keep", action="store_true", help="keep the work folder")
    p.add_argument("--nnunet-start", choices=("warm", "cold", "both"), default="both",
                   help="nnU-Net in this process (warm: imports done) and/or in a fresh one (cold: as a "
                        "user runs it, and as predict-large's worker starts)")
    args = p.parse_args(argv)

    from nnunetv2_neurino.large.make_volume import write_volume

    work = Path(args.workdir)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    sizes = {"small": tuple(args.sizes[:3]), "large": tuple(args.sizes[3:])}
    t_all = time.perf_counter()
    volumes = {}
    for name, shape in sizes.items():
        t0 = time.perf_counter()
        volumes[name] = write_volume(work / f"{name}.ome.zarr", shape, args.neurons, seed=0, progress=False)
        print(f"make-volume {name} {shape}: {time.perf_counter() - t0:.1f} s, labelled fraction "
              f"{foreground_fraction(volumes[name]):.4f}", flush=True)
    run = make_run_folder(work / "results", tuple(args.patch))

    runs = [(name, args.block) for name in sizes]
    if args.extra_block:
        runs.append(("large", args.extra_block))
    pred = {(name, block): run_predict_large(volumes[name], run, work / f"{name}_b{block}_pred.ome.zarr",
                                             block, args.device) for name, block in runs}
    threads = pred[("small", args.block)]["threads"]
    whole_on = list(sizes) if args.nnunet_on == "both" else ["small"]
    starts = ["warm", "cold"] if args.nnunet_start == "both" else [args.nnunet_start]
    runner = {"warm": run_nnunet_whole, "cold": run_nnunet_cold}
    whole = {(name, start): runner[start](volumes[name], run, args.device, threads)
             for name in whole_on for start in starts}
    trace = {name: run_trace_large(vol) for name, vol in volumes.items()}
    print_tables(sizes, args, pred, whole, trace, threads, time.perf_counter() - t_all)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def nnunet_child(argv: list[str]) -> int:
    """``--nnunet-child VOLUME RUN DEVICE THREADS``: :func:`run_nnunet_whole`; figures as one JSON line."""
    volume, run, device, threads = argv
    print(json.dumps(run_nnunet_whole(Path(volume), Path(run), device, int(threads))))
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--nnunet-child"]:
        raise SystemExit(nnunet_child(sys.argv[2:]))
    raise SystemExit(main())
