"""Evaluation speed: trace + score a 256³ prediction, ESA/DSA/PDS of two 5,000-node trees, HD95 vs MONAI.

Run: ``.venv/bin/python benchmarks/eval_speed.py`` (2 threads). MONAI is an optional benchmark-only
dependency (``pip install --no-deps monai``); without it the MONAI row is skipped.
Targets (2 CPU cores): trace + score 256³ ≤ 3 s; neuron distance of two 5,000-node trees ≤ 0.5 s.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "2")

import numpy as np  # noqa: E402


def random_neuron(n_nodes: int, size: int, rng: np.random.Generator, step: float = 2.0):
    """A branching tree (xyz, parent_index) that wanders inside a size³ box, ~``step`` voxels per edge."""
    xyz = np.zeros((n_nodes, 3))
    par = np.full(n_nodes, -1)
    direction = np.zeros((n_nodes, 3))
    xyz[0] = size / 2
    direction[0] = rng.normal(size=3)
    tips = [0]
    for i in range(1, n_nodes):
        p = tips[-1] if rng.random() > 0.03 else int(rng.integers(0, i))  # mostly extend, sometimes branch
        d = direction[p] / np.linalg.norm(direction[p]) + rng.normal(size=3) * 0.35
        d /= np.linalg.norm(d)
        pos = xyz[p] + d * step
        if np.any(pos < 3) or np.any(pos > size - 4):  # turn back inside the box
            d = (size / 2 - xyz[p]) / np.linalg.norm(size / 2 - xyz[p])
            pos = xyz[p] + d * step
        xyz[i], par[i], direction[i] = pos, p, d
        tips.append(i)
    return xyz, par


def timed(fn, repeats: int):
    best, out = np.inf, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--nodes", type=int, default=5000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(2)
    from nnunetv2_neurino.data.render import render_swc
    from nnunetv2_neurino.metrics.neuron_distance import (
        neuron_distance,
        neuron_distance_segments,
        segments_from_arrays,
    )
    from nnunetv2_neurino.metrics.segmentation import segmentation_metrics
    from nnunetv2_neurino.swc import SWCTree
    from nnunetv2_neurino.tracing.trace import trace_mask

    rng = np.random.default_rng(0)
    rows = []
    # 1) a 256³ prediction: GT neuron rendered with radius 1.5; prediction breaks 5 % of the edges
    #    (chunks of 8) and adds thin false-positive blobs
    xyz, par = random_neuron(3000, args.size, rng)
    gt_tree = SWCTree.from_parent_index(xyz, par, radius=1.5)
    shape = (args.size,) * 3
    gt = render_swc(gt_tree, shape)
    keep = np.repeat(rng.random(len(par) // 8 + 1) > 0.05, 8)[: len(par)]  # drop 5 % in runs of 8 nodes
    pred = render_swc(gt_tree.take(keep), shape)
    for _ in range(20):
        c = rng.integers(5, args.size - 5, size=3)
        pred[c[0] - 2:c[0] + 2, c[1] - 2:c[1] + 2, c[2] - 2:c[2] + 2] = True
    spacing = (1.0, 1.0, 1.0)

    t_seg, seg = timed(lambda: segmentation_metrics(pred, gt, spacing), args.repeats)
    t_trace, traced = timed(lambda: trace_mask(pred, spacing=spacing, min_component_size=10), args.repeats)
    t_nd, nd = timed(lambda: neuron_distance(traced, gt_tree), args.repeats)
    rows += [(f"F1 + HD95, {args.size}³ ({int(gt.sum())} GT voxels)", t_seg, None),
             (f"built-in trace_mask, {args.size}³ → {len(traced)} nodes", t_trace, None),
             ("ESA/DSA/PDS traced vs GT SWC", t_nd, None),
             (f"trace + score {args.size}³ (sum)", t_seg + t_trace + t_nd, 3.0)]

    # 2) two 5,000-node trees: a neuron and a jittered copy
    xa, pa = random_neuron(args.nodes, args.size, rng)
    xb = xa + rng.normal(size=xa.shape) * 1.2
    sa, sb = segments_from_arrays(xa, pa), segments_from_arrays(xb, pa)
    t_two, r2 = timed(lambda: neuron_distance_segments(sa, sb), args.repeats)
    rows.append((f"ESA/DSA/PDS, two {args.nodes}-node trees ({r2['n12']}+{r2['n21']} samples)", t_two, 0.5))

    # 3) HD95 against MONAI's implementation (optional dependency)
    monai_note = ""
    try:
        import warnings

        from monai.metrics import compute_hausdorff_distance

        def monai_hd95():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return float(compute_hausdorff_distance(torch.from_numpy(pred[None, None]),
                                                        torch.from_numpy(gt[None, None]), percentile=95,
                                                        spacing=spacing)[0, 0])

        t_monai, hd_monai = timed(monai_hd95, args.repeats)
        t_ours, ours = timed(lambda: segmentation_metrics(pred, gt, spacing)["hd95"], args.repeats)
        rows += [(f"HD95 ours ({ours:.4f})", t_ours, None), (f"HD95 MONAI ({hd_monai:.4f})", t_monai, None)]
        same = "equal" if abs(ours - hd_monai) < 1e-6 else "DIFFERENT"
        monai_note = f"HD95 ours {ours:.6f} vs MONAI {hd_monai:.6f}: {same}"
    except ImportError:
        monai_note = "MONAI not installed: HD95 comparison skipped (pip install --no-deps monai)"

    print(f"{'step':62} {'seconds':>8} {'target':>7}")
    for name, t, target in rows:
        print(f"{name:62} {t:8.3f} {('≤ %.1f' % target) if target else '':>7}")
    print(f"F1 {100 * seg['f1']:.2f} %, HD95 {seg['hd95']:.3f}; traced vs GT: ESA {nd['ESA']:.3f} "
          f"DSA {nd['DSA']:.3f} PDS {nd['PDS']:.3f}")
    print(monai_note)


if __name__ == "__main__":
    main()
