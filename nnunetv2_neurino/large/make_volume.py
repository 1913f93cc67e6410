"""A large synthetic multi-neuron volume written block by block (``neurino make-volume``).

The scene (morphologies, per-node brightness, centre-line samples, blobs, background and camera draws)
is small and built once from the seed; voxels are computed one block at a time and never held whole.
The image model is the built-in one (:mod:`nnunetv2_neurino.data.synthetic.imaging`: emission of tubes
with dim/broken stretches, passing fibres and autofluorescent blobs that are not labelled, depth
fall-off, anisotropic Gaussian PSF, camera), made *block-deterministic* — a voxel's value does not depend
on the block that computes it:

- emission and PSF are evaluated on the block plus a halo (the PSF's kernel radius, and around that the
  largest tube radius), then cropped to the block; the nearest-sample search uses one global reach;
- the smooth background is an analytic sum of random plane waves (Gaussian spectrum of correlation length
  ``background_length``) instead of the per-case FFT field, so it can be evaluated anywhere;
- camera noise uses counter-based random numbers (a hash of the seed and the global voxel index):
  Poisson shot noise (exact inverse CDF below 12 expected photons, its normal approximation above),
  Gaussian read noise, offset; rounded and clipped to uint16.

Output (OME-NGFF 0.4 by default), written into a hidden partial folder and renamed at the end::

    brain.ome.zarr/0, 1, ...            image pyramid (uint16, mean-reduced)
    brain.ome.zarr/labels/neurites/0..  label pyramid (uint8, 1 = neuron, max-reduced)
    brain.ome.zarr/swc/neuron_000.swc   gold standard, one per neuron (image voxel coordinates x y z)
    brain.ome.zarr/swc/all_neurons.swc  all neurons in one file
"""

from __future__ import annotations

import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy import special

from nnunetv2_neurino.data.render import render_swc
from nnunetv2_neurino.data.synthetic.dataset import LABEL_RADIUS_FLOOR
from nnunetv2_neurino.data.synthetic.imaging import (
    ImagingParams,
    apply_psf,
    emission,
    neurite_brightness,
    psf_sigma_voxels,
    sample_tree,
)
from nnunetv2_neurino.data.synthetic.morphology import MorphologyParams, generate_fibre, generate_neuron
from nnunetv2_neurino.data.volumes import check_spacing
from nnunetv2_neurino.errors import NeurinoError
from nnunetv2_neurino.swc import SWCTree

__all__ = ["VolumeScene", "build_scene", "render_block", "write_volume", "MARKER"]

MARKER = "neurino_make_volume"      # group attribute: --force replaces only folders that carry it
_BIG = 2.5                          # emission(): samples above this radius (finest voxels) are drawn as balls
_N_WAVES = 24
_BLOBS_PER_VOXEL = 8.0 / 64 ** 3    # ImagingParams.n_blobs (4..12) per 64^3 case


@dataclass
class VolumeScene:
    """Everything about the volume except its voxels (small: O(nodes)).

    Attributes
    ----------
    shape : (Z, Y, X); spacing : (z, y, x).
    neurons : labelled trees (image voxel coordinates); fibres : unlabelled passing fibres.
    neuron_samples, other_samples : (points (M, 3) physical zyx, radius (M,) physical, value (M,)).
    reach : the largest thin-tube radius + one finest voxel (physical; one value for every block).
    waves : (K, 3) wave vectors (radians per physical unit), phases (K,), background level.
    falloff, photons, seed : the drawn depth fall-off, photon count, and the noise key.
    """

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    neurons: list[SWCTree]
    fibres: list[SWCTree]
    neuron_samples: tuple[np.ndarray, np.ndarray, np.ndarray]
    other_samples: tuple[np.ndarray, np.ndarray, np.ndarray]
    reach: float
    waves: np.ndarray
    phases: np.ndarray
    level: float
    falloff: float
    photons: float
    seed: int
    params: ImagingParams

    def gold(self) -> SWCTree:
        """All neurons as one forest (image voxel coordinates)."""
        return SWCTree.concatenate(self.neurons, source="all_neurons")


def _rng(seed: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), 90210, *stream]))


