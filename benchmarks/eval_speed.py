"""Evaluation speed: trace + score a 256³ prediction, ESA/DSA/PDS of two 5,000-node trees, HD95 vs a
dense reference of MONAI's convention.

Run: ``.venv/bin/python benchmarks/eval_speed.py`` (2 threads; prints a Markdown table).

Rows
----
* Rendering a 1,400-node neuron (radius 1.5) into 256³ (issue 4 item 2: "in seconds").
* In-memory steps on a 256³ prediction of a 3,000-node random neuron (radius 1.5 voxels; the prediction
  misses 5 % of the edges in runs of 8 and has 20 false-positive blobs): F1 + HD95, built-in tracing,
  ESA/DSA/PDS of the traced tree against the ground-truth SWC.
* ``score_case`` end to end, what ``neurino evaluate`` does per case (figure off): read the prediction,
  ground-truth NIfTI and the gold SWC, F1 + HD95, trace the prediction with and without
  keep-largest-component, ESA/DSA/PDS twice. Target ≤ 3 s (issue 4 item 8).
* ESA/DSA/PDS of two 5,000-node trees (a neuron and a jittered copy). Target ≤ 0.5 s.
* HD95: ours (sparse: surface voxels + k-d tree) against a straightforward dense implementation of the
  same convention (MONAI's ``compute_hausdorff_distance(percentile=95)`` algorithm: surface = mask XOR
  its 6-connected erosion, ``scipy.ndimage.distance_transform_edt`` of the other surface's complement
  over the whole volume, directed 95th percentiles, max). The values must agree; the ratio is the
  speed-up. MONAI itself is not a dependency; when it happens to be installed a MONAI row is added.

Times are the best of ``--repeats`` runs (wall clock). The machine's load average is printed with the
table: figures taken on a shared machine are upper bounds.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

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
    """(best wall-clock seconds over ``repeats`` calls, result of the last call)."""
    best, out = np.inf, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def hd95_dense_reference(pred: np.ndarray, gt: np.ndarray, spacing) -> float:
    """HD95 in MONAI's convention, the straightforward dense way (full-volume EDTs, scipy only)."""
    from scipy import ndimage

    cross = ndimage.generate_binary_structure(3, 1)

    def surface(m: np.ndarray) -> np.ndarray:
        return m & ~ndimage.binary_erosion(m, cross, border_value=0)

    s_pred, s_gt = surface(pred), surface(gt)
    d_pg = ndimage.distance_transform_edt(~s_gt, sampling=spacing)[s_pred]
    d_gp = ndimage.distance_transform_edt(~s_pred, sampling=spacing)[s_gt]
    return float(max(np.percentile(d_pg, 95), np.percentile(d_gp, 95)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256, help="edge of the cubic prediction (default 256)")
    ap.add_argument("--nodes", type=int, default=5000, help="nodes per tree for the distance row")
    ap.add_argument("--repeats", type=int, default=3, help="best of this many runs (default 3)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(2)
    from nnunetv2_neurino.data.readers import write_nifti
    from nnunetv2_neurino.data.render import render_swc
    from nnunetv2_neurino.evaluation.case import CaseFiles, score_case
    from nnunetv2_neurino.metrics.neuron_distance import (
        neuron_distance,
        neuron_distance_segments,
        segments_from_arrays,
    )
    from nnunetv2_neurino.metrics.segmentation import segmentation_metrics
    from nnunetv2_neurino.swc import SWCTree, write_swc
    from nnunetv2_neurino.tracing.registry import MIN_COMPONENT_SIZE
    from nnunetv2_neurino.tracing.trace import trace_mask

    rng = np.random.default_rng(0)
    rows = []  # (what, seconds, target seconds or None)
    n3 = f"{args.size}³"
    # 1) a 256³ prediction: GT neuron rendered with radius 1.5; the prediction misses 5 % of the edges
    #    (runs of 8) and has false-positive blobs
    xyz, par = random_neuron(3000, args.size, rng)
    gt_tree = SWCTree.from_parent_index(xyz, par, radius=1.5)
    shape = (args.size,) * 3
    gt = render_swc(gt_tree, shape)
    keep = np.repeat(rng.random(len(par) // 8 + 1) > 0.05, 8)[: len(par)]
    jittered = SWCTree.from_parent_index(xyz + rng.normal(size=xyz.shape) * 0.6, par, radius=1.8)
    pred = render_swc(jittered.take(keep), shape)
    for _ in range(20):
        c = rng.integers(5, args.size - 5, size=3)
        pred[c[0] - 2:c[0] + 2, c[1] - 2:c[1] + 2, c[2] - 2:c[2] + 2] = True
    spacing = (1.0, 1.0, 1.0)

    xr, pr = random_neuron(1400, args.size, np.random.default_rng(1))
    t_render, rendered = timed(lambda: render_swc(SWCTree.from_parent_index(xr, pr, radius=1.5), shape),
                               args.repeats)
    rows.append((f"render a 1,400-node neuron into {n3} ({int(rendered.sum())} voxels)", t_render, None))

    t_seg, seg = timed(lambda: segmentation_metrics(pred, gt, spacing), args.repeats)
    t_trace, traced = timed(lambda: trace_mask(pred, spacing=spacing, min_component_size=MIN_COMPONENT_SIZE),
                            args.repeats)
    t_nd, nd = timed(lambda: neuron_distance(traced, gt_tree), args.repeats)
    rows += [(f"F1 + HD95, {n3} ({int(gt.sum())} GT / {int(pred.sum())} predicted voxels)", t_seg, None),
             (f"built-in trace_mask, {n3} → {len(traced)} nodes", t_trace, None),
             ("ESA/DSA/PDS traced vs GT SWC", t_nd, None),
             (f"trace + score {n3}, in memory (sum of the 3 rows above)", t_seg + t_trace + t_nd, 3.0)]

    with tempfile.TemporaryDirectory(prefix="neurino-bench-") as tmp:
        tmp = Path(tmp)
        write_nifti(tmp / "pred.nii.gz", pred.astype(np.uint8))
        write_nifti(tmp / "gt.nii.gz", gt.astype(np.uint8))
        write_swc(gt_tree, tmp / "gt.swc")
        files = CaseFiles("bench", tmp / "pred.nii.gz", tmp / "gt.nii.gz", gt_swc=tmp / "gt.swc")
        t_case, row = timed(lambda: score_case(files, ["builtin"]), args.repeats)
    rows.append((f"score_case {n3} from NIfTI + SWC (read, F1/HD95, trace ± LCC, ESA/DSA/PDS ×2)",
                 t_case, 3.0))

    # 2) two 5,000-node trees: a neuron and a jittered copy
    xa, pa = random_neuron(args.nodes, args.size, rng)
    xb = xa + rng.normal(size=xa.shape) * 1.2
    sa, sb = segments_from_arrays(xa, pa), segments_from_arrays(xb, pa)
    t_two, r2 = timed(lambda: neuron_distance_segments(sa, sb), args.repeats)
    rows.append((f"ESA/DSA/PDS, two {args.nodes}-node trees ({r2['n12']} + {r2['n21']} samples)", t_two, 0.5))

    # 3) HD95: ours vs the dense reference of the same convention (and MONAI when installed), on an
    #    anisotropic spacing (distances mix axes of different voxel sizes)
    spacing = (2.0, 1.0, 0.7)
    t_ours, ours = timed(lambda: segmentation_metrics(pred, gt, spacing)["hd95"], args.repeats)
    t_ref, ref = timed(lambda: hd95_dense_reference(pred, gt, spacing), args.repeats)
    agree = abs(ours - ref) <= 1e-9 * max(1.0, abs(ref))
    rows += [(f"HD95 ours, spacing {spacing}, sparse surface + k-d tree (= {ours:.6f})", t_ours, None),
             (f"HD95 dense reference, same spacing, scipy distance_transform_edt (= {ref:.6f})", t_ref,
              None)]
    lines = [f"HD95 ours {ours:.6f} vs dense reference {ref:.6f}: {'EQUAL' if agree else 'DIFFERENT'}; "
             f"time ratio reference / ours = {t_ref / t_ours:.1f}"]
    try:
        import warnings

        from monai.metrics import compute_hausdorff_distance

        def monai_hd95() -> float:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return float(compute_hausdorff_distance(torch.from_numpy(pred[None, None]),
                                                        torch.from_numpy(gt[None, None]), percentile=95,
                                                        spacing=spacing)[0, 0])

        t_monai, hd_monai = timed(monai_hd95, args.repeats)
        rows.append((f"HD95 MONAI compute_hausdorff_distance (= {hd_monai:.6f})", t_monai, None))
        lines.append(f"MONAI {hd_monai:.6f}; time ratio MONAI / ours = {t_monai / t_ours:.1f}")
    except ImportError:
        lines.append("MONAI is not installed: MONAI itself was not run (the dense reference implements its "
                     "convention)")

    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"CPU: {os.cpu_count()} logical cores visible, OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}, "
          f"load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1 / 5 / 15 min)")
    print()
    print("| step | seconds | target |")
    print("|---|---:|---:|")
    for name, t, target in rows:
        verdict = "" if target is None else f"≤ {target:g} s {'✓' if t <= target else '✗ MISSED'}"
        print(f"| {name} | {t:.3f} | {verdict} |")
    print()
    print(f"F1 {100 * seg['f1']:.2f} %, HD95 {seg['hd95']:.3f}; traced vs GT: ESA {nd['ESA']:.3f} "
          f"DSA {nd['DSA']:.3f} PDS {nd['PDS']:.3f}; score_case +lcc PDS {row['builtin+lcc/PDS']:.3f}")
    for line in lines:
        print(line)


if __name__ == "__main__":
    main()
