"""Global intensity normalisation for block-wise prediction.

nnU-Net normalises each image with the scheme its plans name per channel
(``configurations[cfg].normalization_schemes``):

- ``ZScoreNormalization`` (nnU-Net's default for non-CT data): ``(x − mean) / max(std, 1e-8)`` with mean and
  std **of that image** (of its non-zero region when ``use_mask_for_norm`` is true). Per-block statistics
  would make every block differ, so for a large volume the statistics are computed **once** from a seeded
  random sample of whole chunks of the input (every chunk when there are at most ``max_chunks``), in float64,
  stored in the output's attributes and used by every block. With ``use_mask_for_norm`` only non-zero
  voxels enter the statistics, and zero voxels stay zero as in nnU-Net.
- ``CTNormalization``: clip to the training foreground's 0.5–99.5 percentiles and z-score with the training
  foreground mean/std (``foreground_intensity_properties_per_channel`` in the plans) — already global.
- ``NoNormalization``: the intensities as float32.

Other schemes raise :class:`NeurinoError`. nnU-Net also crops each image to its non-zero bounding box
before normalising; a large volume is not cropped (its background is predicted like any other region).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from nnunetv2_neurino.errors import NeurinoError

SUPPORTED_SCHEMES = ("ZScoreNormalization", "CTNormalization", "NoNormalization")


@dataclass(frozen=True)
class IntensityStatistics:
    """How every block is normalised.

    Attributes
    ----------
    scheme : nnU-Net normalisation scheme name.
    mean, std : z-score statistics (input intensity units).
    clip_low, clip_high : CTNormalization clipping bounds (None otherwise).
    use_mask_for_norm : z-score over non-zero voxels only, zeros stay zero.
    n_voxels, n_chunks, n_chunks_total, seed : how the statistics were sampled.
    """

    scheme: str
    mean: float = 0.0
    std: float = 1.0
    clip_low: float | None = None
    clip_high: float | None = None
    use_mask_for_norm: bool = False
    n_voxels: int = 0
    n_chunks: int = 0
    n_chunks_total: int = 0
    seed: int = 0

    def to_attrs(self) -> dict:
        """JSON-serialisable form (stored in the output's attributes)."""
        return asdict(self)

    def apply(self, image: np.ndarray) -> np.ndarray:
        """``image`` (any shape, any numeric dtype) normalised, as float32."""
        x = np.asarray(image, dtype=np.float32)
        if self.scheme == "NoNormalization":
            return x.copy() if x is image else x
        if self.scheme == "CTNormalization":
            x = np.clip(x, self.clip_low, self.clip_high)
            return ((x - np.float32(self.mean)) / np.float32(max(self.std, 1e-8))).astype(np.float32)
        out = (x - np.float32(self.mean)) / np.float32(max(self.std, 1e-8))
        if self.use_mask_for_norm:
            out[x == 0] = 0.0
        return out.astype(np.float32, copy=False)


def _chunk_grid(shape: tuple[int, ...], chunks: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int(math.ceil(n / c)) for n, c in zip(shape, chunks))


def sample_statistics(array, scheme: str = "ZScoreNormalization", use_mask_for_norm: bool = False,
                      intensity_properties: dict | None = None, max_chunks: int = 64, seed: int = 0,
                      chunks: tuple[int, int, int] | None = None) -> IntensityStatistics:
    """Normalisation statistics of a large [z, y, x] array from a seeded sample of whole chunks.

    Parameters
    ----------
    array : numpy-sliceable [z, y, x] array (zarr array, :class:`LazyVolume` ``.array``, numpy).
    scheme : the plans' normalisation scheme of the channel.
    use_mask_for_norm : the plans' ``use_mask_for_norm`` of the channel.
    intensity_properties : the plans' ``foreground_intensity_properties_per_channel[c]`` (CTNormalization).
    max_chunks : chunks read at most; all of them when the array has fewer.
    seed : seed of the chunk sample.
    chunks : chunk size to sample by (default: the array's own ``chunks``).

    Returns
    -------
    IntensityStatistics with population mean and std (as numpy's ``mean``/``std``) of the sample.
    """
    if scheme not in SUPPORTED_SCHEMES:
        raise NeurinoError(f"plans normalization scheme {scheme!r} is not supported for large volumes "
                           f"(supported: {', '.join(SUPPORTED_SCHEMES)})")
    if scheme == "NoNormalization":
        return IntensityStatistics(scheme)
    if scheme == "CTNormalization":
        props = intensity_properties or {}
        try:
            return IntensityStatistics(scheme, float(props["mean"]), float(props["std"]),
                                       float(props["percentile_00_5"]), float(props["percentile_99_5"]))
        except KeyError as e:
            raise NeurinoError(f"plans foreground_intensity_properties_per_channel lacks {e} "
                               "(needed by CTNormalization)") from e
    shape = tuple(int(s) for s in array.shape)
    chunks = tuple(int(c) for c in (chunks or getattr(array, "chunks", None) or shape))
    grid = _chunk_grid(shape, chunks)
    total = int(np.prod(grid))
    rng = np.random.default_rng(seed)
    picks = np.arange(total) if total <= max_chunks else np.sort(rng.choice(total, max_chunks, replace=False))
    n, s1, s2 = 0, 0.0, 0.0
    for flat in picks:
        idx = np.unravel_index(int(flat), grid)
        sl = tuple(slice(i * c, min((i + 1) * c, m)) for i, c, m in zip(idx, chunks, shape))
        block = np.asarray(array[sl], dtype=np.float64)
        if use_mask_for_norm:
            block = block[block != 0]
        n += block.size
        s1 += float(block.sum())
        s2 += float(np.square(block).sum())
    if n == 0:
        raise NeurinoError("the sampled chunks of the input hold no non-zero voxel; cannot compute "
                           "normalisation statistics (is the volume empty?)")
    mean = s1 / n
    std = math.sqrt(max(s2 / n - mean * mean, 0.0))
    return IntensityStatistics(scheme, mean, std, use_mask_for_norm=bool(use_mask_for_norm), n_voxels=int(n),
                               n_chunks=int(len(picks)), n_chunks_total=total, seed=int(seed))
