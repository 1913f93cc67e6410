"""Official TASL — topology-aware structure loss as the released NeurINO code computes it (paper, suppl. §6).

The official TASL has no gradient of its own: it scales the gradient of Dice + CE.

``tasl_official_terms(pred_fg, gt_fg, distance_clip=10) -> (D_node, D_edge, D_path)``
    One batch item, CPU/numpy. Skeletonize prediction and ground truth (``skimage`` via
    :func:`skeleton_utils.skeletonize_robust`), dilate by ``ball(1)`` and mask by the segmentation →
    voxel sets V_p, V_g; edges = voxel pairs within distance 2 (``cKDTree.query_pairs(r=2)``);
    components = connected components of that graph (``scipy.sparse.csgraph``).
    D_node = ½(mean_{a∈V_p} min_g‖a−g‖ + mean_{g∈V_g} min_a‖g−a‖), distances clipped at 10 voxels;
    D_edge = ||E_g|−|E_p|| / |E_g|; D_path = |mean comp size(G_g) − mean comp size(G_p)| / mean comp
    size(G_g). Degenerate rules: both sets empty → (0, 0, 0); exactly one empty → (10, 1, 1) (so an empty
    prediction scores worse than a broken one, unlike the released code); no GT edges → D_edge = 1 if the
    prediction has edges, else 0.
``tasl_official(prob_fg, target_fg, lambdas=(1.0, 0.5, 0.5)) -> Tensor[B]``
    Per-item λn·D_node + λe·D_edge + λp·D_path for a batch (threshold p > 0.5), float32 on the CPU.
``OfficialTASL``
    ``compute(prob_fg_detached, target_fg) -> Tensor[]`` (synchronous batch mean, all-reduced over DDP
    ranks when ``torch.distributed`` is initialised), ``submit(...) -> Future`` (same, in a background
    thread) and ``result(future) -> Tensor[]``; ``factor(tasl) = 1 + β·TASL`` with β = 0.1.
    The total loss is L = (Dice+CE)·(1 + β·TASL) with TASL detached, so
    **∇L = (1 + β·TASL)·∇(Dice+CE)**: a GPU trainer can call ``backward`` on Dice+CE at once, compute TASL
    in the thread meanwhile and then call :func:`scale_gradients` ``(parameters, 1 + β·TASL)`` before
    gradient clipping (after ``GradScaler.unscale_`` with AMP).
    This product computes TASL on the **full-resolution output only** (the released
    code recomputes it for every deep-supervision output) and scales the whole deep-supervised Dice+CE.

The differentiable TASL is in :mod:`.tasl_differentiable`; the training step that applies the official TASL
is :class:`~nnunetv2_neurino.losses.official_step.OfficialTASLStep`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree
from skimage.morphology import ball

from nnunetv2_neurino.errors import NeurinoError
from nnunetv2_neurino.losses.skeleton_utils import skeletonize_robust

DEFAULT_LAMBDAS = (1.0, 0.5, 0.5)
ArrayLike = torch.Tensor | np.ndarray


def _official_voxel_set(mask: np.ndarray) -> np.ndarray:
    """Voxels of the ``ball(1)``-dilated skeleton inside ``mask``, as an (N, 3) float array (z, y, x)."""
    if not mask.any():
        return np.zeros((0, mask.ndim), dtype=np.float64)
    skel = skeletonize_robust(mask)
    footprint = ball(1) if mask.ndim == 3 else ndimage.generate_binary_structure(2, 1)
    vset = ndimage.binary_dilation(skel, structure=footprint) & mask
    return np.argwhere(vset).astype(np.float64)


def _graph_stats(points: np.ndarray, tree: cKDTree, edge_radius: float) -> tuple[int, float]:
    """Number of edges (pairs within ``edge_radius``) and mean connected-component size."""
    n = len(points)
    pairs = tree.query_pairs(r=edge_radius, output_type="ndarray")
    graph = coo_matrix((np.ones(len(pairs), dtype=np.int8), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    n_comp, _ = connected_components(graph, directed=False)
    return len(pairs), n / n_comp


def tasl_official_terms(
    pred_fg: np.ndarray,
    gt_fg: np.ndarray,
    distance_clip: float | None = 10.0,
    edge_radius: float = 2.0,
) -> tuple[float, float, float]:
    """The three official TASL distances of one batch item.

    Parameters
    ----------
    pred_fg, gt_fg : ndarray of bool, shape (Z, Y, X)
        Thresholded prediction and ground-truth foreground.
    distance_clip : float or None
        Node distances are clipped at this many voxels (the paper: 10); ``None`` disables the clip. It is also
        D_node's value when exactly one of the voxel sets is empty.
    edge_radius : float
        Two voxels are joined by an edge when their distance is at most this (voxels).

    Returns
    -------
    (D_node, D_edge, D_path) : floats; D_node in voxels, the others relative differences.
    """
    vp = _official_voxel_set(np.asarray(pred_fg, dtype=bool))
    vg = _official_voxel_set(np.asarray(gt_fg, dtype=bool))
    if len(vp) == 0 and len(vg) == 0:
        return 0.0, 0.0, 0.0
    if len(vp) == 0 or len(vg) == 0:
        return (10.0 if distance_clip is None else float(distance_clip)), 1.0, 1.0
    tree_p, tree_g = cKDTree(vp), cKDTree(vg)
    d_pg, _ = tree_g.query(vp)
    d_gp, _ = tree_p.query(vg)
    if distance_clip is not None:
        d_pg = np.minimum(d_pg, distance_clip)
        d_gp = np.minimum(d_gp, distance_clip)
    d_node = 0.5 * (float(d_pg.mean()) + float(d_gp.mean()))
    e_p, size_p = _graph_stats(vp, tree_p, edge_radius)
    e_g, size_g = _graph_stats(vg, tree_g, edge_radius)
    if e_g == 0:
        d_edge = 1.0 if e_p > 0 else 0.0
    else:
        d_edge = abs(e_g - e_p) / e_g
    d_path = abs(size_g - size_p) / size_g
    return d_node, float(d_edge), float(d_path)


def _to_numpy_batch(x: torch.Tensor | np.ndarray, name: str) -> np.ndarray:
    """(B, Z, Y, X) or (B, 1, Z, Y, X) tensor/array → numpy (B, Z, Y, X) on the CPU."""
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float32).numpy()
    x = np.asarray(x)
    if x.ndim == 5:
        if x.shape[1] != 1:
            raise NeurinoError(f"{name}: expected one channel at axis 1, got shape {tuple(x.shape)}")
        x = x[:, 0]
    if x.ndim != 4:
        raise NeurinoError(f"{name}: expected shape (B, Z, Y, X) or (B, 1, Z, Y, X), got {tuple(x.shape)}")
    return x


def tasl_official(
    prob_fg: torch.Tensor | np.ndarray,
    target_fg: torch.Tensor | np.ndarray,
    lambdas: Sequence[float] = DEFAULT_LAMBDAS,
    threshold: float = 0.5,
    distance_clip: float | None = 10.0,
) -> torch.Tensor:
    """Official TASL of every batch item.

    Parameters
    ----------
    prob_fg : Tensor or ndarray, shape (B, Z, Y, X) or (B, 1, Z, Y, X)
        Foreground probability (detached; any device, copied to the CPU).
    target_fg : Tensor or ndarray, same shape
        Ground-truth foreground (non-zero = foreground).
    lambdas : (λ_node, λ_edge, λ_path), default (1.0, 0.5, 0.5)
    threshold : float
        Prediction foreground is ``prob_fg > threshold``.
    distance_clip : float or None
        See :func:`tasl_official_terms`.

    Returns
    -------
    Tensor of float32, shape (B,), on the CPU: λn·D_node + λe·D_edge + λp·D_path per item.
    """
    p = _to_numpy_batch(prob_fg, "prob_fg")
    g = _to_numpy_batch(target_fg, "target_fg")
    if p.shape != g.shape:
        raise NeurinoError(f"prob_fg shape {p.shape} differs from target_fg shape {g.shape}")
    ln, le, lp = (float(v) for v in lambdas)
    out = np.zeros(p.shape[0], dtype=np.float32)
    for b in range(p.shape[0]):
        dn, de, dp = tasl_official_terms(p[b] > threshold, g[b] != 0, distance_clip)
        out[b] = ln * dn + le * de + lp * dp
    return torch.from_numpy(out)


def scale_gradients(parameters: Iterable[torch.nn.Parameter], factor: float) -> None:
    """Multiply every existing ``.grad`` in place by ``factor`` (e.g. 1 + β·TASL); call before clipping."""
    grads = [prm.grad for prm in parameters if prm.grad is not None]
    if grads:
        torch._foreach_mul_(grads, factor)


def _ddp_mean(per_item: torch.Tensor) -> torch.Tensor:
    """Mean over the items of all DDP ranks (plain mean without an initialised process group)."""
    total = torch.stack([per_item.sum().double(), torch.tensor(float(per_item.numel()), dtype=torch.float64)])
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        backend = torch.distributed.get_backend()
        if backend == "nccl":
            total = total.cuda()
        torch.distributed.all_reduce(total)
        total = total.cpu()
    if total[1] == 0:
        return torch.zeros((), dtype=torch.float32)
    return (total[0] / total[1]).float()


class OfficialTASL:
    """Official TASL as a detached gradient scale factor, synchronous or in a background thread.

    Class attributes are the settings (trainer subclasses override them): ``lambda_node = 1.0``,
    ``lambda_edge = 0.5``, ``lambda_path = 0.5`` (the paper's; the released code hard-codes 0.2 for path),
    ``beta = 0.1``, ``threshold = 0.5``, ``distance_clip = 10.0``, ``sync_ddp = True`` (average TASL over
    all DDP ranks so every rank applies the same factor, as one process with the whole batch would).

    Usage (synchronous): ``L = dcce * official.factor(official.compute(p_fg.detach(), gt_fg))``.
    Usage (overlapped): ``fut = official.submit(p_fg, gt_fg)``; ``dcce.backward()``;
    ``scale_gradients(params, official.factor(official.result(fut)))``; clip; step.
    """

    lambda_node: float = 1.0
    lambda_edge: float = 0.5
    lambda_path: float = 0.5
    beta: float = 0.1
    threshold: float = 0.5
    distance_clip: float | None = 10.0
    sync_ddp: bool = True

    def __init__(self, **overrides: float) -> None:
        for key, value in overrides.items():
            if not hasattr(type(self), key):
                raise NeurinoError(f"OfficialTASL has no setting {key!r}")
            setattr(self, key, value)
        self._executor: ThreadPoolExecutor | None = None

    @property
    def lambdas(self) -> tuple[float, float, float]:
        return (self.lambda_node, self.lambda_edge, self.lambda_path)

    def per_item(self, prob_fg: ArrayLike, target_fg: ArrayLike) -> torch.Tensor:
        """Tensor[B] of per-item TASL (CPU, float32)."""
        return tasl_official(prob_fg, target_fg, self.lambdas, self.threshold, self.distance_clip)

    def reduce(self, per_item: torch.Tensor) -> torch.Tensor:
        """Batch mean (over all DDP ranks when ``sync_ddp``); a 0-d float32 CPU tensor."""
        if self.sync_ddp:
            return _ddp_mean(per_item)
        return per_item.float().mean() if per_item.numel() else torch.zeros(())

    def compute(self, prob_fg: ArrayLike, target_fg: ArrayLike) -> torch.Tensor:
        """Synchronous TASL = mean_b(λn·D_node + λe·D_edge + λp·D_path); 0-d float32 CPU tensor."""
        return self.reduce(self.per_item(prob_fg, target_fg))

    def submit(self, prob_fg: ArrayLike, target_fg: ArrayLike) -> Future:
        """Start the per-item computation in a background thread; returns a Future of Tensor[B].

        The inputs are copied to CPU numpy arrays here (in the caller's thread), so the caller may free or
        overwrite them at once. Pass the Future to :meth:`result` (in the training thread, because the DDP
        all-reduce must run there).
        """
        p = _to_numpy_batch(prob_fg, "prob_fg").copy()
        g = _to_numpy_batch(target_fg, "target_fg").copy()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tasl")
        return self._executor.submit(self.per_item, p, g)

    def result(self, future: Future) -> torch.Tensor:
        """Wait for :meth:`submit`'s Future and reduce it like :meth:`compute`."""
        return self.reduce(future.result())

    def factor(self, tasl: torch.Tensor | float) -> float:
        """Gradient / loss scale 1 + β·TASL."""
        return 1.0 + self.beta * float(tasl)

    def __getstate__(self) -> dict:  # executors cannot be pickled (DDP spawn, deepcopy)
        state = self.__dict__.copy()
        state["_executor"] = None
        return state
