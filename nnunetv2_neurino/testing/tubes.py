"""Tiny synthetic tube data sets in nnU-Net raw format (smoke tests and the end-to-end test fixture).

Random straight bright tubes in Gaussian noise; labels are the tubes (0 background, 1 tube). Not a realistic
neuron model (see :mod:`nnunetv2_neurino.data.synthetic` for that): just enough signal for a few training
iterations.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from nnunetv2_neurino.data.readers import write_nifti
from nnunetv2_neurino.errors import NeurinoError
from nnunetv2_neurino.nnunet_layout import dataset_folder_name


def segment_distance(shape: tuple[int, int, int], start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Euclidean distance of every voxel centre to the segment ``start``–``end``.

    Parameters
    ----------
    shape : (Z, Y, X) array shape.
    start, end : segment end points in voxel coordinates, order (z, y, x).

    Returns
    -------
    float32 array of shape ``shape``, distances in voxels.
    """
    grid = np.stack(np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij"), axis=-1)
    start = np.asarray(start, dtype=np.float32)
    direction = np.asarray(end, dtype=np.float32) - start
    length2 = float(direction @ direction)
    rel = grid - start
    t = np.zeros(shape, np.float32) if length2 == 0 else np.clip(rel @ direction / length2, 0.0, 1.0)
    closest = t[..., None] * direction
    return np.linalg.norm(rel - closest, axis=-1).astype(np.float32)


def make_tube_case(shape: tuple[int, int, int], rng: np.random.Generator, n_tubes: int = 3,
                   radius: float = 2.0, noise: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic case: ``n_tubes`` straight tubes crossing the volume.

    Each tube joins two random points on opposite faces of the volume (so it crosses it), with the given
    radius in voxels. Intensity 1 inside, 0 outside, smoothed by a linear ramp of one voxel, plus
    N(0, ``noise``²) noise.

    Returns
    -------
    image : float32 (Z, Y, X)
    label : uint8 (Z, Y, X), 1 inside a tube (distance ≤ radius), else 0
    """
    shape = tuple(int(s) for s in shape)
    dist = np.full(shape, np.inf, np.float32)
    for _ in range(n_tubes):
        axis = int(rng.integers(3))
        start = rng.uniform(0, np.array(shape) - 1)
        end = rng.uniform(0, np.array(shape) - 1)
        start[axis], end[axis] = 0.0, shape[axis] - 1.0
        dist = np.minimum(dist, segment_distance(shape, start, end))
    label = (dist <= radius).astype(np.uint8)
    image = np.clip(radius + 1.0 - dist, 0.0, 1.0) + rng.normal(0.0, noise, shape)
    return image.astype(np.float32), label


def write_tube_dataset(raw_root: str | Path, dataset_id: int, name: str = "NeurinoTubes", n_train: int = 4,
                       n_test: int = 0, shape: tuple[int, int, int] = (40, 40, 40), seed: int = 0,
                       spacing_zyx: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> Path:
    """Write an nnU-Net raw data set ``DatasetXXX_name`` of tube cases under ``raw_root``.

    Layout: ``imagesTr/tubes_NNN_0000.nii.gz``, ``labelsTr/tubes_NNN.nii.gz``, ``imagesTs/…`` (``n_test``
    cases, labels in ``labelsTs``), ``dataset.json`` (channel 0 named "zscore", which selects nnU-Net's
    z-score normalisation; labels background 0 / neurite 1).

    Returns
    -------
    The data set folder.
    """
    if not 1 <= dataset_id <= 999:
        raise NeurinoError(f"dataset_id must be in 1..999 (nnU-Net's 3-digit ids), got {dataset_id}")
    folder = Path(raw_root) / dataset_folder_name(dataset_id, name)
    if folder.exists():
        raise NeurinoError(f"{folder} already exists")
    rng = np.random.default_rng(seed)
    for split, count, offset in (("Tr", n_train, 0), ("Ts", n_test, n_train)):
        if count == 0:
            continue
        (folder / f"images{split}").mkdir(parents=True)
        (folder / f"labels{split}").mkdir(parents=True)
        for i in range(offset, offset + count):
            image, label = make_tube_case(shape, rng)
            write_nifti(folder / f"images{split}" / f"tubes_{i:03d}_0000.nii.gz", image, spacing_zyx)
            write_nifti(folder / f"labels{split}" / f"tubes_{i:03d}.nii.gz", label, spacing_zyx)
    dataset_json = {
        "channel_names": {"0": "zscore"},
        "labels": {"background": 0, "neurite": 1},
        "numTraining": n_train,
        "file_ending": ".nii.gz",
        "name": name,
    }
    (folder / "dataset.json").write_text(json.dumps(dataset_json, indent=2))
    return folder
