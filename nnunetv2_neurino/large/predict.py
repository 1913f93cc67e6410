"""``neurino predict-large``: block-wise nnU-Net prediction of volumes that do not fit in memory.

The volume is cut into blocks whose cores lie on the global tile lattice (:mod:`.lattice`); each block is
one task on dask.distributed (an embedded ``LocalCluster`` with one thread per worker, an existing cluster
given by its address, or ``scheduler="synchronous"``: in this process, for tests and debugging). A task
reads its core plus the lattice halo, normalises it with the volume's global statistics
(:mod:`.normalization`), evaluates every lattice tile touching its core with nnU-Net's network (test-time
mirroring and fold ensembling as ``nnUNetPredictor``), blends the logits with nnU-Net's Gaussian
(``compute_gaussian``, σ = P/8, float32 accumulators where nnU-Net uses float16), applies softmax and writes
its core — whole output chunks — into the OME-Zarr of :mod:`.output`. The model is loaded once per worker
(a per-process cache keyed on run, folds, checkpoint, device and mirroring).

Differences from ``nnUNetPredictor.predict_single_npy_array`` on the same volume: the tile positions (a
fixed lattice instead of steps fitted to the image size), the global instead of per-image statistics, no
crop to the non-zero bounding box, and float32 instead of float16 accumulation. No resampling is done: the
volume's spacing must match the plans' within 10 % on every axis (otherwise an error that names a level
that matches, if one does).

Empty blocks: a block is skipped (nothing written: the mask reads 0, the probability 0) when the maximum
input intensity in its core and halo is below the darkest 0.5 % of the training foreground (the plans'
``foreground_intensity_properties_per_channel["0"]["percentile_00_5"]``, in input units); the rule is off
when the plans lack that value or with ``skip_empty=False`` (``--no-skip``).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nnunetv2_neurino.errors import NeurinoError
from nnunetv2_neurino.large.engine import (
    BlockReport,
    current_worker_share,
    peak_rss_bytes,
    release_free_memory,
    run_tasks,
    torch_threads_rule,
    usable_cores,
)
from nnunetv2_neurino.large.lattice import Lattice, block_tiles, evaluation_overhead, make_lattice, read_box
from nnunetv2_neurino.large.normalization import IntensityStatistics, sample_statistics
from nnunetv2_neurino.large.output import (
    MASK_PATH,
    PROB_PATH,
    create_layout,
    mark_complete,
    marker_path,
    write_mask_pyramid,
)

_PREDICTORS: dict = {}  # per worker process: the loaded nnUNetPredictor


@dataclass(frozen=True)
class BlockJob:
    """Everything a block task needs (picklable; sent once to every worker)."""

    input: str
    level: int | None
    run_dir: str
    folds: tuple[str, ...]
    checkpoint: str
    device: str
    use_mirroring: bool
    output: str
    lattice: Lattice
    stats: IntensityStatistics
    threshold: float
    save_probabilities: bool
    skip_below: float | None


@dataclass
class LargePredictionResult:
    """Summary of a :func:`predict_large` run (blocks predicted / skipped as empty / already done)."""

    output: Path
    lattice: Lattice
    blocks_total: int
    blocks_done: int
    blocks_skipped: int
    blocks_resumed: int
    seconds: float
    voxels_per_second: float
    peak_worker_rss: int = 0
    torch_threads: tuple[int, ...] = ()
    tiles: int = 0
    failed: list = field(default_factory=list)

    def summary(self) -> str:
        """The lines ``neurino predict-large`` prints at the end."""
        lat = self.lattice
        threads = "/".join(str(t) for t in sorted(set(self.torch_threads))) or "-"
        return (f"block core {'x'.join(map(str, lat.core))} (patch {'x'.join(map(str, lat.patch))}, step "
                f"{'x'.join(map(str, lat.step))}), {self.blocks_total} blocks, "
                f"{evaluation_overhead(lat):.2f}x the tiles of one whole-volume pass\n"
                f"{self.output}: {self.blocks_done} predicted, {self.blocks_skipped} skipped as empty, "
                f"{self.blocks_resumed} already done; {self.seconds:.1f} s, "
                f"{self.voxels_per_second:.3g} voxels/s, {self.tiles} tiles "
                f"({self.tiles / max(self.seconds, 1e-9):.3g} tiles/s)\n"
                f"peak memory of a worker (RSS): {self.peak_worker_rss / 2 ** 20:.0f} MiB; "
                f"torch threads per worker: {threads}")


def _predictor(job: BlockJob):
    """The worker's cached predictor (loaded on its first block)."""
    import torch

    device = job.device
    worker_name = None
    try:
        from distributed import get_worker

        worker_name = get_worker().name
    except (ImportError, ValueError):
        pass
    if device == "cuda" and torch.cuda.device_count() > 1 and isinstance(worker_name, int):
        device = f"cuda:{worker_name % torch.cuda.device_count()}"  # one worker per GPU
    key = (job.run_dir, job.folds, job.checkpoint, device, job.use_mirroring, worker_name)
    if key not in _PREDICTORS:
        from nnunetv2_neurino.inference.model import load_predictor
        from nnunetv2_neurino.inference.run_folder import resolve_run

        if worker_name is not None:  # a dask worker (OMP_NUM_THREADS=1 there): the rule of .engine
            torch.set_num_threads(torch_threads_rule(usable_cores(), current_worker_share()))
        _PREDICTORS.clear()
        _PREDICTORS[key] = load_predictor(resolve_run(job.run_dir, list(job.folds)), job.checkpoint, device,
                                          use_mirroring=job.use_mirroring)
    return _PREDICTORS[key]


