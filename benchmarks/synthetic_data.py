"""Speed of the built-in synthetic neuron data set (issue 5 item 3 via ``neurino make-dataset``).

Run: ``.venv/bin/python benchmarks/synthetic_data.py`` (prints a Markdown table).

Rows
----
* ``generate_case`` at 64³ (target: well under 1 s per case), 128³ and an anisotropic 32×128×128 case,
  with the share spent in the image model (the rest is morphology + label rendering).
* ``write_neuron_dataset`` of 10 cases at 64³ (target: a few seconds), NIfTI compression included.

Times are the best of ``--repeats`` runs (wall clock) over several seeds; the machine's load average is
printed with the table: figures taken on a shared machine are upper bounds.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "2")


def _best(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from nnunetv2_neurino.data.synthetic import generate_case, write_neuron_dataset

    rows = []
    for shape, spacing in (((64, 64, 64), (1.0, 1.0, 1.0)), ((128, 128, 128), (1.0, 1.0, 1.0)),
                           ((32, 128, 128), (2.0, 0.5, 0.5))):
        times = [_best(lambda s=seed, sh=shape, sp=spacing: generate_case(s, 0, sh, sp), args.repeats)
                 for seed in range(4)]
        rows.append((f"generate_case {shape[0]}×{shape[1]}×{shape[2]}, spacing {spacing}",
                     f"{sum(times) / len(times):.3f} s (max {max(times):.3f})"))
    with tempfile.TemporaryDirectory() as tmp:
        def write(k=[0]):  # noqa: B006 - a fresh id per run
            k[0] += 1
            write_neuron_dataset(tmp, k[0], n_train=8, n_test=2, progress=False)
        rows.append(("write_neuron_dataset, 10 cases 64³ (NIfTI + SWC + log)",
                     f"{_best(write, args.repeats):.2f} s"))
    print(f"load average: {os.getloadavg()[0]:.2f} (cores: {os.cpu_count()})\n")
    print("| step | time |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
