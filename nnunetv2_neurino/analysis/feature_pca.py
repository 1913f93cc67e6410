"""PCA maps of encoder features on one slice (the paper's fig. 8) for one or several trained runs.

For each model: the stack is preprocessed exactly as nnU-Net does for that run (the plans' preprocessor:
transpose, crop to non-zero, normalise, resample to the target spacing); patches of the plans' patch size
around the chosen slice tile it like nnU-Net's sliding window (one tile thick across the slice, zero-padded
where a tile leaves the volume); ``network.encoder(patch)`` gives the per-stage features, and the chosen
stage is trilinearly interpolated at the position of every voxel of the slice in the *original* image
grid, from the tile whose centre is nearest — the same as upsampling the stage to the patch and reading
the slice, but landing on the input's voxels, so models with different plans (spacing, patch size) give
maps on one common grid.

One 3-component PCA (SVD of the centred feature matrix) is fitted on the slice voxels (foreground and
background) of all models together, so the colours of different models are comparable. This needs equal
channel counts; models whose stage has a different width (e.g. NeurINO 96 vs nnU-Net 32 channels) get
one basis per channel count instead, and the result says so. Each component is scaled to [0, 1] by its
1st–99th percentile over all models sharing the basis and shown as R, G, B.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nnunetv2_neurino.errors import NeurinoError
from nnunetv2_neurino.inference.model import load_predictor
from nnunetv2_neurino.inference.run_folder import resolve_run

AXES = {"z": 0, "y": 1, "x": 2, "0": 0, "1": 1, "2": 2}


@dataclass
class SliceSpec:
    """A slice of a (z, y, x) volume: ``axis`` 0/1/2 and ``index`` along it."""

    axis: int
    index: int


@dataclass
class FeaturePCAResult:
    """Output of :func:`feature_pca`.

    Attributes
    ----------
    slice : the slice used (original image grid).
    image_slice : (H, W) float input slice; H, W = the two remaining axes in (z, y, x) order.
    gt_slice : (H, W) label slice or None.
    maps : one (H, W, 3) float array in [0, 1] per model (RGB = PCA components 1–3).
    valid : one (H, W) bool array per model: voxels inside that model's patch (others are black).
    explained_variance_ratio : one (3,) array per model: variance fraction of components 1–3 of the
        basis the model was projected on (identical for models sharing a basis), non-increasing.
    shared_basis : True when all models were projected on one joint basis.
    labels : model labels for the figure.
    """

    slice: SliceSpec
    image_slice: np.ndarray
    gt_slice: np.ndarray | None
    maps: list[np.ndarray]
    valid: list[np.ndarray]
    explained_variance_ratio: list[np.ndarray]
    shared_basis: bool
    labels: list[str]


def parse_slice(text: str | None) -> SliceSpec | None:
    """``"z:12"`` / ``"0:12"`` → SliceSpec(0, 12); None → None. NeurinoError on bad syntax."""
    if text is None:
        return None
    m = re.fullmatch(r"\s*([zyxZYX012])\s*:\s*(-?\d+)\s*", text)
    if not m:
        raise NeurinoError(f"slice {text!r}: expected AXIS:INDEX with AXIS one of z, y, x (or 0, 1, 2)")
    return SliceSpec(AXES[m[1].lower()], int(m[2]))


def default_slice(shape: tuple[int, ...], gt: np.ndarray | None) -> SliceSpec:
    """The z slice with the most foreground in ``gt`` (first on ties), else the middle z slice."""
    if gt is not None and np.any(gt > 0):
        return SliceSpec(0, int(np.argmax(np.count_nonzero(gt > 0, axis=(1, 2)))))
    return SliceSpec(0, shape[0] // 2)


def slice_points(shape: tuple[int, int, int], spec: SliceSpec) -> np.ndarray:
    """Voxel coordinates (H*W, 3) in (z, y, x) of every voxel of the slice, row-major over (H, W)."""
    if not 0 <= spec.axis <= 2:
        raise NeurinoError(f"slice axis must be 0, 1 or 2, got {spec.axis}")
    if not 0 <= spec.index < shape[spec.axis]:
        raise NeurinoError(f"slice {'zyx'[spec.axis]}:{spec.index} is outside the volume of shape {shape} "
                           f"(valid 0..{shape[spec.axis] - 1})")
    grids = [np.arange(n) for n in shape]
    grids[spec.axis] = np.array([spec.index])
    mesh = np.meshgrid(*grids, indexing="ij")
    return np.stack([m.reshape(-1) for m in mesh], axis=1).astype(np.float64)


def take_slice(volume: np.ndarray, spec: SliceSpec) -> np.ndarray:
    """(H, W) slice of a (z, y, x) volume."""
    return np.take(volume, spec.index, axis=spec.axis)


def to_preprocessed(points: np.ndarray, properties: dict, transpose_forward: list[int],
                    new_shape: tuple[int, ...]) -> np.ndarray:
    """Map original voxel coordinates (N, 3) (z, y, x) to continuous coordinates of the preprocessed array.

    Follows ``DefaultPreprocessor.run_case_npy``: transpose, crop to ``bbox_used_for_cropping``, resample
    from ``shape_after_cropping_and_before_resampling`` to ``new_shape`` (voxel centres scale about the
    array corners, as in scikit-image/torch ``align_corners=False`` resizing).
    """
    p = points[:, list(transpose_forward)]
    lo = np.array([b[0] for b in properties["bbox_used_for_cropping"]], dtype=np.float64)
    crop = np.array(properties["shape_after_cropping_and_before_resampling"], dtype=np.float64)
    scale = np.asarray(new_shape, dtype=np.float64) / crop
    return (p - lo + 0.5) * scale - 0.5


def extract_patch(data: np.ndarray, start: np.ndarray, patch_size: tuple[int, ...]) -> np.ndarray:
    """(C, *patch_size) window of ``data`` (C, z, y, x) from ``start`` (may be negative); zero-padded."""
    out = np.zeros((data.shape[0], *patch_size), dtype=np.float32)
    src, dst = [slice(None)], [slice(None)]
    for s, p, n in zip(start, patch_size, data.shape[1:]):
        a, b = max(int(s), 0), min(int(s) + p, n)
        if b <= a:
            return out
        src.append(slice(a, b))
        dst.append(slice(a - int(s), b - int(s)))
    out[tuple(dst)] = data[tuple(src)]
    return out


def sample_features(features: torch.Tensor, coords: np.ndarray, patch_size: tuple[int, ...]) -> np.ndarray:
    """Trilinear samples of a stage output at patch voxel coordinates.

    Parameters
    ----------
    features : (1, C, d, h, w) stage output covering the whole patch (stride = patch / (d, h, w)).
    coords : (N, 3) continuous patch-voxel coordinates in the patch's axis order.
    patch_size : the patch's voxel shape (3,).

    Returns
    -------
    (N, C) float32 — equal to upsampling ``features`` to ``patch_size`` with
    ``F.interpolate(mode="trilinear", align_corners=False)`` and reading the voxels (exactly so at integer
    coordinates).
    """
    ps = np.asarray(patch_size, dtype=np.float64)
    g = (2.0 * coords + 1.0) / ps - 1.0                     # normalised, align_corners=False convention
    # grid_sample wants the coordinates as (x, y, z) = reversed axis order
    grid = torch.from_numpy(g[:, ::-1].copy()).to(features.dtype).view(1, 1, 1, -1, 3)
    out = torch.nn.functional.grid_sample(features, grid.to(features.device), mode="bilinear",
                                          padding_mode="border", align_corners=False)
    return out.view(features.shape[1], -1).T.float().cpu().numpy()


def encoder_stages(network: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Per-stage encoder outputs, highest resolution first (NeurINO, dynamic-network-architectures)."""
    enc = getattr(network, "encoder", None)
    if enc is None:
        raise NeurinoError(f"network {type(network).__name__} has no .encoder; feature-pca needs one")
    if hasattr(enc, "return_skips"):
        enc.return_skips = True
    out = enc(x)
    if isinstance(out, torch.Tensor) or not all(isinstance(t, torch.Tensor) for t in out):
        raise NeurinoError(f"{type(network).__name__}.encoder does not return a list of stage outputs")
    return list(out)


