"""Differentiable TASL — this package's own differentiable topology-aware structure loss (suppl. §6).

``DifferentiableTASL(lambda_node=1.0, lambda_edge=0.5, lambda_path=0.5, tau=0.1, n_pairs=4,
dilation_radius=3)``, ``forward(prob_fg, node_ids, branch_ids) -> Tensor[]`` with
``prob_fg`` (B, Z, Y, X) float foreground probability (with grad) and the ground-truth graph maps made by
:class:`transforms.TopologyGraphTransform` (B, Z, Y, X) integer ids (0 = none):
- L_node = 1 − mean over GT nodes of MaxPool3d_3(p) at the node (node recall; a node cluster's value is
  the mean over its voxels);
- L_edge = mean over GT branches of (1 − softmin_τ(MaxPool3d_3(p) along the branch)),
  softmin_τ(x) = −τ·log(mean exp(−x/τ)), via ``index_add_``/``scatter_reduce`` over branch ids;
- L_path = mean over K sampled GT node pairs joined by the skeleton of mean (1−p)² along the cheapest
  path on the detached cost 1−p inside the GT path dilated by r_d voxels (Dijkstra-type minimum-cost
  path, ``skimage.graph.MCP_Geometric``, on the CPU).
Each term is in [0, 1] and is a per-sample value averaged over the batch; a sample without GT skeleton
contributes 0 to every term (and still counts in the batch mean, so DDP gradient averaging over equal
half batches equals the single-process gradient). Computed in float32 with autocast disabled.
The per-term functions :func:`node_loss`, :func:`edge_loss`, :func:`sample_path_indices` and
:func:`path_loss_from_indices` are public for tests and custom trainers.

The official (gradient-scaling) TASL is in :mod:`.tasl_official`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from skimage.graph import MCP_Geometric

from nnunetv2_neurino.errors import NeurinoError


def _max_pool3(prob: torch.Tensor) -> torch.Tensor:
    """MaxPool with a 3-wide window, stride 1, same size; prob of shape (B, Z, Y, X) or (B, Y, X)."""
    if prob.ndim == 4:
        return F.max_pool3d(prob[:, None], 3, stride=1, padding=1)[:, 0]
    if prob.ndim == 3:
        return F.max_pool2d(prob[:, None], 3, stride=1, padding=1)[:, 0]
    raise NeurinoError(f"expected a probability map (B, Z, Y, X) or (B, Y, X), got {tuple(prob.shape)}")


def _segments(ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Flatten per-sample integer ids (B, ...) into global segments.

    Returns (selected flat voxel indices, segment index per selected voxel, sample index per segment,
    number of segments).
    """
    b = ids.shape[0]
    flat = ids.reshape(b, -1).long()
    width = int(flat.max().item()) + 1 if flat.numel() else 1
    glob = flat + torch.arange(b, device=ids.device)[:, None] * width
    voxel = torch.nonzero(flat.reshape(-1) > 0).squeeze(1)
    uniq, inverse = torch.unique(glob.reshape(-1)[voxel], return_inverse=True)
    return voxel, inverse, torch.div(uniq, width, rounding_mode="floor"), len(uniq)


def _per_sample_mean(values: torch.Tensor, sample: torch.Tensor, batch: int) -> torch.Tensor:
    """Mean of per-segment ``values`` for every sample; 0 for samples without segments. Shape (B,)."""
    total = torch.zeros(batch, dtype=values.dtype, device=values.device).index_add(0, sample, values)
    count = torch.zeros(batch, dtype=values.dtype, device=values.device).index_add(
        0, sample, torch.ones_like(values))
    return total / count.clamp(min=1)


def node_loss(pooled: torch.Tensor, node_ids: torch.Tensor) -> torch.Tensor:
    """Per-sample node term 1 − mean over GT nodes of the pooled probability.

    Parameters
    ----------
    pooled : Tensor (B, Z, Y, X) float — MaxPool3d_3 of the foreground probability.
    node_ids : Tensor (B, Z, Y, X) integer — node cluster ids (0 = none), per sample.

    Returns
    -------
    Tensor (B,): 0 for samples without nodes.
    """
    voxel, seg, sample, n = _segments(node_ids)
    x = pooled.reshape(-1)[voxel]
    zeros = torch.zeros(n, dtype=x.dtype, device=x.device)
    mean = zeros.index_add(0, seg, x) / zeros.index_add(0, seg, torch.ones_like(x))
    return _per_sample_mean(1.0 - mean, sample, pooled.shape[0])


