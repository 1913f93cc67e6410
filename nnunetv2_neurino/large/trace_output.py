"""Output folder of ``neurino trace-large``: one SWC per tree, a combined SWC and ``trees.csv``.

Layout::

    OUT_DIR/.neurino_trace_large   marker: --force replaces only folders that carry it
    OUT_DIR/all_trees.swc          every kept tree in one file
    OUT_DIR/trees/tree_0001.swc    one file per kept tree (ids as in trees.csv)
    OUT_DIR/trees.csv              tree_id, nodes, cable_length, bounding box (z, y, x voxels), root (x, y, z)

The folder is written under a hidden temporary name and renamed at the end (nothing half-written).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from nnunetv2_neurino.errors import NeurinoError
from nnunetv2_neurino.io_utils import atomic_directory, check_output_paths
from nnunetv2_neurino.io_utils import check_output_folder as check_replaceable_folder
from nnunetv2_neurino.swc import SWCTree, write_swc

__all__ = ["MARKER", "check_output_folder", "split_trees", "physical_cable_length", "write_trace_outputs"]

MARKER = ".neurino_trace_large"
CSV_COLUMNS = ("tree_id", "nodes", "cable_length", "z_min", "y_min", "x_min", "z_max", "y_max", "x_max",
               "root_x", "root_y", "root_z", "file")


def split_trees(forest: SWCTree) -> list[SWCTree]:
    """One SWCTree (ids 1..n) per root of ``forest``, in root order."""
    if forest.n == 0:
        return []
    labels = forest.component_labels()
    return [forest.take(labels == k).renumbered() for k in range(len(forest.roots))]


def physical_cable_length(tree: SWCTree, spacing: Sequence[float]) -> float:
    """Sum of parent-child segment lengths with coordinates scaled by ``spacing`` (z, y, x)."""
    child, parent = tree.edges()
    scale = np.asarray(spacing, dtype=np.float64)[::-1]            # SWC columns are x, y, z
    return float(np.linalg.norm((tree.xyz[child] - tree.xyz[parent]) * scale, axis=1).sum())


def check_output_folder(out: Path, inputs: Sequence[Path], force: bool) -> None:
    """The output rules of every command (:mod:`nnunetv2_neurino.io_utils`: no overlap with an input; ., ~
    and / never replaced; an existing folder only with ``force`` and neurino's marker), plus: the folder
    being replaced must be a trace-large output (:data:`MARKER`). NeurinoError naming the paths."""
    check_output_paths([out], inputs)
    check_replaceable_folder(out, force)
    if out.exists() and not (out / MARKER).is_file():
        raise NeurinoError(f"{out} exists and is not a trace-large output folder (no {MARKER}): "
                           "not replaced, even with --force")


def write_trace_outputs(forest: SWCTree, out_dir: str | os.PathLike, spacing: Sequence[float],
                        min_cable_length: float = 0.0, inputs: Sequence[str | os.PathLike] = (),
                        force: bool = False, header: str = "") -> list[dict]:
    """Write the trace-large output folder; trees with cable length < ``min_cable_length`` are left out.

    Parameters
    ----------
    forest : traced forest, (x, y, z) voxel coordinates.
    out_dir : output folder (created; an existing one is replaced only with ``force`` and the marker).
    spacing : (z, y, x) voxel size; cable lengths are in its unit.
    min_cable_length : minimum physical cable length of a written tree.
    inputs : input paths; an output equal to, inside or containing one is refused.
    force : replace an earlier trace-large output folder.
    header : comment lines for the SWC files.

    Returns
    -------
    list of the trees.csv rows (dicts keyed by ``CSV_COLUMNS``).
    """
    out = Path(out_dir)
    check_output_folder(out, [Path(p) for p in inputs], force)
    kept = [t for t in split_trees(forest) if physical_cable_length(t, spacing) >= min_cable_length]
    rows = []
    with atomic_directory(out, force=force) as tmp:
        (tmp / MARKER).write_text("written by neurino trace-large\n")
        (tmp / "trees").mkdir()
        for i, tree in enumerate(kept, start=1):
            name = f"trees/tree_{i:04d}.swc"
            write_swc(tree, tmp / name, header=f"{header}\ntree {i}".strip())
            zyx = tree.to_zyx()
            lo, hi = zyx.min(axis=0), zyx.max(axis=0)
            root = tree.xyz[tree.roots[0]]
            rows.append(dict(zip(CSV_COLUMNS, (i, tree.n, round(physical_cable_length(tree, spacing), 6),
                                               *lo.astype(int), *hi.astype(int), *root, name))))
        write_swc(SWCTree.concatenate(kept), tmp / "all_trees.swc", header=header or None)
        with open(tmp / "trees.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
    return rows
