"""Block-wise tracing of masks too large for memory, with the same trees as :func:`trace_mask`.

Three passes over a grid of blocks (cores of ``block`` voxels, the last ones clipped by the volume), each a
plain loop over a task list (one task = one block; a block reads only its core plus a margin):

1. **label** - each core is labelled alone (cc3d, 26-connectivity); labels get global ids and are written to
   a chunked label store (zarr, one chunk per core, in a temporary folder), voxel counts are kept per label.
2. **join** - each core grown by one voxel toward the lower faces is labelled again; labels of different
   cores that fall into one component there are joined (union-find over face, edge and corner adjacency,
   done by ``scipy.sparse.csgraph.connected_components`` on the collected pairs). Every pair of
   26-neighbouring voxels lies in one such grown core (the core of their component-wise maximum), so the
   joined components are exactly the 26-connected components of the whole volume, and the
   minimum-component-size rule is applied to their global sizes (= ``cc3d.dust`` on the whole volume).
3. **skeleton** - each core is read with a tracing ``halo``, cleaned by the global rule, skeletonized
   (:func:`nnunetv2_neurino.tracing.trace.skeleton_points`); skeleton voxels and radii inside the core
   are kept.

The kept skeleton voxels of all blocks then go through the tracer's own graph -> spanning forest -> root
-> pruning -> resampling stage (:func:`nnunetv2_neurino.tracing.trace.forest_from_skeleton`), so the
forest is that of ``trace_mask`` whenever each core's skeleton and radii equal those of the whole volume.

Halo
----
Thinning removes one boundary layer per iteration, but scikit-image deletes the candidate voxels of an
iteration one after another, so a deletion can depend on voxels further away than the local radius: the
skeleton is not strictly local. In our tests (neurites of radius <= 3 voxels, 2- and 4-voxel bars) a
halo of 8 voxels changed a few skeleton voxels, 16 almost none, 24 none; radii need the nearest
background within the halo. The default ``halo = 32`` voxels is meant for neurites up to ~8 voxels in
radius; the tests check equality with ``trace_mask``, it is not a proof.

A thicker object (a soma larger than the halo) is still traced, without error, but near it the
block-wise skeleton can differ from the whole-volume one: a block sees the soma cut at its halo and
thins the cut piece (extra, missing or shifted skeleton voxels inside the soma, so the soma's skeleton
may break into several trees; radii capped at the distance to the halo edge). Neurites further than the
halo from the soma are unaffected (tested). Choose ``halo`` above the largest radius expected for
identical results; a block whose whole region is foreground gets the distance to the region's edge as
radius.

Memory: one block region at a time plus the skeleton voxels of the whole volume (24 bytes + a few graph
entries per skeleton voxel), which the spanning forest needs at once.
"""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass

import cc3d
import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components
from tqdm import tqdm

from nnunetv2_neurino.errors import NeurinoError
from nnunetv2_neurino.swc import SWCTree
from nnunetv2_neurino.tracing.registry import MIN_COMPONENT_SIZE
from nnunetv2_neurino.tracing.trace import foreground_box, forest_from_skeleton, skeleton_points

__all__ = ["DEFAULT_BLOCK", "DEFAULT_HALO", "block_grid", "GlobalComponents", "label_components",
           "trace_large"]

#: Default core size (z, y, x) in voxels.
DEFAULT_BLOCK = 128
#: Default tracing halo in voxels (see the module docstring: meant for neurite radii up to ~8 voxels).
DEFAULT_HALO = 32


def _as_triple(value, name: str) -> np.ndarray:
    arr = np.broadcast_to(np.asarray(value, dtype=np.int64), (3,)).copy()
    if np.any(arr < 0) or (name == "block" and np.any(arr < 1)):
        raise NeurinoError(f"{name} must be positive voxel counts (z, y, x), got {value}")
    return arr


def block_grid(shape: Sequence[int], block) -> list[tuple[np.ndarray, np.ndarray]]:
    """Task list: the (lo, hi) corners of every core, cores of ``block`` voxels in C order.

    Parameters
    ----------
    shape : (Z, Y, X) volume shape.
    block : int or (z, y, x) core size; cores at the far faces are clipped by the volume.

    Returns
    -------
    list of (lo, hi) int64 (3,) arrays, ``hi`` exclusive.
    """
    shape = np.asarray(shape, dtype=np.int64)
    block = _as_triple(block, "block")
    starts = [range(0, int(s), int(b)) for s, b in zip(shape, block)]
    return [(np.array(lo), np.minimum(np.array(lo) + block, shape)) for lo in itertools.product(*starts)]