def edge_loss(pooled: torch.Tensor, branch_ids: torch.Tensor, tau: float = 0.1) -> torch.Tensor:
    """Per-sample edge term: mean over GT branches of 1 − softmin_τ(pooled along the branch).

    softmin_τ(x) = −τ·log(mean exp(−x/τ)), evaluated stably as m − τ·log(mean exp(−(x−m)/τ)) with m the
    (detached) branch minimum; it lies between the branch minimum and the branch mean.

    Parameters
    ----------
    pooled : Tensor (B, Z, Y, X) float — MaxPool3d_3 of the foreground probability.
    branch_ids : Tensor (B, Z, Y, X) integer — branch ids (0 = none), per sample.
    tau : float — softmin temperature.

    Returns
    -------
    Tensor (B,): 0 for samples without branches.
    """
    voxel, seg, sample, n = _segments(branch_ids)
    x = pooled.reshape(-1)[voxel]
    big = torch.full((n,), float("inf"), dtype=x.dtype, device=x.device)
    m = big.scatter_reduce(0, seg, x.detach(), reduce="amin", include_self=True)
    zeros = torch.zeros(n, dtype=x.dtype, device=x.device)
    s = zeros.index_add(0, seg, torch.exp(-(x - m[seg]) / tau))
    count = zeros.index_add(0, seg, torch.ones_like(x))
    softmin = m - tau * torch.log(s / count)
    return _per_sample_mean(1.0 - softmin, sample, pooled.shape[0])


