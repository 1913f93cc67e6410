"""A light-microscopy image model for synthetic neurons (vectorised numpy/scipy, deterministic from a seed).

Image formation, in order (intensities in units of "a bright neurite = 1" until the photon step):

1. **Emission of the labelled neuron**: every parent-child edge is sampled every half voxel; a voxel
   emits ``b · clip((r + u/2 − d) / u, 0, 1)`` (a tube of radius ``r`` with a one-voxel partial-volume
   rim, ``u`` = finest voxel size, ``d`` = physical distance to the nearest centre-line sample; the
   largest value over the 4 nearest samples). The brightness ``b`` varies smoothly along the neurite
   (log-normal, smoothed over the tree graph), and a few stretches are *dim* (×0.15–0.35) or *broken*
   (×0.02), as in sparse labelling with uneven expression or a damaged axon.
2. **Distractors** (emit, but are not in the label): passing fibres of neighbouring neurons crossing the
   volume, sometimes a second neuron with its soma near a face, and small autofluorescent blobs.
3. **Background**: a smooth, spatially varying tissue autofluorescence field.
4. **Depth fall-off**: everything is multiplied by ``falloff ** (z / Z)`` (light scattered / absorbed
   deeper in the tissue; z = first array axis).
5. **PSF**: an anisotropic Gaussian blur with physical sigmas ``(sigma_z, sigma_xy, sigma_xy)``,
   sigma_z > sigma_xy (the axial resolution of a wide-field/confocal microscope is worse than the
   lateral one), converted to voxels with the spacing.
6. **Camera**: Poisson shot noise on ``photons · image``, Gaussian read noise, a constant offset; rounded
   and clipped to uint16 (or kept as float32).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy import ndimage
from scipy.sparse.csgraph import dijkstra
from scipy.spatial import cKDTree

from nnunetv2_neurino.errors import NeurinoError
from nnunetv2_neurino.swc import SOMA, SWCTree

__all__ = ["ImagingParams", "NORMAL", "DIM", "BROKEN", "neurite_brightness", "sample_tree", "emission",
           "background_field", "psf_sigma_voxels", "apply_psf", "camera", "ImageResult", "simulate_image"]

NORMAL, DIM, BROKEN = 0, 1, 2


@dataclass(frozen=True)
class ImagingParams:
    """Parameters of the image model (lengths in physical units; ranges are (min, max) drawn per case).

    Attributes
    ----------
    intensity_cv : coefficient of variation of the brightness along a neurite.
    intensity_length : correlation length of that variation along the tree.
    soma_brightness : brightness of the soma relative to the neurites.
    n_dim, dim_factor : number of dim stretches and their brightness factor.
    n_broken, broken_factor : number of broken stretches (almost no signal) and their factor.
    dim_length, broken_length : length of a dim / broken stretch.
    n_fibres : passing fibres of neighbouring neurons (not in the label).
    second_neuron_probability : chance of a second (unlabelled) neuron with its soma near a face.
    distractor_brightness : brightness of fibres and the second neuron relative to the labelled one.
    n_blobs, blob_radius, blob_brightness : autofluorescent granules (not in the label).
    background : mean tissue background relative to a bright neurite.
    background_variation : relative standard deviation of the smooth background field.
    background_length : length scale of the background field.
    falloff : brightness at the deepest slice relative to the top slice.
    psf_sigma_xy, psf_sigma_z : lateral and axial PSF standard deviations.
    photons : expected photons of a bright (b = 1), unblurred neurite voxel at the top of the stack.
    read_noise : standard deviation of the camera read noise (counts).
    offset : camera offset (counts).
    """

    intensity_cv: float = 0.3
    intensity_length: float = 6.0
    soma_brightness: float = 1.3
    n_dim: tuple[int, int] = (1, 3)
    dim_factor: tuple[float, float] = (0.15, 0.35)
    n_broken: tuple[int, int] = (1, 2)
    broken_factor: float = 0.02
    dim_length: tuple[float, float] = (4.0, 8.0)
    broken_length: tuple[float, float] = (5.0, 9.0)
    n_fibres: tuple[int, int] = (1, 3)
    second_neuron_probability: float = 0.4
    distractor_brightness: tuple[float, float] = (0.5, 1.0)
    n_blobs: tuple[int, int] = (4, 12)
    blob_radius: tuple[float, float] = (0.8, 2.0)
    blob_brightness: tuple[float, float] = (0.3, 0.9)
    background: tuple[float, float] = (0.05, 0.15)
    background_variation: float = 0.3
    background_length: float = 8.0
    falloff: tuple[float, float] = (0.4, 0.75)
    psf_sigma_xy: float = 0.6
    psf_sigma_z: float = 1.5
    photons: tuple[float, float] = (80.0, 250.0)
    read_noise: float = 3.0
    offset: float = 100.0


def _tree_graph(tree: SWCTree, spacing) -> sp.csr_matrix:
    """Symmetric sparse (N, N) graph of the parent-child edges weighted by physical length."""
    child, parent = tree.edges()
    zyx = tree.to_zyx() * np.asarray(spacing, float)
    w = np.maximum(np.linalg.norm(zyx[child] - zyx[parent], axis=1), 1e-6)
    g = sp.coo_matrix((w, (child, parent)), shape=(tree.n, tree.n)).tocsr()
    return (g + g.T).tocsr()


def neurite_brightness(tree: SWCTree, spacing, rng: np.random.Generator,
                       params: ImagingParams | None = None, base: float = 1.0,
                       stretches: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Per-node brightness of a tree, with smooth variation and dim/broken stretches.

    Parameters
    ----------
    tree : the neuron (image-space voxels).
    spacing : (z, y, x) voxel size.
    rng : random generator.
    params : :class:`ImagingParams`.
    base : mean brightness of the tree.
    stretches : add dim and broken stretches (the labelled neuron) or not (distractors).

    Returns
    -------
    brightness : float64 (N,).
    state : int8 (N,): NORMAL, DIM or BROKEN per node.
    """
    params = ImagingParams() if params is None else params
    n = tree.n
    state = np.zeros(n, np.int8)
    if n == 0:
        return np.zeros(0), state
    graph = _tree_graph(tree, spacing)
    # smooth log-normal variation: white noise averaged over the tree graph (random-walk smoothing)
    adj = (graph > 0).astype(np.float64) + sp.identity(n, format="csr")
    adj = sp.diags(1.0 / np.asarray(adj.sum(axis=1)).ravel()) @ adj
    g = rng.normal(size=n)
    step = float(np.median(graph.data)) if graph.nnz else 1.0
    for _ in range(max(1, int(round((params.intensity_length / step) ** 2 / 2)))):
        g = adj @ g
    g = (g - g.mean()) / (g.std() + 1e-12)
    cv = params.intensity_cv
    sigma = np.sqrt(np.log1p(cv * cv))
    brightness = base * np.exp(sigma * g - 0.5 * sigma * sigma)
    soma = tree.types == SOMA
    brightness[soma] = base * params.soma_brightness
    if stretches:
        roots = tree.roots
        from_root = dijkstra(graph, directed=False, indices=roots, min_only=True)
        soma_r = float(tree.radius[soma].max() * min(spacing)) if soma.any() else 0.0
        free = (~soma) & np.isfinite(from_root) & (from_root > soma_r + 4.0)
        kinds = ((DIM, params.n_dim, None, params.dim_length),
                 (BROKEN, params.n_broken, params.broken_factor, params.broken_length))
        for kind, count, factor, length in kinds:
            k = int(rng.integers(count[0], count[1] + 1))
            candidates = np.flatnonzero(free & (state == NORMAL))
            for seed in rng.choice(candidates, size=min(k, candidates.size), replace=False):
                half = 0.5 * rng.uniform(*length)
                dist = dijkstra(graph, directed=False, indices=int(seed), limit=half + 1e-9)
                inside = np.isfinite(dist) & (state == NORMAL) & ~soma
                f = rng.uniform(*params.dim_factor) if factor is None else factor
                brightness[inside] *= f
                state[inside] = kind
    return brightness, state


