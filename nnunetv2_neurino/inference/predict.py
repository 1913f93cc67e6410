"""``neurino predict``: one microscopy stack → nnU-Net segmentation (+ probabilities) → traced SWC.

The stack is read with :func:`nnunetv2_neurino.data.readers.read_image` (TIFF, v3draw, v3dpbd, zarr, NIfTI)
as ``array[z, y, x]`` with spacing ``(z, y, x)`` and handed to nnU-Net's own
``nnUNetPredictor.predict_single_npy_array`` (preprocessing with the run's plans, sliding window, test-time
mirroring, fold ensembling, resampling back to the input grid). That array + spacing is exactly what
nnU-Net's ``SimpleITKIO`` returns for the same stack written as a NIfTI file, so no temporary file is
needed; models trained on data read by another reader that keeps (z, y, x) order (``Tiff3DIO``) behave
the same.

The written mask is ``label > 0`` where the foreground probability ``1 - p(background)`` exceeds
``threshold`` (label = the most probable foreground class); at 0.5 with two classes this equals nnU-Net's
argmax. The SWC is :func:`nnunetv2_neurino.tracing.trace_mask` of that mask with the input's spacing, in
0-based voxel coordinates of the input stack (x = last array axis).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnunetv2_neurino.errors import NeurinoError
from nnunetv2_neurino.inference.model import load_predictor
from nnunetv2_neurino.inference.run_folder import resolve_run
from nnunetv2_neurino.io_utils import atomic_file
from nnunetv2_neurino.tracing.registry import MIN_COMPONENT_SIZE

_ZYX_READERS = ("SimpleITKIO", "SimpleITKIOWithReorient", "Tiff3DIO")


@dataclass
class PredictionResult:
    """Files written by :func:`predict_file` and a short summary.

    Attributes
    ----------
    mask_path : ``OUT/NAME_mask.nii.gz`` (uint8 labels, input shape and spacing).
    probabilities_path : ``OUT/NAME_probabilities.npz`` (``probabilities`` float32 (C, z, y, x),
        ``spacing`` (z, y, x)) or None.
    swc_path : ``OUT/NAME.swc`` or None (``trace=False``).
    shape : (z, y, x) of the input and the mask.
    n_foreground : foreground voxels in the mask.
    n_nodes : nodes of the traced tree (0 for an empty mask; None when not traced).
    """

    mask_path: Path
    probabilities_path: Path | None
    swc_path: Path | None
    shape: tuple[int, int, int]
    n_foreground: int
    n_nodes: int | None


def mask_from_probabilities(probabilities: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Label map from class probabilities.

    Parameters
    ----------
    probabilities : (C, z, y, x), C ≥ 2, channel 0 = background, summing to 1 over C.
    threshold : a voxel is foreground when ``1 - p_background > threshold``.

    Returns
    -------
    uint8 (z, y, x): 0 background, else 1 + argmax over the foreground channels.
    """
    probabilities = np.asarray(probabilities)
    if probabilities.ndim != 4 or probabilities.shape[0] < 2:
        raise NeurinoError(f"expected probabilities of shape (C>=2, z, y, x), got {probabilities.shape}")
    fg = (1.0 - probabilities[0]) > threshold
    labels = 1 + np.argmax(probabilities[1:], axis=0)
    return np.where(fg, labels, 0).astype(np.uint8)


