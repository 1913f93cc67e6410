"""The dask.distributed side of ``neurino predict-large``: one task per block, retries, worker settings.

Workers
-------
An embedded ``LocalCluster`` (``processes=True``, ``threads_per_worker=1``) with ``workers`` processes
(default: one per GPU on CUDA, ``cores // 4`` on CPU), or a running cluster given by its scheduler
address (e.g. one started by dask-jobqueue on SLURM). One dask thread per worker, because each task uses
torch's own intra-op thread pool: **every worker sets** ``torch.set_num_threads(max(1, C // W))``, where C
is the number of cores the worker process may use on its host (``os.sched_getaffinity``, else
``os.cpu_count()``) and W the number of dask workers on that host when the run starts (a worker that joins
later counts W = 1). On CUDA the same rule sizes the CPU threads of the worker; its GPU is
``cuda:(worker name mod GPUs)``, i.e. one worker per GPU with the default worker count.

Memory
------
Each task reports the peak resident set size of its worker process so far (``getrusage(RUSAGE_SELF)
.ru_maxrss``, the kernel's high-water mark: model, block buffers and zarr reads included); the run's
summary is the maximum over tasks. With ``scheduler="synchronous"`` this is the peak RSS of the calling
process (everything it did before included).
"""

from __future__ import annotations

import os
import resource
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["BlockReport", "usable_cores", "peak_rss_bytes", "torch_threads_rule", "run_tasks",
           "default_workers", "start_local_cluster"]


@dataclass(frozen=True)
class BlockReport:
    """What one block task returns: its index, "done" / "skipped", the worker's peak RSS (bytes), the
    torch intra-op threads it ran with, and how many lattice tiles it evaluated (0 when skipped)."""

    index: tuple[int, int, int]
    status: str
    peak_rss: int
    torch_threads: int
    tiles: int = 0


@dataclass
class EngineResult:
    """Reports of the finished blocks and (index, cause) of the blocks that failed twice."""

    reports: list[BlockReport] = field(default_factory=list)
    failed: list[tuple[tuple[int, int, int], str]] = field(default_factory=list)


def usable_cores() -> int:
    """Cores this process may run on (CPU affinity where the OS has it, else ``os.cpu_count()``)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far, in bytes (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def release_free_memory() -> None:
    """Hand the C heap's free pages back to the OS (glibc ``malloc_trim(0)``; a no-op elsewhere).

    Called after each block: workers keep glibc's adaptive mmap threshold (fast tensors, see
    :func:`start_local_cluster`), whose freed heap memory otherwise stays resident between blocks.
    """
    import ctypes
    import ctypes.util

    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (e.g. musl): nothing to trim
        pass


def torch_threads_rule(cores: int, workers_on_host: int) -> int:
    """torch intra-op threads of one worker: ``max(1, cores // workers_on_host)`` (module docstring)."""
    return max(1, int(cores) // max(1, int(workers_on_host)))


def default_workers(device: str) -> int:
    """One worker per GPU on CUDA; ``cores // 4`` (at least 1) on CPU, each with ~4 torch threads."""
    if device.startswith("cuda"):
        import torch

        return max(1, torch.cuda.device_count())
    return max(1, usable_cores() // 4)


def _host(address: str) -> str:
    return address.split("://")[-1].rsplit(":", 1)[0]


def workers_per_host(addresses) -> dict[str, int]:
    """{worker address: number of workers sharing its host} for the given worker addresses."""
    counts: dict[str, int] = {}
    for a in addresses:
        counts[_host(a)] = counts.get(_host(a), 0) + 1
    return {a: counts[_host(a)] for a in addresses}


def current_worker_share() -> int:
    """Workers on this worker's host at the start of the run (1 outside a dask worker / if unknown)."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return 1
    return int(getattr(worker, "_neurino_share", 1))


def _set_share(counts: dict[str, int], dask_worker=None) -> None:
    """Run on every worker (``client.run``): remember how many workers share its host."""
    dask_worker._neurino_share = counts.get(dask_worker.address, 1)


def start_local_cluster(workers: int):
    """An embedded ``LocalCluster`` of ``workers`` processes, one dask thread each, no dashboard.

    dask's nanny sets ``MALLOC_TRIM_THRESHOLD_=65536`` in its workers by default (to hand memory back to the
    OS). Setting it also turns off glibc's adaptive mmap threshold, so every block- or tile-sized tensor is
    mapped and unmapped again: in a worker the network ran about 2x slower on the CPU, most of it system
    time (docs/benchmarks.md, "Whole-brain volumes"). Our workers start without it. Start the workers of
    an existing cluster the same way (``distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_: null``).
    """
    import dask
    from distributed import LocalCluster

    with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
        return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)


def run_tasks(task: Callable[..., BlockReport], job, pending: list, scheduler: str | None,
              workers: int | None, device: str) -> EngineResult:
    """``task(job, index)`` for every pending block index, each retried once; progress bar over blocks.

    Parameters
    ----------
    task : the block function (module-level, picklable), returning a :class:`BlockReport`.
    job : its settings, sent once to every worker.
    pending : block indices to run.
    scheduler : ``"synchronous"`` (this process), a ``tcp://HOST:PORT`` address, or None (LocalCluster).
    workers : LocalCluster worker count (default :func:`default_workers`).
    device : ``cpu`` or ``cuda`` (for the default worker count).
    """
    from tqdm import tqdm

    result = EngineResult()
    bar = tqdm(total=len(pending), desc="predict-large", unit="block")
    if scheduler == "synchronous":
        for index in pending:
            for attempt in (1, 2):
                try:
                    result.reports.append(task(job, index))
                    break
                except Exception as e:  # noqa: BLE001 - reported with the block index after the retry
                    if attempt == 2:
                        result.failed.append((index, f"{type(e).__name__}: {e}"))
            bar.update(1)
        bar.close()
        return result
    from distributed import Client, as_completed

    cluster = None
    if scheduler:
        client = Client(scheduler)
    else:
        cluster = start_local_cluster(workers or default_workers(device))
        client = Client(cluster)
    try:
        client.run(_set_share, workers_per_host(list(client.scheduler_info()["workers"])))
        job_future = client.scatter(job, broadcast=True)
        futures = {client.submit(task, job_future, index, pure=False, retries=1): index for index in pending}
        for fut in as_completed(futures):
            try:
                result.reports.append(fut.result())
            except Exception as e:  # noqa: BLE001
                result.failed.append((futures[fut], f"{type(e).__name__}: {e}"))
            bar.update(1)
    finally:
        bar.close()
        client.close()
        if cluster is not None:
            cluster.close()
    return result
