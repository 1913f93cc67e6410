"""Per-case figure in the spirit of the paper's figs 9–12: maximum-intensity projections (along z) of
the image, the ground truth and the prediction (yellow = agree, red = false positive, green = false
negative), then one panel per tracer with the traced SWC (magenta) drawn over the ground-truth tree (green).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np

from nnunetv2_neurino.data.preview import normalised_mip


def _segments_xy(tree) -> np.ndarray:
    """(E, 2, 2) line segments (x, y) of a tree's parent-child edges, projected along z."""
    child, parent = tree.edges()
    xy = np.asarray(tree.xyz)[:, :2]
    return np.stack([xy[child], xy[parent]], axis=1)


def case_figure(path: str | os.PathLike, case: str, image: np.ndarray | None, gt: np.ndarray,
                pred: np.ndarray, trees: Mapping[str, tuple], row: Mapping) -> None:
    """Write the case figure as PNG.

    Parameters
    ----------
    path : output PNG file.
    case : case name (title).
    image : raw image (z, y, x) or None (then the ground-truth projection is the background).
    gt, pred : bool masks (z, y, x).
    trees : tracer name → (traced prediction SWCTree, ground-truth SWCTree), voxel coordinates (x, y, z).
    row : the case's metric row (F1, HD95 and ``<tracer>/ESA`` etc. go into the titles).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.collections import LineCollection
    from matplotlib.figure import Figure

    gt_mip, pred_mip = gt.max(axis=0), pred.max(axis=0)
    background = normalised_mip(image) if image is not None else gt_mip.astype(np.float32) * 0.5
    overlay = np.stack([pred_mip, gt_mip, np.zeros_like(gt_mip)], axis=-1).astype(np.float32)
    ncols = max(3, len(trees))
    fig = Figure(figsize=(3.2 * ncols, 6.6), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, ncols, squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    axes[0, 0].imshow(background, cmap="gray", interpolation="nearest")
    axes[0, 0].set_title("image (MIP)" if image is not None else "no image: GT (MIP)", fontsize=9)
    axes[0, 1].imshow(gt_mip, cmap="gray", interpolation="nearest")
    axes[0, 1].set_title("ground truth (MIP)", fontsize=9)
    axes[0, 2].imshow(overlay, interpolation="nearest")
    f1, h = 100 * row.get("f1", np.nan), row.get("hd95", np.nan)
    axes[0, 2].set_title(f"prediction  F1 {f1:.1f}%  HD95 {h:.2f}", fontsize=9)
    for ax, (name, (pred_tree, gt_tree)) in zip(axes[1], trees.items()):
        ax.imshow(background, cmap="gray", interpolation="nearest", alpha=0.6)
        ax.add_collection(LineCollection(_segments_xy(gt_tree), colors="#22cc44", linewidths=1.2))
        ax.add_collection(LineCollection(_segments_xy(pred_tree), colors="#ff00ff", linewidths=0.8))
        ax.set_xlim(-0.5, gt.shape[2] - 0.5)
        ax.set_ylim(gt.shape[1] - 0.5, -0.5)
        esa, dsa, pds = (row.get(f"{name}/{k}", np.nan) for k in ("ESA", "DSA", "PDS"))
        ax.set_title(f"{name}: ESA {esa:.2f} DSA {dsa:.2f} PDS {pds:.2f}", fontsize=9)
    fig.suptitle(f"{case}   (yellow agree, red false positive, green false negative / GT tree; "
                 "magenta traced)", fontsize=9)
    fig.savefig(os.fspath(path), format="png")
