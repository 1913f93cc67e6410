"""Maximum-intensity-projection previews of a case (image, label, SWC) as PNG, and of a whole nnU-Net raw
data set (``neurino make-dataset --preview``; works on any raw data set with the SWCs beside it).

A preview has four panels: the image MIP along z (x to the right, y down), the image MIP along y (x to
the right, z down, drawn with the physical aspect ratio so anisotropic spacing looks right), the label
MIP in red over the image MIP, and the SWC's edges (projected along z) over the image MIP.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from nnunetv2_neurino.errors import NeurinoError
from nnunetv2_neurino.io_utils import atomic_file
from nnunetv2_neurino.swc import SWCTree

__all__ = ["normalised_mip", "write_case_preview", "preview_dataset"]


def normalised_mip(volume: np.ndarray, axis: int = 0) -> np.ndarray:
    """Maximum projection along ``axis``, scaled to [0, 1] between its 0.5th and 99.5th percentiles."""
    v = np.asarray(volume, dtype=np.float32).max(axis=axis)
    lo, hi = np.percentile(v, (0.5, 99.5)) if v.size else (0.0, 1.0)
    return np.clip((v - lo) / (hi - lo), 0, 1).astype(np.float32) if hi > lo else np.zeros_like(v)


def write_case_preview(path: str | os.PathLike, image: np.ndarray, label: np.ndarray | None = None,
                       tree: SWCTree | None = None, spacing=(1.0, 1.0, 1.0), title: str = "",
                       force: bool = True) -> Path:
    """Write a 4-panel MIP preview PNG (see module doc).

    Parameters
    ----------
    path : output PNG.
    image : (Z, Y, X) intensities.
    label : (Z, Y, X) mask (nonzero = foreground), or None.
    tree : image-space SWC (x, y, z voxel columns), or None.
    spacing : (z, y, x) voxel size, for the aspect ratio of the side view.
    title : figure title (e.g. the case name).
    force : replace an existing file.

    Returns
    -------
    The PNG path.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.collections import LineCollection
    from matplotlib.figure import Figure

    image = np.asarray(image)
    if image.ndim != 3:
        raise NeurinoError(f"preview {path}: image must be 3D (z, y, x), got shape {image.shape}")
    if label is not None and np.shape(label) != image.shape:
        raise NeurinoError(f"preview {path}: label shape {np.shape(label)} differs from image {image.shape}")
    spacing = np.asarray(spacing, float)
    top, side = normalised_mip(image, 0), normalised_mip(image, 1)
    fig = Figure(figsize=(13.0, 3.8), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 4)
    for ax in axes:
        ax.set_axis_off()
    axes[0].imshow(top, cmap="gray", interpolation="nearest")
    axes[0].set_title("image MIP (z)", fontsize=9)
    axes[1].imshow(side, cmap="gray", interpolation="nearest", aspect=spacing[0] / spacing[2])
    axes[1].set_title("image MIP (y): x →, z ↓", fontsize=9)
    rgb = np.repeat(top[..., None], 3, axis=-1) * 0.8
    if label is not None:
        lab = np.asarray(label).max(axis=0) != 0
        rgb[lab] = 0.45 * rgb[lab] + 0.55 * np.array([1.0, 0.15, 0.1])
    axes[2].imshow(rgb, interpolation="nearest")
    axes[2].set_title("label (red)" if label is not None else "no label", fontsize=9)
    axes[3].imshow(top, cmap="gray", interpolation="nearest")
    if tree is not None and tree.n:
        child, parent = tree.edges()
        xy = np.asarray(tree.xyz)[:, :2]
        axes[3].add_collection(LineCollection(np.stack([xy[child], xy[parent]], axis=1), colors="lime",
                                              linewidths=0.8))
        roots = tree.roots
        axes[3].plot(xy[roots, 0], xy[roots, 1], "o", color="magenta", markersize=3)
        axes[3].set_xlim(-0.5, image.shape[2] - 0.5)
        axes[3].set_ylim(image.shape[1] - 0.5, -0.5)
    axes[3].set_title(f"SWC ({tree.n} nodes)" if tree is not None else "no SWC", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    with atomic_file(path, force=force) as tmp:
        fig.savefig(tmp, format="png")
    return path


def preview_dataset(folder: str | os.PathLike, out: str | os.PathLike | None = None, force: bool = True,
                    progress: bool = True) -> list[Path]:
    """One preview PNG per case of an nnU-Net raw data set (training and test cases).

    Reads ``images{Tr,Ts}/CASE_0000.nii.gz``, ``labels{Tr,Ts}/CASE.nii.gz`` and ``swc{Tr,Ts}/CASE.swc``
    when present, and writes ``out/CASE.png`` (default ``folder/preview/``).

    Returns
    -------
    The PNG paths, sorted by case.
    """
    import SimpleITK as sitk
    from tqdm import tqdm

    from nnunetv2_neurino.swc import read_swc

    folder = Path(folder)
    images = sorted(folder.glob("imagesT[rs]/*_0000.nii.gz"))
    if not images:
        raise NeurinoError(f"{folder}: no images (imagesTr/*_0000.nii.gz) to preview")
    out = folder / "preview" if out is None else Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for img_path in tqdm(images, desc="previews", unit="case", disable=not progress):
        split = img_path.parent.name[len("images"):]
        case = img_path.name[: -len("_0000.nii.gz")]
        itk = sitk.ReadImage(str(img_path))
        image, spacing = sitk.GetArrayFromImage(itk), tuple(reversed(itk.GetSpacing()))
        lab_path = folder / f"labels{split}" / f"{case}.nii.gz"
        label = sitk.GetArrayFromImage(sitk.ReadImage(str(lab_path))) if lab_path.is_file() else None
        swc_path = folder / f"swc{split}" / f"{case}.swc"
        tree = read_swc(swc_path) if swc_path.is_file() else None
        title = f"{folder.name} / {case} ({'test' if split == 'Ts' else 'train'})"
        written.append(write_case_preview(out / f"{case}.png", image, label, tree, spacing, title=title,
                                          force=force))
    return written
