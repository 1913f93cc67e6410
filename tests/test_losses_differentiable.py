"""Differentiable TASL (paper, suppl. §6): gradients, perfect/empty/broken predictions, degenerate case."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nnunetv2_neurino.losses.tasl_differentiable import (
    DifferentiableTASL,
    _max_pool3,
    edge_loss,
    node_loss,
    path_loss_from_indices,
    sample_path_indices,
)
from nnunetv2_neurino.losses.transforms import graph_channels
from nnunetv2_neurino.testing.phantoms import y_tube

SHAPE = (32, 32, 32)


@pytest.fixture(scope="module")
def y_graph():
    label = y_tube(SHAPE, 1.5)
    nodes, branches = graph_channels(label)
    return label, torch.from_numpy(nodes)[None], torch.from_numpy(branches)[None]


def test_gradcheck_smooth_terms():
    torch.manual_seed(0)
    label = np.zeros((2, 5, 9, 9), dtype=bool)
    label[0, 2, 4, 1:8] = True  # a straight line: 2 end nodes, 1 branch
    label[1, 2, 1:8, 4] = True
    label[1, 2, 4, 1:8] = True  # a cross: 4 ends, 1 junction cluster, 4 branches
    maps = [graph_channels(x) for x in label]
    nodes = torch.from_numpy(np.stack([m[0] for m in maps]))
    branches = torch.from_numpy(np.stack([m[1] for m in maps]))
    assert int(nodes[1].max()) == 5 and int(branches[1].max()) == 4
    p = (0.05 + 0.9 * torch.rand(label.shape, dtype=torch.float64)).requires_grad_()

    def smooth(x):
        pooled = _max_pool3(x)
        return node_loss(pooled, nodes) + 0.5 * edge_loss(pooled, branches, tau=0.1)

    assert torch.autograd.gradcheck(smooth, (p,), eps=1e-6, atol=1e-5, fast_mode=True)
    paths = [sample_path_indices(p[i].detach().numpy(), nodes[i].numpy(), branches[i].numpy(), 3,
                                 rng=np.random.default_rng(0)) for i in range(2)]
    assert all(len(pp) == 3 for pp in paths)
    assert torch.autograd.gradcheck(lambda x: path_loss_from_indices(x, paths), (p,), eps=1e-6, atol=1e-5,
                                    fast_mode=True)


def test_softmin_between_min_and_mean():
    pooled = torch.tensor([[[[0.2, 0.9, 0.9, 0.9, 0.5]]]], dtype=torch.float64)
    ids = torch.tensor([[[[1, 1, 1, 1, 2]]]])
    per_sample = edge_loss(pooled, ids, tau=0.1)
    # branch 1: softmin_0.1 of (0.2, 0.9, 0.9, 0.9) = -0.1·log(mean(exp(-x/0.1))); branch 2: 0.5
    soft = -0.1 * np.log(np.mean(np.exp(-np.array([0.2, 0.9, 0.9, 0.9]) / 0.1)))
    assert 0.2 < soft < 0.725
    assert per_sample.item() == pytest.approx(((1 - soft) + (1 - 0.5)) / 2)


def test_perfect_zero_empty_largest_broken_between(y_graph):
    label, nodes, branches = y_graph
    loss = DifferentiableTASL(seed=0)
    perfect = torch.from_numpy(label.astype(np.float32))[None]
    broken = perfect.clone()
    broken[0, 18:21] = 0.0  # cut the stem/junction region across z
    empty = torch.zeros_like(perfect)
    v_perfect = loss(perfect, nodes, branches)
    terms_perfect = dict(loss.last_terms)
    v_broken = loss(broken, nodes, branches)
    v_empty = loss(empty, nodes, branches)
    terms_empty = dict(loss.last_terms)
    assert v_perfect.item() == 0.0 and all(v == 0.0 for v in terms_perfect.values())
    assert terms_empty == {"node": 1.0, "edge": 1.0, "path": 1.0}
    assert v_empty.item() == pytest.approx(1.0 + 0.5 + 0.5)
    assert 0.0 < v_broken.item() < v_empty.item()
    assert v_perfect.dtype == torch.float32


def test_sgd_step_raises_probability_in_the_gap(y_graph):
    label, nodes, branches = y_graph
    prob = np.where(label, 0.95, 0.02).astype(np.float32)
    gap = np.zeros(SHAPE, dtype=bool)
    gap[10:13] = label[10:13]  # a gap across the stem, below the junction
    prob[gap] = 0.1
    param = torch.nn.Parameter(torch.from_numpy(prob.copy())[None])
    loss = DifferentiableTASL(seed=0)
    value = loss(param, nodes, branches)
    value.backward()
    with torch.no_grad():
        param -= 1.0 * param.grad
    change = (param.detach() - torch.from_numpy(prob)[None])[0].numpy()
    assert change[gap].max() > 0.05
    assert change[gap].mean() > 10 * np.abs(change[~gap & ~label]).mean()
    assert change[label & ~gap].min() >= 0  # nothing is pushed down
    assert loss(param.detach(), nodes, branches).item() < value.item()


def test_no_skeleton_gives_zero_and_no_gradient():
    p = torch.rand((2, 8, 8, 8), requires_grad=True)
    zeros = torch.zeros((2, 8, 8, 8), dtype=torch.int16)
    value = DifferentiableTASL()(p, zeros, zeros)
    assert value.item() == 0.0
    value.backward()
    assert p.grad is None or not p.grad.any()


def test_half_precision_input_is_computed_in_float32(y_graph):
    label, nodes, branches = y_graph
    p16 = (0.3 + 0.4 * torch.from_numpy(label.astype(np.float32))[None]).to(torch.bfloat16)
    a = DifferentiableTASL(seed=1, lambda_path=0.0)(p16, nodes, branches)
    b = DifferentiableTASL(seed=1, lambda_path=0.0)(p16.float(), nodes, branches)
    assert a.dtype == torch.float32 and a.item() == pytest.approx(b.item(), rel=1e-6)