def predict_array(predictor, image: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    """Class probabilities of one stack from an initialised nnU-Net predictor.

    Parameters
    ----------
    predictor : ``nnUNetPredictor`` (see :func:`nnunetv2_neurino.inference.model.load_predictor`).
    image : (z, y, x) single-channel or (c, z, y, x) stack, any numeric dtype.
    spacing : (z, y, x) voxel size, same units as the run's training spacing.

    Returns
    -------
    float32 (C, z, y, x) probabilities on the input grid (C = number of classes incl. background).
    """
    data = np.asarray(image, dtype=np.float32)
    if data.ndim == 3:
        data = data[None]
    _, probs = predictor.predict_single_npy_array(data, {"spacing": [float(s) for s in spacing]}, None, None,
                                                  save_or_return_probabilities=True)
    return np.asarray(probs, dtype=np.float32)


def predict_file(input_path: str | Path, run_dir: str | Path, out_dir: str | Path,
                 folds: list[str] | None = None, checkpoint: str = "final", save_probabilities: bool = False,
                 threshold: float = 0.5,
                 device: str = "cpu", trace: bool = True, spacing: tuple[float, float, float] | None = None,
                 min_component_size: int = MIN_COMPONENT_SIZE, force: bool = False,
                 use_mirroring: bool = True, root_rule: str = "radius") -> PredictionResult:
    """Segment one stack with a trained nnU-Net run and trace it.

    Parameters
    ----------
    input_path : stack readable by ``read_image``.
    run_dir : trainer folder ``TRAINER__PLANS__CONFIG`` or one of its ``fold_N`` folders.
    out_dir : output folder (created); files are named after the input (``NAME_mask.nii.gz`` …).
    folds : folds to ensemble (default: the fold folder given, or every fold with the checkpoint).
    checkpoint : ``final``, ``best`` or ``latest``.
    save_probabilities : also write ``NAME_probabilities.npz``.
    threshold : foreground-probability threshold for the mask, in (0, 1).
    device : ``cpu`` or ``cuda``.
    trace : write ``NAME.swc`` traced from the mask.
    spacing : (z, y, x) override for files whose metadata lacks or misstates it.
    min_component_size : voxels; smaller components are dropped before tracing.
    force : replace existing outputs.
    use_mirroring : nnU-Net's test-time mirroring over the axes the trainer allowed (its default); False
        is up to 8x faster (``nnUNetv2_predict --disable_tta``).
    root_rule : where each traced tree is rooted, see :mod:`nnunetv2_neurino.tracing.roots` (``radius``,
        default; ``boundary`` for fibres entering the volume).

    Raises
    ------
    NeurinoError
        for unreadable input, a folder that is not an nnU-Net run, missing checkpoints, a channel-count
        mismatch, bad threshold/spacing, or existing outputs without ``force``. Nothing is written then:
        every output is computed before the first file is written (each one atomically).
    """
    from nnunetv2_neurino.data.readers import image_stem, read_image, write_nifti
    from nnunetv2_neurino.data.volumes import check_spacing

    if not 0.0 < threshold < 1.0:
        raise NeurinoError(f"threshold must be in (0, 1), got {threshold}")
    from nnunetv2_neurino.tracing.roots import check_root_rule

    check_root_rule(root_rule)
    input_path, out_dir = Path(input_path), Path(out_dir)
    name = image_stem(input_path)
    mask_path = out_dir / f"{name}_mask.nii.gz"
    prob_path = out_dir / f"{name}_probabilities.npz" if save_probabilities else None
    swc_path = out_dir / f"{name}.swc" if trace else None
    targets = [p for p in (mask_path, prob_path, swc_path) if p is not None]
    if not force:
        existing = [str(p) for p in targets if p.exists()]
        if existing:
            raise NeurinoError(f"output exists: {', '.join(existing)} (pass --force to overwrite)")
    if out_dir.exists() and not out_dir.is_dir():
        raise NeurinoError(f"-o {out_dir} exists and is not a folder")

    run = resolve_run(run_dir, folds)
    image, file_spacing = read_image(input_path, channel=None)  # before the (slow) model load
    spacing = check_spacing(spacing if spacing is not None else file_spacing)
    if folds is None and len(run.fold_dirs) > 1:  # a trainer folder: use folds that have this checkpoint
        from nnunetv2_neurino.inference.run_folder import CHECKPOINT_FILES

        have = [f for f, d in zip(run.folds, run.fold_dirs) if (d / CHECKPOINT_FILES[checkpoint]).is_file()]
        if have:
            run = resolve_run(run.trainer_dir, have)
    predictor = load_predictor(run, checkpoint, device, use_mirroring=use_mirroring)
    reader = predictor.plans_manager.plans.get("image_reader_writer", "SimpleITKIO")
    if reader not in _ZYX_READERS:
        raise NeurinoError(f"{run.trainer_dir / 'plans.json'}: the run was trained on images read "
                           f"with {reader}; neurino predict feeds (z, y, x) arrays as "
                           f"{', '.join(_ZYX_READERS)} do — use nnUNetv2_predict for this run")
    n_in = len(predictor.dataset_json.get("channel_names", predictor.dataset_json.get("modality", {"0": ""})))
    n_got = 1 if image.ndim == 3 else image.shape[0]
    if n_in == 1 and n_got > 1:
        image = image[0]  # the reader's default: the first channel of a multi-channel stack
    elif n_got != n_in:
        raise NeurinoError(f"{input_path} has {n_got} channel(s) but the model expects {n_in}")
    if predictor.label_manager.has_regions:
        raise NeurinoError(f"{run.trainer_dir}: region-based runs are not supported by neurino predict")

    probs = predict_array(predictor, image, spacing)
    mask = mask_from_probabilities(probs, threshold)
    tree = None
    if swc_path is not None:
        from nnunetv2_neurino.tracing import trace_mask

        tree = trace_mask(mask > 0, spacing, min_component_size=min_component_size, root_rule=root_rule)

    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_file(mask_path, force=True) as tmp:
        write_nifti(tmp, mask, spacing)
    if prob_path is not None:
        with atomic_file(prob_path, force=True) as tmp:
            with open(tmp, "wb") as f:  # a file object: numpy would append .npz to the temporary name
                np.savez_compressed(f, probabilities=probs, spacing=np.asarray(spacing))
    if tree is not None:
        from nnunetv2_neurino.swc import write_swc

        write_swc(tree, swc_path, force=True,
                  header=f"traced by neurino predict from {input_path.name} with {run.trainer_dir.name} "
                         f"folds {','.join(run.folds)} ({checkpoint}), threshold {threshold}")
    return PredictionResult(mask_path, prob_path, swc_path, tuple(int(s) for s in mask.shape),
                            int(np.count_nonzero(mask)), None if tree is None else len(tree))
