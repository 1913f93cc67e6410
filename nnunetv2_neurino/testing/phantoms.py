"""Synthetic Y-shaped tube phantoms (used by the loss and trainer tests and ``benchmarks/train_step.py``).

``y_tube(shape, radius, ...)`` draws three straight tubes meeting at a junction: a stem along z from
z = 8 up to the junction at (36, 32, 32) and two arms diverging from it to (52, 20, 26) and (52, 44, 38)
(coordinates for a 64³ volume, scaled with ``shape``). With radius 2.5 these are the TASL test
phantoms: "cut at the junction" = the stem removed (``segments=[1, 2]``), "over-thick" = the tube
dilated by one voxel. ``y_tube_segments`` returns the
segment end points so that tests can cut a branch or remove the junction.
Arrays are indexed ``[z, y, x]``; coordinates are in voxels.
"""

from __future__ import annotations

import numpy as np


def y_tube_segments(shape: tuple[int, int, int] = (64, 64, 64)) -> list[tuple[np.ndarray, np.ndarray]]:
    """End points (z, y, x) of the stem and the two arms of the Y, scaled to ``shape``.

    Returns
    -------
    list of 3 (start, end) pairs of float arrays of shape (3,): stem (bottom → junction), arm 1, arm 2.
    """
    s = np.asarray(shape, dtype=float)
    junction = s * np.array([36.0, 32.0, 32.0]) / 64.0
    bottom = s * np.array([8.0, 32.0, 32.0]) / 64.0
    arm1 = s * np.array([52.0, 20.0, 26.0]) / 64.0
    arm2 = s * np.array([52.0, 44.0, 38.0]) / 64.0
    return [(bottom, junction), (junction, arm1), (junction, arm2)]


def segment_distance(shape: tuple[int, ...], a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distance of every voxel centre to the segment a–b.

    Parameters
    ----------
    shape : (Z, Y, X)
    a, b : float arrays of shape (3,), (z, y, x) voxel coordinates.

    Returns
    -------
    ndarray of float64, shape ``shape``.
    """
    grid = np.stack(np.meshgrid(*[np.arange(n, dtype=float) for n in shape], indexing="ij"), axis=-1)
    ab = b - a
    t = np.clip(((grid - a) @ ab) / max(float(ab @ ab), 1e-12), 0.0, 1.0)
    closest = a + t[..., None] * ab
    return np.linalg.norm(grid - closest, axis=-1)


def y_tube(
    shape: tuple[int, int, int] = (64, 64, 64),
    radius: float = 2.5,
    segments: list[int] | None = None,
) -> np.ndarray:
    """Binary Y-shaped tube.

    Parameters
    ----------
    shape : (Z, Y, X)
    radius : float
        Tube radius in voxels (a voxel is inside when its centre is within ``radius`` of a segment).
    segments : list of int, optional
        Which of the 3 segments (0 stem, 1 and 2 arms) to draw; all by default.

    Returns
    -------
    ndarray of bool, shape ``shape``.
    """
    segs = y_tube_segments(shape)
    chosen = range(3) if segments is None else segments
    out = np.zeros(shape, dtype=bool)
    for i in chosen:
        a, b = segs[i]
        out |= segment_distance(shape, a, b) <= radius
    return out