def _tile_feed(data, slices: list, depth: int = 2):
    """Yield ``data[sl][None, None]`` as contiguous tiles, cut by a background thread ``depth`` tiles ahead.

    As nnU-Net's own sliding window does: the copy (and, on CUDA, the transfer) overlaps the network call.
    On the CPU it also matters for speed: the same tiles fed from the calling thread ran the network about
    2x slower (docs/benchmarks.md, "Whole-brain volumes").
    """
    import queue
    import threading

    import torch

    tiles: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for sl in slices:
                if stop.is_set():
                    return
                tiles.put(torch.clone(data[sl][None, None], memory_format=torch.contiguous_format))
        except BaseException as exc:  # handed to the consumer, which re-raises it
            tiles.put(exc)
            return
        tiles.put(None)

    worker = threading.Thread(target=produce, daemon=True)
    worker.start()
    try:
        while (item := tiles.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:  # a consumer that stops early (error) must not leave the producer blocked on a full queue
        stop.set()
        while worker.is_alive():
            try:
                tiles.get_nowait()
            except queue.Empty:
                worker.join(0.01)


def block_probabilities(predictor, array, stats: IntensityStatistics, lattice: Lattice,
                        start: tuple[int, int, int], stop: tuple[int, int, int],
                        skip_below: float | None = None) -> np.ndarray | None:
    """Class probabilities of the box [start, stop) from every lattice tile touching it.

    Parameters
    ----------
    predictor : initialised ``nnUNetPredictor`` (network, folds, mirroring axes).
    array : numpy-sliceable [z, y, x] input volume of ``lattice.shape``.
    stats : global normalisation.
    start, stop : the box (a block core, or the whole volume), (z, y, x) voxels.
    skip_below : return None when the raw maximum of the region read is below this.

    Returns
    -------
    float32 (C, z, y, x) softmax probabilities of the box, or None for a skipped empty block.
    """
    import torch
    from nnunetv2.inference.sliding_window_prediction import compute_gaussian

    r0, r1 = read_box(lattice, start, stop)
    lo = tuple(max(a, 0) for a in r0)
    hi = tuple(min(b, n) for b, n in zip(r1, lattice.shape))
    raw = np.asarray(array[tuple(slice(a, b) for a, b in zip(lo, hi))])
    if skip_below is not None and float(raw.max()) < skip_below:
        return None
    region = np.zeros(tuple(b - a for a, b in zip(r0, r1)), np.float32)  # zero beyond the volume, as nnU-Net
    region[tuple(slice(a - o, b - o) for a, b, o in zip(lo, hi, r0))] = stats.apply(raw)
    del raw
    device = predictor.device
    data = torch.from_numpy(region).to(device)
    n_classes = predictor.label_manager.num_segmentation_heads
    core_shape = tuple(b - a for a, b in zip(start, stop))
    # accumulators cover the core only (the halo's sums would be thrown away): memory follows the block
    logits = torch.zeros((n_classes, *core_shape), dtype=torch.float32, device=device)
    weights = torch.zeros(core_shape, dtype=torch.float32, device=device)
    gauss = compute_gaussian(tuple(lattice.patch), sigma_scale=1. / 8, value_scaling_factor=10,
                             dtype=torch.float32, device=device)
    tiles = block_tiles(lattice, start, stop)
    slices = [tuple(slice(t - o, t - o + p) for t, o, p in zip(tile, r0, lattice.patch)) for tile in tiles]
    parts = [_core_part(tile, lattice.patch, start, stop) for tile in tiles]
    autocast = torch.autocast(device.type) if device.type == "cuda" else torch.autocast("cpu", enabled=False)
    params = predictor.list_of_parameters
    with torch.inference_mode(), autocast:
        for k, state in enumerate(params):
            if len(params) > 1:
                predictor.network.load_state_dict(state)
            # global C order: each voxel sums its tiles in the same order in every block
            for (in_core, in_tile), tile in zip(parts, _tile_feed(data, slices)):
                pred = predictor._internal_maybe_mirror_and_predict(tile)[0].float()
                logits[(slice(None), *in_core)] += pred[(slice(None), *in_tile)] * gauss[in_tile]
                if k == 0:
                    weights[in_core] += gauss[in_tile]
    del data, region
    logits /= weights * len(params)  # in place: the block's peak memory is its accumulators
    probs = predictor.label_manager.apply_inference_nonlin(logits)
    return probs.float().cpu().numpy()


def _core_part(tile: tuple[int, int, int], patch: tuple[int, int, int], start: tuple[int, int, int],
               stop: tuple[int, int, int]) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """Where the tile at origin ``tile`` (global voxels) overlaps the core [start, stop).

    Returns (slices into the core, slices into the tile).
    """
    lo = [max(t, a) for t, a in zip(tile, start)]
    hi = [min(t + p, b) for t, p, b in zip(tile, patch, stop)]
    return (tuple(slice(a - s, b - s) for a, b, s in zip(lo, hi, start)),
            tuple(slice(a - t, b - t) for a, b, t in zip(lo, hi, tile)))


def run_block(job: BlockJob, index: tuple[int, int, int]) -> BlockReport:
    """Predict block ``index`` and write its core; returns its report ("done" | "skipped", peak RSS)."""
    import torch
    import zarr

    from nnunetv2_neurino.inference.predict import mask_from_probabilities
    from nnunetv2_neurino.large.readers import open_volume

    out = Path(job.output)
    start, stop = job.lattice.core_box(index)
    volume = open_volume(job.input, job.level)
    probs = block_probabilities(_predictor(job), volume.array, job.stats, job.lattice, start, stop,
                                job.skip_below)
    status, tiles = "skipped", 0
    if probs is not None:
        tiles = len(block_tiles(job.lattice, start, stop))
        sl = tuple(slice(a, b) for a, b in zip(start, stop))
        zarr.open_array(out / MASK_PATH / "0", mode="r+")[sl] = mask_from_probabilities(probs, job.threshold)
        if job.save_probabilities:
            fg = np.clip(np.rint((1.0 - probs[0]) * 255.0), 0, 255).astype(np.uint8)
            zarr.open_array(out / PROB_PATH / "0", mode="r+")[sl] = fg
        status = "done"
    marker_path(out, index).write_text(status)  # written after the chunks: a marker means the block is whole
    del probs
    release_free_memory()  # the next block starts from the model's footprint, not this block's
    return BlockReport(index, status, peak_rss_bytes(), torch.get_num_threads(), tiles)


def _plans_settings(run, level_spacing) -> dict:
    """Patch size, plan spacing and normalisation of the run's configuration (NeurinoError if unusable)."""
    from nnunetv2_neurino.inference.run_folder import load_json

    plans = load_json(run.trainer_dir / "plans.json")
    dataset = load_json(run.trainer_dir / "dataset.json")
    cfg = plans.get("configurations", {}).get(run.configuration)
    if cfg is None:
        raise NeurinoError(f"{run.trainer_dir / 'plans.json'} has no configuration {run.configuration!r}")
    if list(plans.get("transpose_forward", [0, 1, 2])) != [0, 1, 2]:
        raise NeurinoError(f"{run.trainer_dir / 'plans.json'}: transpose_forward "
                           f"{plans['transpose_forward']} is not supported (needs [0, 1, 2])")
    channels = dataset.get("channel_names", dataset.get("modality", {"0": ""}))
    if len(channels) != 1:
        raise NeurinoError(f"{run.trainer_dir / 'dataset.json'}: the run expects {len(channels)} channels; "
                           "predict-large handles single-channel volumes")
    if len(cfg["patch_size"]) != 3:
        raise NeurinoError(f"{run.trainer_dir / 'plans.json'}: configuration {run.configuration} is not 3D")
    props = plans.get("foreground_intensity_properties_per_channel", {}).get("0", {})
    return {"patch": tuple(int(p) for p in cfg["patch_size"]), "spacing": tuple(cfg["spacing"]),
            "scheme": cfg["normalization_schemes"][0], "use_mask": bool(cfg["use_mask_for_norm"][0]),
            "intensity_properties": props, "skip_below": props.get("percentile_00_5")}


def _prepare_output(out: Path, attrs: dict, shape, core, spacing, save_probabilities: bool,
                    resume: bool, force: bool) -> set:
    """Create (or reopen with ``resume``) the output; returns the indices of blocks already written."""
    import zarr

    if out.exists():
        try:
            old = dict(zarr.open_group(out, mode="r").attrs)
        except Exception:  # noqa: BLE001 - any unreadable store is "not ours"
            old = {}
        if "neurino" not in old:
            raise NeurinoError(f"{out} exists and was not written by neurino predict-large; not touching it")
        if resume:
            if old["neurino"] != attrs:
                changed = sorted(k for k in attrs if old["neurino"].get(k) != attrs[k])
                raise NeurinoError(f"--resume: {out} was written with other settings ({', '.join(changed)})")
            done = set()
            for p in (out / "_neurino_blocks").glob("*.done"):
                done.add(tuple(int(v) for v in p.stem.split("_")))
            return done
        if not force:
            raise NeurinoError(f"{out} exists (pass --resume to continue it or --force to replace it)")
        shutil.rmtree(out)
    create_layout(out, shape, core, spacing, save_probabilities, attrs)
    return set()


def predict_large(input_path: str | Path, run_dir: str | Path, output: str | Path, block: int = 256,
                  device: str = "cpu", use_mirroring: bool = True, threshold: float = 0.5,
                  save_probabilities: bool = False, workers: int | None = None, scheduler: str | None = None,
                  resume: bool = False, skip_empty: bool = True, folds: list[str] | None = None,
                  checkpoint: str = "final", level: int | None = None,
                  spacing: tuple[float, float, float] | None = None, force: bool = False,
                  max_stat_chunks: int = 64, seed: int = 0) -> LargePredictionResult:
    """Predict a large volume block by block into ``output`` (an OME-Zarr, see :mod:`.output`).

    Parameters
    ----------
    input_path : volume readable by :func:`nnunetv2_neurino.large.readers.open_volume`.
    run_dir : trainer folder ``TRAINER__PLANS__CONFIG`` or a ``fold_N`` folder.
    output : ``OUT.ome.zarr`` folder.
    block : block core size in voxels (rounded up to a multiple of the lattice step).
    device : ``cpu`` or ``cuda`` (one worker per GPU by default).
    use_mirroring : nnU-Net's test-time mirroring (``--disable-tta`` turns it off).
    threshold : foreground probability threshold of the mask, in (0, 1).
    save_probabilities : also write ``probabilities/0`` (uint8 p × 255).
    workers : LocalCluster workers (default: GPUs on CUDA, cores / 4 on CPU); torch threads per worker
        follow :mod:`.engine` (cores of the host // its workers).
    scheduler : ``tcp://HOST:PORT`` of a running dask scheduler, ``"synchronous"`` (in this process) or
        None (embedded LocalCluster).
    resume : continue an interrupted run with the same settings (finished blocks are skipped).
    skip_empty : the empty-block rule of the module docstring.
    folds, checkpoint : which weights (as ``neurino predict``).
    level : resolution level of a multiscale input.
    spacing : (z, y, x) override for inputs that record no voxel size.
    force : replace an existing output written by this command.
    max_stat_chunks, seed : the chunk sample of the normalisation statistics.

    Raises
    ------
    NeurinoError
        bad threshold/input/run/spacing, an existing output (without resume/force), or blocks that failed
        twice (their indices and causes; finished blocks stay for ``resume``).
    """
    from nnunetv2_neurino.inference.run_folder import resolve_run
    from nnunetv2_neurino.large.readers import check_spacing, open_volume

    t0 = time.time()
    if not 0.0 < threshold < 1.0:
        raise NeurinoError(f"--threshold must be in (0, 1), got {threshold}")
    run = resolve_run(run_dir, folds)
    volume = open_volume(input_path, level)
    vol_spacing = tuple(float(s) for s in spacing) if spacing is not None else volume.spacing
    plan = _plans_settings(run, vol_spacing)
    check_spacing(vol_spacing, plan["spacing"], levels=volume.levels, path=input_path, level=volume.level)
    lattice = make_lattice(volume.shape, plan["patch"], block)
    stats = sample_statistics(volume.array, plan["scheme"], plan["use_mask"], plan["intensity_properties"],
                              max_chunks=max_stat_chunks, seed=seed)
    skip_below = float(plan["skip_below"]) if skip_empty and plan["skip_below"] is not None else None
    out = Path(output)
    attrs = {"input": str(Path(input_path).resolve()), "level": volume.level, "spacing": list(vol_spacing),
             "model": {"trainer_dir": str(run.trainer_dir), "folds": list(run.folds),
                       "checkpoint": checkpoint},
             "settings": {"threshold": threshold, "use_mirroring": use_mirroring,
                          "save_probabilities": save_probabilities, "skip_below": skip_below,
                          "tile_step_size": 0.5, "ngff": "0.4"},
             "statistics": stats.to_attrs(), "lattice": lattice.to_attrs()}
    done = _prepare_output(out, attrs, lattice.shape, lattice.core, vol_spacing, save_probabilities, resume,
                           force)
    job = BlockJob(str(input_path), level, str(run.trainer_dir), tuple(run.folds), checkpoint, device,
                   use_mirroring, str(out.resolve()), lattice, stats, threshold, save_probabilities,
                   skip_below)
    pending = [b for b in lattice.blocks() if b not in done]
    engine = run_tasks(run_block, job, pending, scheduler, workers, device)
    failed, statuses = engine.failed, {r.index: r.status for r in engine.reports}
    if failed:
        listed = "; ".join(f"block {i}: {cause}" for i, cause in failed[:5])
        raise NeurinoError(f"{len(failed)} block(s) failed twice ({listed}); the {len(done) + len(statuses)} "
                           f"finished block(s) are kept in {out}: rerun with --resume")
    write_mask_pyramid(out, vol_spacing)
    mark_complete(out)
    seconds = time.time() - t0
    return LargePredictionResult(out, lattice, len(lattice.blocks()),
                                 sum(s == "done" for s in statuses.values()),
                                 sum(s == "skipped" for s in statuses.values()), len(done), seconds,
                                 float(np.prod(lattice.shape)) / max(seconds, 1e-9),
                                 max((r.peak_rss for r in engine.reports), default=0),
                                 tuple(r.torch_threads for r in engine.reports),
                                 sum(r.tiles for r in engine.reports))