def axis_tile_starts(size: int, patch: int, centre: float | None = None, step_size: float = 0.5) -> list[int]:
    """Tile starts along one axis of the preprocessed array.

    Parameters
    ----------
    size : array extent; patch : tile extent (voxels).
    centre : for the axis normal to the slice: one tile centred on this coordinate (kept inside the array
        where it fits). None: nnU-Net's sliding-window steps (``compute_steps_for_sliding_window``).
    step_size : sliding-window step as a fraction of ``patch``.

    Returns
    -------
    Starts (may be negative: a tile larger than the array is centred on it and zero-padded).
    """
    from nnunetv2.inference.sliding_window_prediction import compute_steps_for_sliding_window

    if patch >= size:
        return [-((patch - size) // 2)]
    if centre is not None:
        return [int(np.clip(np.round(centre - (patch - 1) / 2.0), 0, size - patch))]
    return [int(s) for s in compute_steps_for_sliding_window((size,), (patch,), step_size)[0]]


def model_slice_features(predictor, image: np.ndarray, spacing: tuple[float, float, float], spec: SliceSpec,
                         stage: int, step_size: float = 0.5, progress: bool = False
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Stage-``stage`` features of one model at every voxel of the slice.

    The preprocessed volume is tiled with patches of the plans' patch size: one tile thick across the
    slice (centred on it), nnU-Net's sliding-window steps within it (``step_size`` of the patch). Each slice
    voxel takes its features from the tile whose centre is nearest (so it lies in the inner part of that
    tile, away from the zero padding of the tile border).

    Parameters
    ----------
    predictor : initialised ``nnUNetPredictor`` (network, plans, configuration, dataset.json).
    image : (z, y, x) or (c, z, y, x) stack; spacing (z, y, x).
    spec : slice in the image grid. stage : encoder stage index.
    progress : show a tqdm bar over the tiles.

    Returns
    -------
    features (H*W, C) float32 and valid (H*W,) bool (voxel inside its tile; False only for slice voxels
    that nnU-Net's cropping removed).
    """
    from tqdm import tqdm

    cm, pm = predictor.configuration_manager, predictor.plans_manager
    data = np.asarray(image, dtype=np.float32)
    data = data[None] if data.ndim == 3 else data
    pts = slice_points(data.shape[1:], spec)
    patch_size = tuple(int(p) for p in cm.patch_size)
    if len(patch_size) != 3:
        raise NeurinoError(f"feature-pca needs a 3D configuration; {predictor.trainer_name} uses patch "
                           f"size {patch_size}")
    pre = cm.preprocessor_class(verbose=False)
    pdata, _, props = pre.run_case_npy(data, None, {"spacing": [float(s) for s in spacing]}, pm, cm,
                                       predictor.dataset_json)
    q = to_preprocessed(pts, props, pm.transpose_forward, pdata.shape[1:])
    normal = list(pm.transpose_forward).index(spec.axis)
    starts_per_axis = [axis_tile_starts(n, p, float(q[0, a]) if a == normal else None, step_size)
                       for a, (n, p) in enumerate(zip(pdata.shape[1:], patch_size))]
    starts = np.array(np.meshgrid(*starts_per_axis, indexing="ij")).reshape(3, -1).T    # (T, 3)
    centres = starts + (np.asarray(patch_size) - 1) / 2.0
    dist = np.max(np.abs(q[:, None, :] - centres[None]) / np.asarray(patch_size), axis=2)   # (N, T)
    owner = np.argmin(dist, axis=1)

    network = predictor.network
    network.eval()
    device = next(network.parameters()).device
    feats: np.ndarray | None = None
    valid = np.zeros(len(q), dtype=bool)
    used = np.unique(owner)
    with torch.no_grad():
        for t in tqdm(used, desc=f"{predictor.trainer_name} tiles", unit="tile", disable=not progress,
                      leave=False):
            sel = owner == t
            patch = extract_patch(pdata, starts[t], patch_size)
            stages = encoder_stages(network, torch.from_numpy(patch[None]).to(device))
            if not 0 <= stage < len(stages):
                raise NeurinoError(f"stage {stage}: the encoder of {predictor.trainer_name} has stages "
                                   f"0..{len(stages) - 1}")
            u = q[sel] - starts[t]
            f = sample_features(stages[stage], u, patch_size)
            if feats is None:
                feats = np.zeros((len(q), f.shape[1]), dtype=np.float32)
            feats[sel] = f
            valid[sel] = np.all((u > -0.5) & (u < np.asarray(patch_size) - 0.5), axis=1)
    return feats, valid


def pca_basis(x: np.ndarray, n_components: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PCA of the rows of ``x`` (N, C) by SVD of the centred matrix.

    Returns
    -------
    mean (C,), components (n, C) (rows, sign fixed so each row's largest-magnitude entry is positive;
    zero rows when C or N is too small), explained variance ratio (n,) = σ_k² / Σσ², non-increasing.
    """
    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(axis=0)
    _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    total = float(np.sum(s ** 2))
    k = min(n_components, vt.shape[0])
    comps = np.zeros((n_components, x.shape[1]))
    ratio = np.zeros(n_components)
    comps[:k] = vt[:k]
    if total > 0:
        ratio[:k] = s[:k] ** 2 / total
    flip = np.sign(comps[np.arange(n_components), np.argmax(np.abs(comps), axis=1)])
    comps *= np.where(flip == 0, 1.0, flip)[:, None]
    return mean, comps, ratio


def robust_rgb(proj: np.ndarray, lo_pct: float = 1.0, hi_pct: float = 99.0) -> tuple[np.ndarray, np.ndarray]:
    """Per-column percentile range (lo, hi) of ``proj`` (N, 3), for min-max scaling to [0, 1]."""
    lo = np.percentile(proj, lo_pct, axis=0)
    hi = np.percentile(proj, hi_pct, axis=0)
    return lo, np.where(hi > lo, hi, lo + 1.0)


def joint_pca_maps(features: list[np.ndarray], valid: list[np.ndarray], shape2d: tuple[int, int]
                   ) -> tuple[list[np.ndarray], list[np.ndarray], bool]:
    """Project each model's slice features on a basis shared by all models with the same channel count.

    Parameters
    ----------
    features : per model (H*W, C_m). valid : per model (H*W,) bool. shape2d : (H, W).

    Returns
    -------
    maps : per model (H, W, 3) in [0, 1] (invalid voxels 0); ratios : per model (3,);
    shared : True when one basis served every model.
    """
    groups: dict[int, list[int]] = {}
    for i, f in enumerate(features):
        groups.setdefault(f.shape[1], []).append(i)
    maps: list[np.ndarray] = [np.zeros((*shape2d, 3))] * len(features)
    ratios: list[np.ndarray] = [np.zeros(3)] * len(features)
    for members in groups.values():
        rows = [features[i][valid[i]] for i in members]
        if sum(len(r) for r in rows) < 2:
            raise NeurinoError("the slice lies outside the models' patches: no voxel to fit the PCA on")
        mean, comps, ratio = pca_basis(np.concatenate(rows, axis=0))
        proj = [(features[i] - mean) @ comps.T for i in members]
        lo, hi = robust_rgb(np.concatenate([p[valid[i]] for p, i in zip(proj, members)], axis=0))
        for p, i in zip(proj, members):
            rgb = np.clip((p - lo) / (hi - lo), 0.0, 1.0)
            rgb[~valid[i]] = 0.0
            maps[i] = rgb.reshape(*shape2d, 3)
            ratios[i] = ratio
    return maps, ratios, len(groups) == 1


def feature_pca(models: list[str | Path], image_path: str | Path, gt_path: str | Path | None = None,
                slice_spec: SliceSpec | None = None, stage: int = 0, checkpoint: str = "final",
                labels: list[str] | None = None, device: str = "cpu", progress: bool = False
                ) -> FeaturePCAResult:
    """Joint PCA maps of encoder stage ``stage`` of each model on one slice of ``image_path``.

    Parameters
    ----------
    models : fold folders ``…/TRAINER__PLANS__CONFIG/fold_N`` (a trainer folder with one fold also works).
    image_path : stack readable by ``read_image``; gt_path : optional label stack of the same shape.
    slice_spec : slice (default :func:`default_slice`). stage : encoder stage (0 = highest resolution).
    checkpoint : ``final``/``best``/``latest``. labels : one per model (default ``TRAINER fold N``).
    device : ``cpu`` or ``cuda``. progress : tqdm bars over the encoder tiles.

    Raises
    ------
    NeurinoError
        for a folder that is not an nnU-Net run (or holds several folds), a checkpoint written by another
        trainer than its folder names, a slice outside the volume, a stage the encoder lacks, or a GT
        whose shape differs from the image.
    """
    from nnunetv2_neurino.data.readers import read_image

    if labels is not None and len(labels) != len(models):
        raise NeurinoError(f"names gives {len(labels)} name(s) for {len(models)} model(s)")
    runs = []
    for m in models:
        run = resolve_run(m)
        if len(run.fold_dirs) != 1:
            raise NeurinoError(f"{m} holds {len(run.fold_dirs)} folds; pass one fold folder (…/fold_N)")
        runs.append(run)
    image, spacing = read_image(image_path, channel=None)
    shape = image.shape[-3:]
    gt = None
    if gt_path is not None:
        gt, _ = read_image(gt_path)
        if gt.shape != shape:
            raise NeurinoError(f"{gt_path} has shape {gt.shape}, the image {image_path} has {shape}")
    spec = slice_spec or default_slice(shape, gt)
    slice_points(shape, spec)  # validates the slice before any model is loaded
    pts_shape = [n for i, n in enumerate(shape) if i != spec.axis]
    predictors = [load_predictor(r, checkpoint, device, use_mirroring=False) for r in runs]
    n_in = {len(p.dataset_json.get("channel_names", {"0": ""})) for p in predictors}
    n_got = 1 if image.ndim == 3 else image.shape[0]
    if n_in == {1} and n_got > 1:
        image = image[0]
    elif n_in != {n_got}:
        raise NeurinoError(f"{image_path} has {n_got} channel(s); the models expect {sorted(n_in)}")
    feats, valid = [], []
    for p in predictors:
        f, v = model_slice_features(p, image, spacing, spec, stage, progress=progress)
        feats.append(f)
        valid.append(v)
    maps, ratios, shared = joint_pca_maps(feats, valid, tuple(pts_shape))
    img2d = take_slice(image if image.ndim == 3 else image[0], spec).astype(np.float32)
    labels = labels or [f"{r.trainer_name} fold {r.folds[0]}" for r in runs]
    return FeaturePCAResult(spec, img2d, None if gt is None else take_slice(gt, spec), maps,
                            [v.reshape(pts_shape) for v in valid], ratios, shared, list(labels))


def plot_feature_pca(result: FeaturePCAResult, path: str | Path, stage: int | None = None) -> None:
    """Figure: input slice, [GT slice], one RGB PCA map per model; explained variance in each title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("input", result.image_slice, "gray")]
    if result.gt_slice is not None:
        panels.append(("ground truth", result.gt_slice > 0, "gray"))
    n = len(panels) + len(result.maps)
    h, w = result.image_slice.shape
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.4 * h / max(w, 1) + 0.8), squeeze=False)
    axes = axes[0]
    lo, hi = np.percentile(result.image_slice, [1, 99.5])
    for ax, (title, img, cmap) in zip(axes, panels):
        kw = {"vmin": lo, "vmax": hi} if title == "input" else {}
        ax.imshow(img, cmap=cmap, interpolation="nearest", **kw)
        ax.set_title(title, fontsize=9)
    for ax, label, rgb, ratio in zip(axes[len(panels):], result.labels, result.maps,
                                     result.explained_variance_ratio):
        ax.imshow(rgb, interpolation="nearest")
        ax.set_title(f"{label}\nPC1-3 var {ratio[0]:.2f}/{ratio[1]:.2f}/{ratio[2]:.2f}", fontsize=8)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    where = f"{'zyx'[result.slice.axis]} = {result.slice.index}"
    basis = "one shared PCA basis" if result.shared_basis else "separate PCA bases (channel counts differ)"
    stage_txt = f"encoder stage {stage}, " if stage is not None else ""
    fig.suptitle(f"{stage_txt}slice {where}; {basis}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