def _node_representatives(node_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One voxel index (flat) per node id; returns (ids, flat indices)."""
    flat = node_ids.reshape(-1)
    nz = np.flatnonzero(flat)
    ids, first = np.unique(flat[nz], return_index=True)
    return ids, nz[first]


def _min_cost_path(cost: np.ndarray, start: tuple, end: tuple) -> np.ndarray | None:
    """Voxels (K, ndim) of the cheapest 26-connected path on ``cost`` (inf = impassable), or None."""
    mcp = MCP_Geometric(cost, fully_connected=True)
    cumulative, _ = mcp.find_costs([start], [end])
    if not np.isfinite(cumulative[end]):
        return None
    return np.asarray(mcp.traceback(end))


def sample_path_indices(
    prob_fg: np.ndarray,
    node_ids: np.ndarray,
    branch_ids: np.ndarray,
    n_pairs: int = 4,
    dilation_radius: float = 3.0,
    rng: np.random.Generator | None = None,
    eps: float = 1e-3,
) -> list[np.ndarray]:
    """Cheapest-path voxels for K ground-truth node pairs of one sample (CPU, numpy).

    Pairs of distinct nodes in the same skeleton component are drawn at random. For each pair the GT
    path is the shortest 26-connected route along the skeleton; the search region is that path dilated
    by ``dilation_radius`` voxels (Euclidean); the returned route is the minimum-cost path on the cost
    ``1 − p + eps`` inside the region.

    Parameters
    ----------
    prob_fg : ndarray float (Z, Y, X) — detached foreground probability.
    node_ids, branch_ids : ndarray int (Z, Y, X) — maps of :func:`skeleton_utils.skeleton_graph_maps`.
    n_pairs : int — K.
    dilation_radius : float — r_d in voxels.
    rng : numpy Generator, optional — for reproducible sampling.
    eps : float — cost floor so that a confident prediction still prefers short routes.

    Returns
    -------
    list of int64 arrays of flat voxel indices, one per pair found (possibly fewer than K, or none
    when the skeleton has no two connected nodes).
    """
    rng = np.random.default_rng() if rng is None else rng
    skel = (node_ids > 0) | (branch_ids > 0)
    if not skel.any():
        return []
    comp = ndimage.label(skel, structure=np.ones((3,) * skel.ndim))[0]
    ids, rep = _node_representatives(node_ids)
    if len(ids) < 2:
        return []
    rep_comp = comp.reshape(-1)[rep]
    same = [np.flatnonzero(rep_comp == c) for c in np.unique(rep_comp)]
    pools = [s for s in same if len(s) >= 2]
    if not pools:
        return []
    sizes = np.array([len(s) for s in pools], dtype=float)
    skel_cost = np.where(skel, 1.0, np.inf)
    paths = []
    for _ in range(n_pairs):
        pool = pools[rng.choice(len(pools), p=sizes / sizes.sum())]
        a, b = rng.choice(pool, size=2, replace=False)
        start = np.unravel_index(rep[a], skel.shape)
        end = np.unravel_index(rep[b], skel.shape)
        gt_path = _min_cost_path(skel_cost, start, end)
        if gt_path is None:
            continue
        lo = np.maximum(gt_path.min(0) - int(np.ceil(dilation_radius)), 0)
        hi = np.minimum(gt_path.max(0) + int(np.ceil(dilation_radius)) + 1, skel.shape)
        box = tuple(slice(int(a_), int(b_)) for a_, b_ in zip(lo, hi))
        seed = np.ones([h - l_ for l_, h in zip(lo, hi)], dtype=bool)
        seed[tuple((gt_path - lo).T)] = False
        corridor = ndimage.distance_transform_edt(seed) <= dilation_radius
        cost = np.where(corridor, 1.0 - prob_fg[box] + eps, np.inf)
        route = _min_cost_path(cost, tuple(np.subtract(start, lo)), tuple(np.subtract(end, lo)))
        if route is None:
            continue
        paths.append(np.ravel_multi_index(tuple((route + lo).T), skel.shape).astype(np.int64))
    return paths


def path_loss_from_indices(prob_fg: torch.Tensor, paths: Sequence[Sequence[np.ndarray]]) -> torch.Tensor:
    """Per-sample path term: mean over pairs of mean (1 − p)² along each path.

    Parameters
    ----------
    prob_fg : Tensor (B, Z, Y, X) float.
    paths : for each sample, a list of flat voxel-index arrays (from :func:`sample_path_indices`).

    Returns
    -------
    Tensor (B,): 0 for samples without paths.
    """
    b = prob_fg.shape[0]
    flat = prob_fg.reshape(b, -1)
    values = []
    for i in range(b):
        if len(paths[i]) == 0:
            values.append(flat.new_zeros(()))
            continue
        idx = torch.from_numpy(np.concatenate(paths[i])).to(prob_fg.device)
        pair = torch.from_numpy(np.repeat(np.arange(len(paths[i])), [len(p) for p in paths[i]])).to(
            prob_fg.device)
        err = (1.0 - flat[i, idx]) ** 2
        zeros = flat.new_zeros(len(paths[i]))
        per_pair = zeros.index_add(0, pair, err) / zeros.index_add(0, pair, torch.ones_like(err))
        values.append(per_pair.mean())
    return torch.stack(values)


class DifferentiableTASL(torch.nn.Module):
    """Differentiable TASL = λn·L_node + λe·L_edge + λp·L_path (see the module docstring).

    Settings are class attributes (override in a subclass or pass to ``__init__``): ``lambda_node = 1.0``,
    ``lambda_edge = 0.5``, ``lambda_path = 0.5``, ``tau = 0.1``, ``n_pairs = 4`` (K),
    ``dilation_radius = 3.0`` (r_d). ``seed`` makes the pair sampling reproducible.

    ``forward(prob_fg, node_ids, branch_ids)``: prob_fg (B, Z, Y, X) float foreground probability,
    node_ids / branch_ids (B, Z, Y, X) integer maps; returns a 0-d tensor and stores the per-term batch
    means (floats) in ``self.last_terms``.
    """

    lambda_node: float = 1.0
    lambda_edge: float = 0.5
    lambda_path: float = 0.5
    tau: float = 0.1
    n_pairs: int = 4
    dilation_radius: float = 3.0

    def __init__(self, seed: int | None = None, **overrides: float) -> None:
        super().__init__()
        for key, value in overrides.items():
            if not hasattr(type(self), key):
                raise NeurinoError(f"DifferentiableTASL has no setting {key!r}")
            setattr(self, key, value)
        self.rng = np.random.default_rng(seed)
        self.last_terms: dict[str, float] = {}

    def terms(self, prob_fg: torch.Tensor, node_ids: torch.Tensor, branch_ids: torch.Tensor) -> dict:
        """Per-sample terms ``{'node': Tensor[B], 'edge': Tensor[B], 'path': Tensor[B]}`` (float32)."""
        if prob_fg.shape != node_ids.shape or prob_fg.shape != branch_ids.shape:
            raise NeurinoError(
                f"DifferentiableTASL: prob_fg {tuple(prob_fg.shape)}, node_ids {tuple(node_ids.shape)} and "
                f"branch_ids {tuple(branch_ids.shape)} must have the same shape")
        with torch.autocast(device_type=prob_fg.device.type, enabled=False):
            p = prob_fg.float() if prob_fg.dtype not in (torch.float32, torch.float64) else prob_fg
            pooled = _max_pool3(p)
            node = node_loss(pooled, node_ids)
            edge = edge_loss(pooled, branch_ids, self.tau)
            if self.lambda_path != 0:
                p_np = p.detach().to("cpu", torch.float32).numpy()
                n_np = node_ids.detach().cpu().numpy()
                b_np = branch_ids.detach().cpu().numpy()
                paths = [sample_path_indices(p_np[i], n_np[i], b_np[i], self.n_pairs, self.dilation_radius,
                                             self.rng) for i in range(p.shape[0])]
                path = path_loss_from_indices(p, paths)
            else:
                path = torch.zeros_like(node)
        return {"node": node, "edge": edge, "path": path}

    def forward(self, prob_fg: torch.Tensor, node_ids: torch.Tensor, branch_ids: torch.Tensor
                ) -> torch.Tensor:
        t = self.terms(prob_fg, node_ids, branch_ids)
        self.last_terms = {k: float(v.detach().mean()) for k, v in t.items()}
        total = self.lambda_node * t["node"] + self.lambda_edge * t["edge"] + self.lambda_path * t["path"]
        return total.mean()
