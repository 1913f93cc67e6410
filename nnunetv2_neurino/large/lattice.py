"""One global tile lattice for block-wise sliding-window prediction.

nnU-Net predicts an image with tiles of the run's patch size ``P`` at a step of ``tile_step_size · P``
(0.5 by default), adjusting the step so the last tile ends exactly at the image border, and blends the
tile logits with a Gaussian importance map (``compute_gaussian``, σ = P/8). The step adjustment depends on
the image size, so tiling each block of a large volume the nnU-Net way would give every block its own
tiling and seams at block faces.

Here instead every block uses one **global lattice**: tile origins are ``k · S`` on each axis
(``S = floor(P · tile_step_size)``, ``k = 0 … K`` with ``K`` the smallest count such that the last tile
reaches the volume's end; the part of a tile beyond the volume is zero in normalised intensity, as nnU-Net
pads images smaller than a patch). Block cores are multiples of ``S`` and start at multiples of ``S``.

Design choice — each block evaluates **all lattice tiles that touch its core** and keeps only the core.
Every tile that contains a core voxel touches the core, so the voxel receives exactly the contributions
(same tiles, same Gaussian weights, same order of summation) it would receive in a whole-volume
computation: block-wise output equals the whole-volume lattice output, whichever block computes a voxel.
A block reads its core plus a halo of ``P − S`` voxels before it (tiles that start up to ``P − S`` before
the core) and ``P − S`` after it. The alternative (each tile evaluated by one block only, overlap margins
sent to the neighbour) needs either two tasks writing one chunk or a second pass that exchanges partial
sums; both break "one task writes whole chunks" and make resuming harder. It also weakens empty-block
skipping: an empty block would still have to evaluate the tiles it owns that reach into a non-empty
neighbour (a third or more of its tiles) for the neighbour's result to stay exact. So it is not used.

**Overhead**: along one axis a core of ``C`` voxels (``C`` a multiple of ``S``) is touched by
``C/S + ceil(P/S) − 1`` tiles instead of the ``C/S`` it owns, so tiles are evaluated
``Π_axes (1 + (ceil(P/S) − 1)·S/C)`` times on average; at step 0.5 that is ``(1 + S/C)³``:
P = 128, C = 256 → 1.95×; C = 512 → 1.42×; C = 1024 → 1.20×. :func:`evaluation_overhead` gives the exact
figure for a volume (fewer at the volume's borders). Larger blocks cost memory (the block's logits are held
as float32), smaller ones cost re-evaluated tiles.

All functions are pure; axes are (z, y, x), sizes in voxels.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from nnunetv2_neurino.errors import NeurinoError

Triple = tuple[int, int, int]


def lattice_step(patch_size: Triple, tile_step_size: float = 0.5) -> Triple:
    """Tile step S per axis: ``floor(P · tile_step_size)``, at least 1 (nnU-Net's target step)."""
    if not 0.0 < tile_step_size <= 1.0:
        raise NeurinoError(f"tile_step_size must be in (0, 1], got {tile_step_size}")
    return tuple(max(1, int(math.floor(p * tile_step_size))) for p in patch_size)


def tile_origins_1d(n: int, p: int, s: int) -> np.ndarray:
    """Global tile origins ``0, s, 2s, …`` along one axis of ``n`` voxels; the last tile ends ≥ n."""
    k_max = 0 if n <= p else int(math.ceil((n - p) / s))
    return np.arange(k_max + 1, dtype=np.int64) * s


def round_block_core(block: int | Triple, step: Triple) -> Triple:
    """Block core size rounded up to a multiple of the step on each axis (at least one step)."""
    b = (block,) * 3 if isinstance(block, (int, np.integer)) else tuple(block)
    if len(b) != 3 or any(int(v) < 1 for v in b):
        raise NeurinoError(f"--block must be a positive size (or three), got {block}")
    return tuple(int(math.ceil(int(v) / s)) * s for v, s in zip(b, step))


@dataclass(frozen=True)
class Lattice:
    """The global lattice of one volume.

    Attributes
    ----------
    shape : (z, y, x) volume size.
    patch : (z, y, x) tile (patch) size P.
    step : (z, y, x) tile step S.
    core : (z, y, x) block core size (multiple of S); also the output chunk size.
    """

    shape: Triple
    patch: Triple
    step: Triple
    core: Triple

    @property
    def origins(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Tile origins per axis (global lattice)."""
        return tuple(tile_origins_1d(n, p, s) for n, p, s in zip(self.shape, self.patch, self.step))

    @property
    def block_grid(self) -> Triple:
        """Number of blocks per axis."""
        return tuple(int(math.ceil(n / c)) for n, c in zip(self.shape, self.core))

    def blocks(self) -> list[Triple]:
        """Every block index (i, j, k), in C order."""
        return list(itertools.product(*(range(g) for g in self.block_grid)))

    def core_box(self, index: Triple) -> tuple[Triple, Triple]:
        """(start, stop) of block ``index``'s core, clipped to the volume."""
        start = tuple(i * c for i, c in zip(index, self.core))
        stop = tuple(min(a + c, n) for a, c, n in zip(start, self.core, self.shape))
        return start, stop

    def to_attrs(self) -> dict:
        """JSON-serialisable description (stored in the output's attributes)."""
        return {"shape": list(self.shape), "patch": list(self.patch), "step": list(self.step),
                "block_core": list(self.core), "block_grid": list(self.block_grid),
                "tiles_total": int(np.prod([len(o) for o in self.origins])),
                "tile_evaluations": evaluation_count(self)}


def make_lattice(shape: Triple, patch: Triple, block: int | Triple, tile_step_size: float = 0.5) -> Lattice:
    """The lattice for a volume of ``shape`` with patch ``patch`` and block cores of about ``block``."""
    step = lattice_step(patch, tile_step_size)
    return Lattice(tuple(int(v) for v in shape), tuple(int(v) for v in patch), step,
                   round_block_core(block, step))


def tiles_touching_1d(origins: np.ndarray, p: int, start: int, stop: int) -> np.ndarray:
    """Origins of the tiles [t, t + p) that intersect [start, stop)."""
    return origins[(origins < stop) & (origins + p > start)]


def _touching(lattice: Lattice, start: Triple, stop: Triple) -> list[np.ndarray]:
    return [tiles_touching_1d(o, p, a, b) for o, p, a, b in zip(lattice.origins, lattice.patch, start, stop)]


def block_tiles(lattice: Lattice, start: Triple, stop: Triple) -> list[Triple]:
    """Origins (z, y, x) of every lattice tile touching the box [start, stop), in global C order.

    The fixed global order makes each voxel's Gaussian-weighted sum add the same terms in the same order
    whichever block computes it.
    """
    per_axis = _touching(lattice, start, stop)
    return [tuple(int(v) for v in t) for t in itertools.product(*per_axis)]


def read_box(lattice: Lattice, start: Triple, stop: Triple) -> tuple[Triple, Triple]:
    """(start, stop) of the region the tiles touching [start, stop) cover (may extend past the volume)."""
    per_axis = _touching(lattice, start, stop)
    return (tuple(int(t[0]) for t in per_axis),
            tuple(int(t[-1]) + p for t, p in zip(per_axis, lattice.patch)))


def evaluation_count(lattice: Lattice) -> int:
    """Tile evaluations of a block-wise run: the sum over blocks of the tiles touching each core."""
    per_axis = []
    for o, p, c, n in zip(lattice.origins, lattice.patch, lattice.core, lattice.shape):
        per_axis.append(sum(len(tiles_touching_1d(o, p, a, min(a + c, n))) for a in range(0, n, c)))
    return int(np.prod(per_axis))


def evaluation_overhead(lattice: Lattice) -> float:
    """Tile evaluations of a block-wise run divided by those of the whole volume as one block."""
    return evaluation_count(lattice) / float(np.prod([len(o) for o in lattice.origins]))
