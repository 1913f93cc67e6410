"""Subprocesses and progress lines of ``neurino demo``: run one CLI with a log and a hard limit, time stages.

Split from :mod:`nnunetv2_neurino.demo.pipeline`, which strings the stages together.
"""

from __future__ import annotations

import re
import resource
import shutil
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from nnunetv2_neurino.errors import NeurinoError

if TYPE_CHECKING:
    from nnunetv2_neurino.demo.pipeline import DemoResult


def cli_path(name: str) -> str:
    """The console script ``name`` of this Python environment (else from PATH)."""
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


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and its finished (waited-for) descendants."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


class Stages:
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
        t0, c0 = time.monotonic(), cpu_seconds()
        out = fn()
        dt, cpu = time.monotonic() - t0, cpu_seconds() - c0
        self.result.stage_seconds[key] = round(dt, 2)
        self.result.stage_cpu_seconds[key] = round(cpu, 2)
        el = time.monotonic() - self.start
        self.echo(f"      done in {dt:.0f} s, {cpu:.0f} CPU s (elapsed {int(el // 60)}:{int(el % 60):02d})")
        return out


def epoch_bar(total: int, desc: str, enabled: bool) -> tuple:
    """A tqdm bar of ``total`` epochs and the ``on_line`` callback advancing it from nnU-Net's log lines."""
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit="epoch", disable=not enabled, leave=False, file=sys.stderr)

    def on_line(line: str) -> None:
        if EPOCH_DONE_RE.search(line):
            bar.update(1)
        elif "Safety stop" in line:
            bar.write("      " + line.split(": ", 1)[-1].strip())

    return bar, on_line