def _region(lo: np.ndarray, hi: np.ndarray) -> tuple[slice, slice, slice]:
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))


def _foreground(mask_array, lo, hi, threshold: float | None) -> np.ndarray:
    """bool foreground of ``mask_array[lo:hi]``: ``> threshold`` for a probability map, else ``!= 0``."""
    values = np.asarray(mask_array[_region(lo, hi)])
    if threshold is not None:
        return values > threshold
    return values != 0


@dataclass
class GlobalComponents:
    """26-connected components of a block-wise labelled volume.

    Attributes
    ----------
    labels : zarr-like uint32 or uint64 (Z, Y, X) per-core labels with global ids (0 = background).
    component : int64 (L + 1,) joined component of each global label (entry 0 unused).
    size : int64 (C,) voxel count of each joined component.
    keep : bool (L + 1,) whether a label's component has at least ``min_component_size`` voxels.
    block_labels : int64 (B, 2) ``[first, stop)`` global label ids of each core of :func:`block_grid`
        (empty range for a core without foreground): a core has kept voxels iff ``keep[first:stop]``
        has a True, known without reading the core again.
    """

    labels: object
    component: np.ndarray
    size: np.ndarray
    keep: np.ndarray
    block_labels: np.ndarray

    def block_has_kept(self, task: int) -> bool:
        """Whether core ``task`` (index into :func:`block_grid`) holds a voxel that passes the size rule."""
        first, stop = self.block_labels[task]
        return bool(self.keep[first:stop].any())

    def foreground(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """bool (region shape) voxels of ``[lo, hi)`` whose component passes the size rule."""
        return self.keep[np.asarray(self.labels[_region(lo, hi)])]


def label_components(mask_array, block, min_component_size: int = 1, threshold: float | None = None,
                     store=None, progress: bool = True) -> GlobalComponents:
    """Passes 1 and 2: global 26-connected components and the minimum-size rule, block by block.

    Parameters
    ----------
    mask_array : zarr-like or numpy (Z, Y, X) mask (non-zero = foreground) or probability map.
    block : int or (z, y, x) core size in voxels.
    min_component_size : components with fewer voxels are dropped (``keep`` False).
    threshold : foreground = value > threshold (probability maps); None: value != 0.
    store : zarr store or path for the label array (default: an in-memory store).
    progress : show tqdm bars over blocks.

    Returns
    -------
    GlobalComponents.
    """
    import zarr

    shape = tuple(int(s) for s in mask_array.shape)
    tasks = block_grid(shape, block)
    chunks = tuple(int(b) for b in np.minimum(_as_triple(block, "block"), np.maximum(shape, 1)))
    # global ids never exceed the voxel count: uint32 (half the reads of pass 3) unless that could overflow
    dtype = np.uint32 if int(np.prod(shape, dtype=np.int64)) < 2 ** 32 - 1 else np.uint64
    labels = zarr.create_array(store=store if store is not None else zarr.storage.MemoryStore(),
                               shape=shape, chunks=chunks, dtype=dtype, fill_value=0, overwrite=True)
    counts = [np.zeros(1, np.int64)]
    block_labels = np.ones((len(tasks), 2), np.int64)       # [1, 1): no labels
    n_labels = 0
    for task, (lo, hi) in enumerate(tqdm(tasks, desc="trace-large: label", unit="block",
                                         disable=not progress)):
        fg = _foreground(mask_array, lo, hi, threshold)
        if not fg.any():
            continue
        local, n = cc3d.connected_components(fg, connectivity=26, return_N=True)
        glob = local.astype(dtype)
        glob[fg] += dtype(n_labels)
        labels[_region(lo, hi)] = glob
        counts.append(np.bincount(local.reshape(-1), minlength=n + 1)[1:].astype(np.int64))
        block_labels[task] = (n_labels + 1, n_labels + 1 + int(n))
        n_labels += int(n)
    size_of_label = np.concatenate(counts)

    pairs = []
    for lo, hi in tqdm(tasks, desc="trace-large: join", unit="block", disable=not progress):
        grown_lo = np.maximum(lo - 1, 0)
        if np.all(grown_lo == lo):
            continue
        glob = np.asarray(labels[_region(grown_lo, hi)])
        fg = glob > 0
        if not fg.any():
            continue
        local = cc3d.connected_components(fg, connectivity=26)
        loc, lab = local[fg].astype(np.int64), glob[fg].astype(np.int64)
        pair = np.unique(np.stack([loc, lab], axis=1), axis=0)       # sorted by grown-core component
        same = pair[1:, 0] == pair[:-1, 0]
        pairs.append(np.stack([pair[:-1, 1][same], pair[1:, 1][same]], axis=1))
    edges = np.concatenate(pairs) if pairs else np.zeros((0, 2), np.int64)
    graph = sp.coo_matrix((np.ones(edges.shape[0]), (edges[:, 0], edges[:, 1])),
                          shape=(n_labels + 1, n_labels + 1))
    _, component = connected_components(graph, directed=False)
    component = component.astype(np.int64)
    size = np.bincount(component, weights=size_of_label, minlength=int(component.max()) + 1).astype(np.int64)
    keep = size[component] >= max(int(min_component_size), 1)
    keep[0] = False
    return GlobalComponents(labels, component, size, keep, block_labels)


def trace_large(mask_array, spacing: Sequence[float] = (1.0, 1.0, 1.0), block=DEFAULT_BLOCK,
                halo=DEFAULT_HALO, min_component_size: int = MIN_COMPONENT_SIZE,
                threshold: float | None = None, root: Sequence[float] | None = None,
                prune_length: float = 0.0, resample_step: int = 1,
                workdir: str | None = None, progress: bool = True) -> SWCTree:
    """Trace a (possibly larger than memory) mask block by block into the forest ``trace_mask`` gives.

    Parameters
    ----------
    mask_array : zarr-like or numpy (Z, Y, X) array with numpy slicing: mask (non-zero = foreground) or,
        with ``threshold``, a probability map.
    spacing : (z, y, x) voxel size (radii, edge lengths, root search), as for ``trace_mask``.
    block : int or (z, y, x) core size in voxels (default 128).
    halo : int or (z, y, x) tracing margin around each core in voxels (default 32); at least the largest
        neurite radius expected for results identical to ``trace_mask`` (see the module docstring).
    min_component_size : 26-connected components of the whole volume with fewer voxels are removed.
    threshold : foreground = value > threshold; None: value != 0.
    root, prune_length, resample_step : as for :func:`nnunetv2_neurino.tracing.trace.trace_mask`.
    workdir : folder for the temporary label store (default: a temporary folder, removed at the end).
    progress : show tqdm bars over blocks.

    Returns
    -------
    SWCTree with (x, y, z) 0-based voxel coordinates of the whole volume, ids 1..N, one tree per skeleton
    component.
    """
    if getattr(mask_array, "ndim", len(getattr(mask_array, "shape", ()))) != 3:
        raise NeurinoError(f"trace-large: expected a 3D (z, y, x) array, got shape {mask_array.shape}")
    halo = _as_triple(halo, "halo")
    shape = np.asarray(mask_array.shape, dtype=np.int64)
    with tempfile.TemporaryDirectory(prefix="neurino-trace-large-", dir=workdir) as tmp:
        comps = label_components(mask_array, block, min_component_size, threshold,
                                 store=f"{tmp}/labels.zarr", progress=progress)
        zyx_parts, radius_parts = [], []
        for task, (lo, hi) in enumerate(tqdm(block_grid(shape, block), desc="trace-large: skeleton",
                                             unit="block", disable=not progress)):
            if not comps.block_has_kept(task):      # from pass 1's label ranges: no read
                continue
            rlo, rhi = np.maximum(lo - halo, 0), np.minimum(hi + halo, shape)
            fg = comps.foreground(rlo, rhi)
            # crop to the foreground's box + 1 voxel, as trace_mask does: same skeleton and radii, and
            # thinning time follows the foreground, not the block, on sparse neurons
            box_lo, box_hi = foreground_box(fg)
            zyx, radius = skeleton_points(np.ascontiguousarray(fg[_region(box_lo, box_hi)]), spacing)
            zyx += rlo + box_lo
            inside = np.all((zyx >= lo) & (zyx < hi), axis=1)
            zyx_parts.append(zyx[inside])
            radius_parts.append(radius[inside])
    if not zyx_parts:
        return SWCTree.empty()
    zyx, radius = np.concatenate(zyx_parts), np.concatenate(radius_parts)
    order = np.lexsort((zyx[:, 2], zyx[:, 1], zyx[:, 0]))      # C order, as np.argwhere on the whole volume
    return forest_from_skeleton(zyx[order], radius[order], spacing, root, prune_length, resample_step)