def build_scene(shape, n_neurons: int, seed: int = 0, spacing=(1.0, 1.0, 1.0),
                morphology_params: MorphologyParams | None = None,
                imaging_params: ImagingParams | None = None) -> VolumeScene:
    """Draw the neurons (somata uniform in the central 80 % of the volume; their neurites cross blocks and
    stop at the volume's faces), fibres, blobs and image-model values, deterministically from ``seed``."""
    shape = tuple(int(s) for s in shape)
    spacing = check_spacing(spacing)
    if len(shape) != 3 or min(shape) < 8:
        raise NeurinoError(f"--shape must be 3 sizes Z Y X of at least 8 voxels, got {shape}")
    if int(n_neurons) < 1:
        raise NeurinoError(f"--neurons must be at least 1, got {n_neurons}")
    mp = MorphologyParams() if morphology_params is None else morphology_params
    ip = ImagingParams() if imaging_params is None else imaging_params
    sp = np.asarray(spacing)
    unit = float(sp.min())
    neurons, samples = [], []
    for i in range(int(n_neurons)):
        rng = _rng(seed, 1, i)
        soma = rng.uniform(0.1, 0.9, 3) * (np.asarray(shape) - 1)
        tree = generate_neuron(shape, spacing, rng, mp, soma_zyx=soma)
        tree.source = f"neuron_{i:03d}"
        brightness, _ = neurite_brightness(tree, spacing, rng, ip)
        neurons.append(tree)
        samples.append(sample_tree(tree, brightness, spacing))
    rng = _rng(seed, 2)
    fibres, other = [], []
    for _ in range(int(rng.integers(ip.n_fibres[0], ip.n_fibres[1] + 1))):
        fibre = generate_fibre(shape, spacing, rng, mp)
        b, _ = neurite_brightness(fibre, spacing, rng, ip, base=rng.uniform(*ip.distractor_brightness),
                                  stretches=False)
        fibres.append(fibre)
        other.append(sample_tree(fibre, b, spacing))
    n_blobs = int(rng.poisson(_BLOBS_PER_VOXEL * float(np.prod(shape))))
    blobs = rng.uniform(0, 1, (n_blobs, 3)) * (np.asarray(shape) - 1)
    other.append((blobs * sp, rng.uniform(*ip.blob_radius, n_blobs) * unit,
                  rng.uniform(*ip.blob_brightness, n_blobs)))
    neuron_samples = tuple(np.concatenate(x) for x in zip(*samples))
    other_samples = tuple(np.concatenate(x) for x in zip(*other))
    radii = np.concatenate([neuron_samples[1], other_samples[1]])
    thin = radii[radii <= _BIG * unit]
    reach = (float(thin.max()) if thin.size else unit) + unit
    # background: plane waves with a Gaussian spectrum of correlation length background_length
    waves = rng.normal(0.0, 1.0 / ip.background_length, (_N_WAVES, 3))
    phases = rng.uniform(0.0, 2 * np.pi, _N_WAVES)
    level = float(rng.uniform(*ip.background))
    falloff = float(rng.uniform(*ip.falloff))
    photons = float(rng.uniform(*ip.photons))
    return VolumeScene(shape, spacing, neurons, fibres, neuron_samples, other_samples, reach, waves, phases,
                       level, falloff, photons, int(seed), ip)


# ----------------------------------------------------------------------------------------- per block
def _background(scene: VolumeScene, lo, hi) -> np.ndarray:
    """Smooth background over the voxels [lo, hi) (global indices), float32."""
    sp = np.asarray(scene.spacing)
    axes = [np.arange(a, b) * s for a, b, s in zip(lo, hi, sp)]
    total = np.zeros(tuple(int(b - a) for a, b in zip(lo, hi)), np.float64)
    for k, phase in zip(scene.waves, scene.phases):
        ez, ey, ex = (np.exp(1j * (kk * ax)) for kk, ax in zip(k, axes))
        total += np.real(np.exp(1j * phase) * ez[:, None, None] * ey[None, :, None] * ex[None, None, :])
    field = total / np.sqrt(_N_WAVES / 2.0)
    ip = scene.params
    bg = np.maximum(scene.level * (1.0 + ip.background_variation * field), 0.2 * scene.level)
    return bg.astype(np.float32)


