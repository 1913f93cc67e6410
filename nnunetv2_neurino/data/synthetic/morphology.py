"""Neuron morphologies for the synthetic data set: a seeded branching generator, and user SWCs fitted
into the volume.

All growth happens in *physical* coordinates (array index × spacing, order z, y, x) so that an anisotropic
volume (e.g. z spacing 2) still gets round, isotropically tortuous neurites. The trees returned are
image-space :class:`~nnunetv2_neurino.swc.SWCTree` objects: 0-based voxel coordinates, columns x, y, z
(x = last array axis), radii in voxels of the finest axis (the convention of
:func:`~nnunetv2_neurino.data.render.render_swc` in voxel mode). Coordinates and radii are rounded to
3 decimals so that the SWC written to disk (6 decimals) holds exactly the tree that was rendered.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from nnunetv2_neurino.errors import NeurinoError
from nnunetv2_neurino.swc import AXON, BASAL_DENDRITE, SOMA, SWCTree

__all__ = ["MorphologyParams", "generate_neuron", "generate_fibre", "fit_tree_to_volume",
           "crop_tree_to_volume", "physical_box"]

_DECIMALS = 3


@dataclass(frozen=True)
class MorphologyParams:
    """Parameters of the branching generator (lengths and radii in physical units, i.e. voxels of
    spacing 1).

    Attributes
    ----------
    n_primary : (min, max) number of primary neurites leaving the soma (inclusive).
    soma_radius : (min, max) soma radius.
    primary_radius : (min, max) radius of a primary neurite at the soma.
    min_radius : radii never shrink below this (thin distal neurites; the label floor is separate).
    step : distance between consecutive nodes.
    tortuosity : standard deviation of the change of direction per step (radians, roughly); 0 gives
        straight neurites.
    persistence : correlation of the change of direction between consecutive steps (0..1): high values
        give smooth arcs, 0 a jagged random walk.
    branch_probability : chance per step that a side branch starts.
    branch_angle : (min, max) angle between a side branch and its parent, degrees.
    child_radius_ratio : (min, max) side-branch radius / parent radius at the branch point.
    radius_decay : factor applied to the radius at every step (tapering).
    max_order : branches of this order (primary = 1) do not branch further.
    primary_length : (min, max) length of a primary neurite as a fraction of the box diagonal.
    branch_length : (min, max) length of a side branch as a fraction of the box diagonal.
    max_nodes : stop growing once the tree has this many nodes.
    """

    n_primary: tuple[int, int] = (3, 6)
    soma_radius: tuple[float, float] = (2.5, 4.0)
    primary_radius: tuple[float, float] = (1.2, 2.0)
    min_radius: float = 0.7
    step: float = 1.5
    tortuosity: float = 0.08
    persistence: float = 0.8
    branch_probability: float = 0.07
    branch_angle: tuple[float, float] = (25.0, 70.0)
    child_radius_ratio: tuple[float, float] = (0.6, 0.85)
    radius_decay: float = 0.995
    max_order: int = 4
    primary_length: tuple[float, float] = (0.5, 1.0)
    branch_length: tuple[float, float] = (0.15, 0.45)
    max_nodes: int = 4000


def physical_box(shape: tuple[int, int, int], spacing) -> np.ndarray:
    """(3,) physical coordinate of the last voxel centre, order z, y, x (the box is [0, this])."""
    return (np.asarray(shape, float) - 1.0) * np.asarray(spacing, float)


def _unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v)
    return v / n if n > 1e-12 else np.array([0.0, 0.0, 1.0])


def _random_direction(rng: np.random.Generator) -> np.ndarray:
    return _unit(rng.normal(size=3))


def _deflect(direction: np.ndarray, angle: float, rng: np.random.Generator) -> np.ndarray:
    """``direction`` rotated by ``angle`` (radians) towards a random perpendicular direction."""
    perp = rng.normal(size=3)
    perp -= perp.dot(direction) * direction
    perp = _unit(perp)
    return _unit(np.cos(angle) * direction + np.sin(angle) * perp)


class _Grower:
    """Accumulates nodes (physical zyx, radius, parent index, type) while walking neurites."""

    def __init__(self, box: np.ndarray, params: MorphologyParams, rng: np.random.Generator):
        self.box, self.p, self.rng = box, params, rng
        self.pos: list[np.ndarray] = []
        self.radius: list[float] = []
        self.parent: list[int] = []
        self.types: list[int] = []

    def add(self, pos: np.ndarray, radius: float, parent: int, kind: int) -> int:
        self.pos.append(np.asarray(pos, float))
        self.radius.append(float(radius))
        self.parent.append(int(parent))
        self.types.append(int(kind))
        return len(self.pos) - 1

    def inside(self, pos: np.ndarray) -> bool:
        return bool(np.all(pos >= 0.0) and np.all(pos <= self.box))

    def walk(self, start: int, direction: np.ndarray, radius: float, length: float, order: int,
             kind: int, branching: bool = True) -> None:
        """Grow one neurite from node ``start``; side branches are queued and grown depth-first.

        A neurite ends after ``length``, or where it leaves the box (a last node is put on the face it
        crosses, as in a crop of a larger neuron).
        """
        p, rng = self.p, self.rng
        stack = [(start, direction, radius, length, order)]
        while stack:
            node, d, r, remaining, order = stack.pop()
            bend = np.zeros(3)     # smooth curvature: an autoregressive change of direction per step
            while remaining > 0 and len(self.pos) < p.max_nodes:
                bend = p.persistence * bend + np.sqrt(1.0 - p.persistence ** 2) * p.tortuosity * \
                    rng.normal(size=3)
                bend -= bend.dot(d) * d
                d = _unit(d + bend)
                r = max(p.min_radius, r * p.radius_decay)
                new = self.pos[node] + p.step * d
                if not self.inside(new):
                    # put the last node on the face where the neurite leaves the volume
                    t = np.where(d > 1e-12, (self.box - self.pos[node]) / np.maximum(d, 1e-12),
                                 np.where(d < -1e-12, -self.pos[node] / np.minimum(d, -1e-12), np.inf))
                    t_exit = float(np.clip(t.min(), 0.0, p.step))
                    if t_exit > 0.25:
                        self.add(np.clip(self.pos[node] + t_exit * d, 0.0, self.box), r, node, kind)
                    break
                node = self.add(new, r, node, kind)
                remaining -= p.step
                if (branching and order < p.max_order and r > 1.5 * p.min_radius
                        and rng.random() < p.branch_probability):
                    angle = np.deg2rad(rng.uniform(*p.branch_angle))
                    child_dir = _deflect(d, angle, rng)
                    child_r = max(p.min_radius, r * rng.uniform(*p.child_radius_ratio))
                    diag = float(np.linalg.norm(self.box))
                    child_len = diag * rng.uniform(*p.branch_length)
                    stack.append((node, child_dir, child_r, child_len, order + 1))
                    r *= 0.9
                    d = _deflect(d, -0.3 * angle, rng)  # the parent bends away a little

    def tree(self, spacing, source: str) -> SWCTree:
        spacing = np.asarray(spacing, float)
        zyx = np.round(np.array(self.pos).reshape(-1, 3) / spacing, _DECIMALS)
        radius = np.round(np.array(self.radius) / spacing.min(), _DECIMALS)
        return SWCTree.from_zyx(zyx, np.array(self.parent), radius=radius, types=np.array(self.types),
                                source=source)


def generate_neuron(shape: tuple[int, int, int], spacing=(1.0, 1.0, 1.0),
                    rng: np.random.Generator | None = None, params: MorphologyParams | None = None,
                    soma_zyx: np.ndarray | None = None) -> SWCTree:
    """A random neuron: a soma (one type-1 root node) with several branching, tapering, tortuous neurites.

    Parameters
    ----------
    shape : (Z, Y, X) volume size in voxels; the neuron stays inside it (neurites that reach a face stop
        there, like a crop of a larger cell).
    spacing : (z, y, x) voxel size; growth is isotropic in physical space.
    rng : random generator (the result is a deterministic function of its state).
    params : growth parameters (:class:`MorphologyParams`).
    soma_zyx : soma position in voxels (z, y, x); default uniform in the central half of the volume.

    Returns
    -------
    SWCTree in image-space voxel coordinates (x, y, z columns), one root (the soma, type 1), neurites of
    type 3 (one primary neurite of type 2, an "axon"), radii in voxels of the finest axis.
    """
    rng = np.random.default_rng() if rng is None else rng
    params = MorphologyParams() if params is None else params
    spacing = np.asarray(spacing, float)
    if min(shape) < 2:
        raise NeurinoError(f"volume shape {tuple(shape)} is too small for a neuron (need >= 2 per axis)")
    box = physical_box(shape, spacing)
    g = _Grower(box, params, rng)
    if soma_zyx is None:
        soma = rng.uniform(0.25, 0.75, 3) * box
    else:
        soma = np.clip(np.asarray(soma_zyx, float) * spacing, 0.0, box)
    soma_r = min(rng.uniform(*params.soma_radius), 0.2 * float(box.min()) + 0.5)
    root = g.add(soma, soma_r, -1, SOMA)
    n_primary = int(rng.integers(params.n_primary[0], params.n_primary[1] + 1))
    # spread the primary directions: random directions pushed apart by a few repulsion steps
    dirs = np.array([_random_direction(rng) for _ in range(n_primary)])
    for _ in range(10):
        diff = dirs[:, None, :] - dirs[None, :, :]
        dist2 = np.sum(diff * diff, -1) + np.eye(n_primary)
        dirs = dirs + 0.1 * np.sum(diff / dist2[..., None] ** 1.5, axis=1)
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    diag = float(np.linalg.norm(box))
    axon = int(rng.integers(n_primary))
    for k, d in enumerate(dirs):
        start = soma + soma_r * d
        if not g.inside(start):
            continue
        r0 = rng.uniform(*params.primary_radius)
        first = g.add(start, r0, root, AXON if k == axon else BASAL_DENDRITE)
        g.walk(first, d, r0, diag * rng.uniform(*params.primary_length), 1,
               AXON if k == axon else BASAL_DENDRITE)
    return g.tree(spacing, "<synthetic neuron>")


def generate_fibre(shape: tuple[int, int, int], spacing=(1.0, 1.0, 1.0),
                   rng: np.random.Generator | None = None, params: MorphologyParams | None = None,
                   radius: tuple[float, float] = (0.7, 1.4)) -> SWCTree:
    """An unbranched passing fibre (a neighbour's neurite) that crosses the whole volume.

    It enters on a random face at a random point, heads for a random point of the opposite face with
    the generator's persistence/tortuosity, and leaves the volume. Same coordinate conventions as
    :func:`generate_neuron`; one root, type 3.
    """
    rng = np.random.default_rng() if rng is None else rng
    params = MorphologyParams() if params is None else params
    spacing = np.asarray(spacing, float)
    box = physical_box(shape, spacing)
    axis = int(rng.integers(3))
    start, end = rng.uniform(0.1, 0.9, 3) * box, rng.uniform(0.1, 0.9, 3) * box
    if rng.random() < 0.5:
        start[axis], end[axis] = 0.0, box[axis]
    else:
        start[axis], end[axis] = box[axis], 0.0
    smooth = replace(params, persistence=max(params.persistence, 0.9), radius_decay=1.0)
    g = _Grower(box, smooth, rng)
    r = rng.uniform(*radius)
    first = g.add(start, r, -1, BASAL_DENDRITE)
    g.walk(first, _unit(end - start), r, 3.0 * float(np.linalg.norm(box)), 1, BASAL_DENDRITE,
           branching=False)
    return g.tree(spacing, "<synthetic fibre>")


def fit_tree_to_volume(tree: SWCTree, shape: tuple[int, int, int], spacing=(1.0, 1.0, 1.0),
                       rng: np.random.Generator | None = None, margin: float = 2.0,
                       rotate: bool = True, min_radius: float = 0.7) -> SWCTree:
    """Place a reconstruction (any unit, isotropic) into the volume: random rotation, uniform scaling so its
    bounding box fits inside with ``margin`` voxels to spare, centred.

    Parameters
    ----------
    tree : the morphology (e.g. a CWMBS gold standard); its x, y, z columns are read as isotropic
        physical coordinates. Several roots (a cropped reconstruction) are kept as a forest.
    shape, spacing : the target volume (z, y, x).
    rng : random generator for the rotation.
    margin : free border in voxels of the finest axis.
    rotate : apply a uniformly random 3D rotation first.
    min_radius : smallest radius after scaling (voxels of the finest axis): a large reconstruction shrunk
        into a small volume would otherwise get sub-voxel neurites that emit almost no light.

    Returns
    -------
    SWCTree in image-space voxel coordinates; radii scaled with the tree (in voxels of the finest axis).
    """
    if tree.n == 0:
        raise NeurinoError(f"{tree.source}: the SWC has no nodes")
    rng = np.random.default_rng() if rng is None else rng
    spacing = np.asarray(spacing, float)
    box = physical_box(shape, spacing)
    pts = tree.to_zyx()
    pts = pts - 0.5 * (pts.min(0) + pts.max(0))
    if rotate:
        from scipy.spatial.transform import Rotation

        pts = Rotation.random(random_state=rng).apply(pts)
    extent = pts.max(0) - pts.min(0)
    room = box - 2.0 * margin * spacing.min()
    if np.any(room <= 0):
        raise NeurinoError(f"volume {tuple(shape)} is too small for a margin of {margin} voxels")
    with np.errstate(divide="ignore"):
        scale = float(np.min(np.where(extent > 1e-9, room / np.maximum(extent, 1e-9), np.inf)))
    if not np.isfinite(scale):
        scale = 1.0
    pts = pts * scale - 0.5 * (pts.min(0) + pts.max(0)) * scale + 0.5 * box
    zyx = np.round(pts / spacing, _DECIMALS)
    radius = np.round(np.maximum(tree.radius * scale / spacing.min(), min_radius), _DECIMALS)
    return SWCTree.from_zyx(zyx, tree.parent_index, radius=radius, types=tree.types, source=tree.source)


def _exit_parameter(a: np.ndarray, b: np.ndarray, box: np.ndarray) -> np.ndarray:
    """For segments from ``a`` (inside [0, box]) to ``b`` (outside): the t in [0, 1] where
    ``a + t (b − a)`` leaves the box. a, b: (E, 3); returns (E,)."""
    d = b - a
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(d > 1e-12, (box - a) / d, np.where(d < -1e-12, -a / d, np.inf))
    return np.clip(t.min(axis=1), 0.0, 1.0)


def crop_tree_to_volume(tree: SWCTree, shape: tuple[int, int, int], spacing=(1.0, 1.0, 1.0),
                        rng: np.random.Generator | None = None, scale: float = 1.0, flip: bool = True,
                        tries: int = 20, min_radius: float = 0.7) -> SWCTree:
    """A native-scale window of a reconstruction the size of the volume (a crop, as in a real image
    block of a larger neuron).

    The SWC's x, y, z (times ``scale``) are read as isotropic physical coordinates. The window is placed so
    that a randomly chosen node lies in its central half; of ``tries`` placements the one holding the most
    cable is kept (stopping early once it holds 40 % of the tree's cable or a cable as long as
    3 × the window's largest side). Nodes inside are kept; an edge that crosses a face is cut there (a
    new node on the face); edges with both ends outside are dropped. The result may be a forest (a
    neurite that leaves and re-enters the window gives two pieces).

    Parameters
    ----------
    tree : the morphology.
    shape, spacing : the target volume (z, y, x).
    rng : random generator (window placement, flips).
    scale : physical size of one SWC unit (e.g. 0.5 to shrink a reconstruction twofold).
    flip : mirror x and y at random (each with probability 1/2).
    tries : window placements tried.
    min_radius : smallest radius (voxels of the finest axis).

    Returns
    -------
    SWCTree in image-space voxel coordinates, every node inside the volume.
    """
    if tree.n == 0:
        raise NeurinoError(f"{tree.source}: the SWC has no nodes")
    if not scale > 0:
        raise NeurinoError(f"SWC scale must be positive, got {scale}")
    rng = np.random.default_rng() if rng is None else rng
    spacing = np.asarray(spacing, float)
    box = physical_box(shape, spacing)
    pts = tree.to_zyx() * scale
    if flip:
        for axis in (1, 2):
            if rng.random() < 0.5:
                pts[:, axis] = -pts[:, axis]
    pidx = tree.parent_index
    child = np.flatnonzero(pidx >= 0)
    parent = pidx[child]
    seg_len = np.linalg.norm(pts[child] - pts[parent], axis=1)
    total = float(seg_len.sum())
    enough = min(0.4 * total, 3.0 * float(box.max()))
    best, best_cable = None, -1.0
    for _ in range(max(1, tries)):
        lo = pts[rng.integers(tree.n)] - rng.uniform(0.25, 0.75, 3) * box
        q = pts - lo
        inside = np.all((q >= 0.0) & (q <= box), axis=1)
        cable = float(seg_len[inside[child] & inside[parent]].sum())
        if cable > best_cable:
            best, best_cable = (q, inside), cable
        if cable >= enough:
            break
    q, inside = best
    keep = np.flatnonzero(inside)
    new_index = np.full(tree.n, -1, np.int64)
    new_index[keep] = np.arange(keep.size)
    radius = tree.radius * scale
    # edges leaving the window: child inside, parent outside (A) or the reverse (B)
    a_edges = inside[child] & ~inside[parent]
    b_edges = ~inside[child] & inside[parent]
    ca, pa = child[a_edges], parent[a_edges]
    cb, pb = child[b_edges], parent[b_edges]
    ta = _exit_parameter(q[ca], q[pa], box)[:, None]
    tb = _exit_parameter(q[pb], q[cb], box)[:, None]
    pos = np.concatenate([q[keep], q[ca] + ta * (q[pa] - q[ca]), q[pb] + tb * (q[cb] - q[pb])])
    rad = np.concatenate([radius[keep], radius[ca] + ta[:, 0] * (radius[pa] - radius[ca]),
                          radius[pb] + tb[:, 0] * (radius[cb] - radius[pb])])
    types = np.concatenate([tree.types[keep], tree.types[ca], tree.types[cb]])
    n_keep, n_a = keep.size, ca.size
    par = np.where(pidx[keep] >= 0, new_index[np.maximum(pidx[keep], 0)], -1)
    par[new_index[ca]] = n_keep + np.arange(n_a)          # the cut point becomes the piece's root
    par = np.concatenate([par, np.full(n_a, -1, np.int64), new_index[pb]])
    if pos.shape[0] == 0:
        raise NeurinoError(f"{tree.source}: no part of the reconstruction falls inside the volume")
    zyx = np.round(np.clip(pos, 0.0, box) / spacing, _DECIMALS)
    radius_vox = np.round(np.maximum(rad / spacing.min(), min_radius), _DECIMALS)
    return SWCTree.from_zyx(zyx, par, radius=radius_vox, types=types, source=tree.source)
