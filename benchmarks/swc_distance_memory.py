"""Peak memory of ESA / DSA / PDS on trees with one very long segment (issue 11 §3).

Each measurement runs in a fresh Python process: the peak resident set (``ru_maxrss``) grown during
``neuron_distance_segments`` on tree A = one segment (0,0,0)-(L,0,0) against tree B = the same line
shifted by 1 voxel in y and cut in two (ESA = 1 exactly, so the numbers can be checked). ``--baseline``
runs the same trees through another copy of the module, e.g. the unchunked version before the change::

    git show 7914586:nnunetv2_neurino/metrics/neuron_distance.py > /tmp/nd_old.py
    nice -n 19 python benchmarks/swc_distance_memory.py --lengths 1e6 1e7 --baseline /tmp/nd_old.py \
        --baseline-max 1e6

Prints one row per (length, implementation): peak MB, seconds, ESA, and the baseline / current ratio.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

_CHILD = r"""
import importlib.util, json, resource, sys, time
import numpy as np
path, length = sys.argv[1], float(sys.argv[2])
if path == "-":
    from nnunetv2_neurino.metrics import neuron_distance as nd
else:
    spec = importlib.util.spec_from_file_location("nd_baseline", path)
    nd = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(nd)
a = nd.segments_from_arrays(np.array([[0, 0, 0], [length, 0, 0]]), np.array([-1, 0]))
b = nd.segments_from_arrays(np.array([[0, 1, 0], [length / 2, 1, 0], [length, 1, 0]]), np.array([-1, 0, 1]))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
r = nd.neuron_distance_segments(a, b)
t = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"peak_mb": (peak - before) / 1024, "seconds": t, "ESA": r["ESA"], "n12": r["n12"]}))
"""


def measure(module: str, length: float) -> dict:
    """Run one measurement in a fresh process; ``module`` is a file path or ``-`` (the installed one)."""
    out = subprocess.run([sys.executable, "-c", _CHILD, module, repr(length)], capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lengths", type=float, nargs="+", default=[1e6, 1e7])
    ap.add_argument("--baseline", help="path of another neuron_distance.py to compare with")
    ap.add_argument("--baseline-max", type=float, default=1e6,
                    help="longest segment given to the baseline (the unchunked code needs ~1.1 GB per 1e6)")
    args = ap.parse_args(argv)
    print(f"{'length':>10} {'implementation':>15} {'peak MB':>9} {'seconds':>8} {'ESA':>8} {'ratio':>7}")
    for length in args.lengths:
        cur = measure("-", length)
        print(f"{length:10.0e} {'chunked':>15} {cur['peak_mb']:9.1f} {cur['seconds']:8.1f} {cur['ESA']:8.4f}")
        if args.baseline and length <= args.baseline_max:
            old = measure(args.baseline, length)
            ratio = old["peak_mb"] / max(cur["peak_mb"], 1e-9)
            print(f"{length:10.0e} {'baseline':>15} {old['peak_mb']:9.1f} {old['seconds']:8.1f} "
                  f"{old['ESA']:8.4f} {ratio:6.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