def _uniform(seed: int, index: np.ndarray, stream: int) -> np.ndarray:
    """Counter-based uniforms in (0, 1): splitmix64 of (seed, stream, global voxel index)."""
    with np.errstate(over="ignore"):
        x = index.astype(np.uint64) + np.uint64((int(seed) * 0x9E3779B97F4A7C15 + stream * 0xBF58476D1CE4E5B9)
                                                & 0xFFFFFFFFFFFFFFFF)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return ((x >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0 ** -53


def _poisson(lam: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Poisson(lam) from uniforms ``u``: exact inverse CDF for lam < 12, normal approximation above."""
    out = np.rint(lam + np.sqrt(lam) * special.ndtri(u))
    small = lam < 12.0
    if small.any():
        ls, us = lam[small], u[small]
        pmf = np.exp(-ls)
        cdf, k = pmf.copy(), np.zeros_like(ls)
        for i in range(1, 80):
            above = us > cdf
            if not above.any():
                break
            k += above
            pmf = pmf * ls / i
            cdf = cdf + pmf
        out[small] = k
    return np.maximum(out, 0.0)


def _emission_region(scene: VolumeScene, lo, hi, samples) -> np.ndarray:
    """Emission of ``samples`` over [lo, hi), computed from the samples within reach of it only."""
    sp = np.asarray(scene.spacing)
    pts, rad, val = samples
    lo_p, hi_p = np.asarray(lo) * sp, (np.asarray(hi) - 1) * sp
    margin = np.maximum(rad, scene.reach)[:, None] + float(sp.max())
    near = np.all((pts >= lo_p - margin) & (pts <= hi_p + margin), axis=1)
    # a far, dark sample of the global largest thin radius: the search reach is the same in every block
    pts = np.concatenate([pts[near] - lo_p, [[-1e9, -1e9, -1e9]]])
    rad = np.concatenate([rad[near], [scene.reach - float(sp.min())]])
    val = np.concatenate([val[near], [0.0]])
    return emission(pts, rad, val, tuple(int(b - a) for a, b in zip(lo, hi)), sp, big=_BIG)


def render_block(scene: VolumeScene, lo, hi) -> tuple[np.ndarray, np.ndarray]:
    """Image and label of the voxels [lo, hi) (global (z, y, x) indices).

    Returns
    -------
    image : uint16 (hi − lo) camera counts; label : uint8 (hi − lo), 1 = neuron.
    """
    shape = np.asarray(scene.shape)
    sp = np.asarray(scene.spacing)
    lo, hi = np.asarray(lo, int), np.asarray(hi, int)
    psf = np.array([int(4.0 * s + 0.5) for s in psf_sigma_voxels(sp, scene.params)])  # gaussian_filter radius
    em_halo = np.ceil((scene.reach + 0.5 * sp.max()) / sp).astype(int) + 2
    p_lo, p_hi = np.maximum(lo - psf, 0), np.minimum(hi + psf, shape)
    e_lo, e_hi = np.maximum(p_lo - em_halo, 0), np.minimum(p_hi + em_halo, shape)
    em = np.maximum(_emission_region(scene, e_lo, e_hi, scene.neuron_samples),
                    _emission_region(scene, e_lo, e_hi, scene.other_samples))
    em = em[tuple(slice(a, b) for a, b in zip(p_lo - e_lo, p_hi - e_lo))]
    depth = (np.arange(p_lo[0], p_hi[0]) / max(shape[0] - 1, 1)).astype(np.float32)
    attenuation = (scene.falloff ** depth)[:, None, None].astype(np.float32)
    blurred = apply_psf(em * attenuation + _background(scene, p_lo, p_hi) * attenuation, sp, scene.params)
    expected = scene.photons * blurred[tuple(slice(a, b) for a, b in zip(lo - p_lo, hi - p_lo))]
    grids = np.meshgrid(*[np.arange(a, b, dtype=np.int64) for a, b in zip(lo, hi)], indexing="ij",
                        sparse=True)
    index = (grids[0] * shape[1] + grids[1]) * shape[2] + grids[2]
    counts = _poisson(np.maximum(expected.astype(np.float64), 0.0), _uniform(scene.seed, index, 1))
    counts += scene.params.read_noise * special.ndtri(_uniform(scene.seed, index, 2)) + scene.params.offset
    image = np.clip(np.rint(counts), 0, 65535).astype(np.uint16)
    return image, _label_block(scene, lo, hi)


def _label_block(scene: VolumeScene, lo, hi) -> np.ndarray:
    """Render only the neuron edges whose bounding box touches [lo, hi)."""
    sp = np.asarray(scene.spacing)
    out = np.zeros(tuple(int(b - a) for a, b in zip(lo, hi)), bool)
    for tree in scene.neurons:
        zyx = tree.to_zyx()
        pidx = tree.parent_index
        reach = np.maximum(tree.radius, LABEL_RADIUS_FLOOR)[:, None] * sp.min() / sp + 1.0
        other = np.where(pidx >= 0, pidx, np.arange(tree.n))
        e_lo = np.minimum(zyx - reach, zyx[other] - reach[other])
        e_hi = np.maximum(zyx + reach, zyx[other] + reach[other])
        touch = np.all((e_hi >= lo) & (e_lo <= hi - 1), axis=1)
        if not touch.any():
            continue
        keep = np.zeros(tree.n, bool)
        keep[touch] = True
        keep[other[touch]] = True
        out |= render_swc(tree.take(keep), out.shape, sp, offset=lo, radius_floor=LABEL_RADIUS_FLOOR)
    return out.astype(np.uint8)


# ----------------------------------------------------------------------------------------------- writer
def _is_own_output(path: Path) -> bool:
    import zarr

    try:
        return MARKER in zarr.open_group(str(path), mode="r").attrs
    except Exception:          # not a zarr group at all
        return False


def write_volume(path: str | os.PathLike, shape, n_neurons: int, seed: int = 0, chunk: int = 128,
                 spacing=(1.0, 1.0, 1.0), force: bool = False, progress: bool = True, version: str = "0.4",
                 n_levels: int | None = None) -> Path:
    """Write the volume, its label and gold SWCs to an OME-Zarr folder, one chunk-sized block at a time.

    Parameters
    ----------
    path : output ``.ome.zarr`` folder.
    shape : (Z, Y, X); spacing : (z, y, x) voxel size (micrometres).
    n_neurons, seed : number of labelled neurons; everything is a deterministic function of the seed.
    chunk : block and zarr chunk edge (voxels); the output does not depend on it.
    force : replace an existing output of this command (never another folder).
    version : OME-NGFF "0.4" (zarr v2) or "0.5" (zarr v3).
    n_levels : pyramid levels (default: halve until the smallest side would drop below 16).

    Returns
    -------
    The folder written.
    """
    from tqdm import tqdm

    from nnunetv2_neurino.io_utils import atomic_directory, mark_output
    from nnunetv2_neurino.large.ngff import (
        add_label,
        add_multiscale,
        build_pyramid,
        create_ngff_root,
        pyramid_regions,
    )
    from nnunetv2_neurino.swc import write_swc

    path = Path(path)
    if int(chunk) < 8:
        raise NeurinoError(f"--chunk must be at least 8 voxels, got {chunk}")
    if path.exists() and force and not _is_own_output(path):
        raise NeurinoError(f"{path} exists and was not written by 'neurino make-volume'; refusing to "
                           "replace it")
    scene = build_scene(shape, n_neurons, seed, spacing)
    shape = scene.shape
    if n_levels is None:
        n_levels = 1
        while min(shape) // 2 ** n_levels >= 16:
            n_levels += 1
    chunks = (int(chunk),) * 3
    attrs = {MARKER: {"shape": list(shape), "spacing": list(scene.spacing), "neurons": int(n_neurons),
                      "seed": int(seed), "imaging_params": asdict(scene.params),
                      "labels": "labels/neurites (1 = neuron)",
                      "swc": "swc/neuron_NNN.swc, swc/all_neurons.swc"}}
    with atomic_directory(path, force=force) as tmp:
        root = create_ngff_root(tmp, version, attributes=attrs, overwrite=True)
        mark_output(tmp)  # zarr's mode 'w' emptied the folder, marker included
        image = add_multiscale(root, shape, np.uint16, scene.spacing, chunks, n_levels, name="image")
        label = add_label(root, "neurites", shape, np.uint8, scene.spacing, chunks, n_levels,
                          colors={1: (255, 255, 0, 255)})
        blocks = list(pyramid_regions(shape, chunks))
        for region in tqdm(blocks, desc="make-volume blocks", disable=not progress):
            lo = [r.start for r in region]
            hi = [r.stop for r in region]
            img, lab = render_block(scene, lo, hi)
            image[0][region] = img
            label[0][region] = lab
        build_pyramid(image, method="mean", progress=progress)
        build_pyramid(label, method="max", progress=progress)
        (tmp / "swc").mkdir()
        for tree in scene.neurons:
            write_swc(tree, tmp / "swc" / f"{tree.source}.swc",
                      header=f"neurino make-volume seed {seed}: {tree.source}, image voxel coordinates")
        with warnings.catch_warnings():     # one soma per neuron: write_swc warns about several somata
            warnings.simplefilter("ignore")
            write_swc(scene.gold(), tmp / "swc" / "all_neurons.swc",
                      header=f"neurino make-volume seed {seed}: all {n_neurons} neurons (somata after the "
                             "first written as type 3), image voxel coordinates")
    return path