def sample_tree(tree: SWCTree, values: np.ndarray, spacing, step: float = 0.5
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dense centre-line samples of a tree with linearly interpolated radius and a per-node value.

    Parameters
    ----------
    tree : image-space tree (radii in voxels of the finest axis).
    values : (N,) per-node value (brightness) interpolated along edges.
    spacing : (z, y, x) voxel size.
    step : largest distance between samples, in voxels of the finest axis.

    Returns
    -------
    points : (M, 3) physical positions (z, y, x); radius : (M,) physical radii; value : (M,).
    Every node is a sample (roots and isolated nodes included).
    """
    spacing = np.asarray(spacing, float)
    unit = float(spacing.min())
    p = tree.to_zyx() * spacing
    r = tree.radius * unit
    values = np.asarray(values, float)
    child, parent = tree.edges()
    length = np.linalg.norm(p[parent] - p[child], axis=1)
    n_cut = np.maximum(1, np.ceil(length / (step * unit))).astype(np.int64)
    seg = np.repeat(np.arange(child.shape[0]), n_cut)
    k = np.arange(seg.shape[0]) - (np.cumsum(n_cut) - n_cut)[seg]
    t = (k / n_cut[seg])[:, None]
    a, b = child[seg], parent[seg]
    pts = p[a] + t * (p[b] - p[a])
    rad = r[a] + t[:, 0] * (r[b] - r[a])
    val = values[a] + t[:, 0] * (values[b] - values[a])
    roots = tree.roots
    return (np.concatenate([pts, p[roots]]), np.concatenate([rad, r[roots]]),
            np.concatenate([val, values[roots]]))


def emission(points: np.ndarray, radius: np.ndarray, value: np.ndarray, shape: tuple[int, int, int],
             spacing, k: int = 3, big: float = 2.5) -> np.ndarray:
    """Emission volume of tubes/balls around samples: ``value · clip((r + u/2 − d) / u, 0, 1)``, the
    largest over the ``k`` nearest samples (and over every sample with a radius above ``big`` voxels).

    Parameters
    ----------
    points : (M, 3) physical sample positions (z, y, x); radius, value : (M,).
    shape : (Z, Y, X); spacing : (z, y, x) voxel size (``u`` = its minimum).
    k : nearest samples considered per voxel (thin neurites).
    big : samples with a radius above ``big · u`` (somata) are drawn one by one over their bounding box,
        so the candidate band around the thin neurites stays narrow.

    Returns
    -------
    float32 (Z, Y, X).
    """
    import edt

    shape = tuple(int(s) for s in shape)
    spacing = np.asarray(spacing, float)
    unit = float(spacing.min())
    out = np.zeros(shape, np.float32)
    large = radius > big * unit
    for i in np.flatnonzero(large):           # a few balls (somata): exact, over their bounding box
        lo = np.maximum(np.floor((points[i] - radius[i] - unit) / spacing), 0).astype(int)
        hi = np.minimum(np.ceil((points[i] + radius[i] + unit) / spacing), np.asarray(shape) - 1).astype(int)
        if np.any(hi < lo):
            continue
        axes = [np.arange(a, b + 1) * sp_ - c for a, b, sp_, c in zip(lo, hi, spacing, points[i])]
        d = np.sqrt(axes[0][:, None, None] ** 2 + axes[1][None, :, None] ** 2 + axes[2][None, None, :] ** 2)
        box = out[lo[0]:hi[0] + 1, lo[1]:hi[1] + 1, lo[2]:hi[2] + 1]
        np.maximum(box, value[i] * np.clip((radius[i] + 0.5 * unit - d) / unit, 0, 1), out=box)
    points, radius, value = points[~large], radius[~large], value[~large]
    if points.shape[0] == 0:
        return out
    vox = np.rint(points / spacing).astype(np.int64)
    ok = np.all((vox >= 0) & (vox < np.asarray(shape)), axis=1)
    if not ok.any():        # no centre-line sample inside the volume (tubes grazing a face are ignored)
        return out
    seeds = np.ones(shape, np.uint8)
    seeds[tuple(vox[ok].T)] = 0
    reach = float(radius.max()) + unit
    # candidate voxels: near a sample voxel (cheap EDT), then exact distances to the samples (k-d tree)
    cand = np.argwhere(edt.edt(seeds, anisotropy=tuple(spacing)) <= reach + 0.5 * float(spacing.max()))
    kk = min(k, points.shape[0])
    dist, idx = cKDTree(points).query(cand * spacing, k=kk, distance_upper_bound=reach)
    dist, idx = dist.reshape(cand.shape[0], kk), idx.reshape(cand.shape[0], kk)
    valid = idx < points.shape[0]
    idx = np.where(valid, idx, 0)
    contrib = value[idx] * np.clip((radius[idx] + 0.5 * unit - dist) / unit, 0.0, 1.0)
    contrib = np.where(valid, contrib, 0.0).max(axis=1).astype(np.float32)
    where = tuple(cand.T)
    out[where] = np.maximum(out[where], contrib)
    return out


def background_field(shape: tuple[int, int, int], spacing, rng: np.random.Generator, level: float,
                     variation: float, length: float) -> np.ndarray:
    """Smooth positive background: white noise low-pass filtered with a Gaussian of ``length`` physical
    units (in Fourier space, periodic), float32 (Z, Y, X).

    Mean ``level``, relative standard deviation ``variation`` (clipped below at 20 % of the level).
    """
    shape = tuple(int(s) for s in shape)
    spacing = np.asarray(spacing, float)
    noise = rng.normal(size=shape).astype(np.float32)
    freqs = np.meshgrid(*[np.fft.fftfreq(n, d) for n, d in zip(shape[:2], spacing[:2])],
                        np.fft.rfftfreq(shape[2], spacing[2]), indexing="ij", sparse=True)
    gain = np.exp(-2.0 * (np.pi * length) ** 2 * sum(f * f for f in freqs)).astype(np.float32)
    field = np.fft.irfftn(np.fft.rfftn(noise) * gain, s=shape, axes=(0, 1, 2))
    field = (field - field.mean()) / (field.std() + 1e-12)
    return np.maximum(level * (1.0 + variation * field), 0.2 * level).astype(np.float32)


def psf_sigma_voxels(spacing, params: ImagingParams | None = None) -> np.ndarray:
    """(3,) Gaussian PSF sigmas in voxels, order z, y, x: physical sigmas divided by the spacing."""
    params = ImagingParams() if params is None else params
    sig = np.array([params.psf_sigma_z, params.psf_sigma_xy, params.psf_sigma_xy], float)
    return sig / np.asarray(spacing, float)


def apply_psf(volume: np.ndarray, spacing, params: ImagingParams | None = None) -> np.ndarray:
    """Blur with the anisotropic Gaussian PSF (:func:`psf_sigma_voxels`); float32, same shape."""
    return ndimage.gaussian_filter(np.asarray(volume, np.float32), psf_sigma_voxels(spacing, params),
                                   mode="nearest").astype(np.float32)


def camera(expected_photons: np.ndarray, rng: np.random.Generator, read_noise: float, offset: float,
           dtype: str = "uint16") -> np.ndarray:
    """Poisson shot noise + Gaussian read noise + offset; "uint16" (rounded, clipped) or "float32" counts."""
    counts = rng.poisson(np.maximum(expected_photons, 0.0)).astype(np.float32)
    counts += rng.normal(0.0, read_noise, counts.shape).astype(np.float32) + np.float32(offset)
    if dtype == "uint16":
        return np.clip(np.rint(counts), 0, 65535).astype(np.uint16)
    if dtype == "float32":
        return counts
    raise NeurinoError(f"image dtype must be 'uint16' or 'float32', got {dtype!r}")


@dataclass
class ImageResult:
    """Output of :func:`simulate_image`.

    Attributes
    ----------
    image : (Z, Y, X) uint16 or float32 camera counts.
    expected : float32 (Z, Y, X) noise-free expected counts (offset included).
    neuron_emission, distractor_emission : float32 (Z, Y, X) emission before fall-off and blur.
    brightness, state : (N,) per-node brightness and NORMAL/DIM/BROKEN state of the labelled tree.
    blobs_zyx : (B, 3) voxel positions of the autofluorescent blobs.
    photons, background, falloff : the values drawn for this case.
    """

    image: np.ndarray
    expected: np.ndarray
    neuron_emission: np.ndarray
    distractor_emission: np.ndarray
    brightness: np.ndarray
    state: np.ndarray
    blobs_zyx: np.ndarray
    photons: float
    background: float
    falloff: float


def simulate_image(tree: SWCTree, distractors: list[SWCTree], shape: tuple[int, int, int], spacing,
                   rng: np.random.Generator, params: ImagingParams | None = None,
                   dtype: str = "uint16") -> ImageResult:
    """Microscope image of ``tree`` (labelled) among ``distractors`` (unlabelled); see the module doc.

    Parameters
    ----------
    tree : the labelled neuron, image-space voxel coordinates (x = last axis).
    distractors : neighbouring neurites / neurons that appear in the image only.
    shape : (Z, Y, X); spacing : (z, y, x) voxel size.
    rng : random generator (the image is a deterministic function of its state).
    params : :class:`ImagingParams`.
    dtype : "uint16" or "float32".

    Returns
    -------
    :class:`ImageResult`.
    """
    params = ImagingParams() if params is None else params
    shape = tuple(int(s) for s in shape)
    spacing = np.asarray(spacing, float)
    unit = float(spacing.min())
    brightness, state = neurite_brightness(tree, spacing, rng, params)
    neuron = emission(*sample_tree(tree, brightness, spacing), shape, spacing)
    parts = []
    for d in distractors:
        b, _ = neurite_brightness(d, spacing, rng, params, base=rng.uniform(*params.distractor_brightness),
                                  stretches=False)
        parts.append(sample_tree(d, b, spacing))
    n_blobs = int(rng.integers(params.n_blobs[0], params.n_blobs[1] + 1))
    blobs = rng.uniform(0, 1, (n_blobs, 3)) * (np.asarray(shape) - 1)
    parts.append((blobs * spacing, rng.uniform(*params.blob_radius, n_blobs) * unit,
                  rng.uniform(*params.blob_brightness, n_blobs)))
    pts, rad, val = (np.concatenate(x) for x in zip(*parts))
    other = emission(pts, rad, val, shape, spacing)
    level = rng.uniform(*params.background)
    bg = background_field(shape, spacing, rng, level, params.background_variation, params.background_length)
    falloff = rng.uniform(*params.falloff)
    depth = (np.arange(shape[0]) / max(shape[0] - 1, 1)).astype(np.float32)
    attenuation = (falloff ** depth)[:, None, None].astype(np.float32)
    blurred = apply_psf(np.maximum(neuron, other) * attenuation + bg * attenuation, spacing, params)
    photons = rng.uniform(*params.photons)
    expected = photons * blurred
    image = camera(expected, rng, params.read_noise, params.offset, dtype)
    return ImageResult(image, expected + np.float32(params.offset), neuron, other, brightness, state,
                       blobs, float(photons), float(level), float(falloff))
