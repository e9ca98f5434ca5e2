"""The row-aware model (`attacks.rows`) computes what vmap computes: values and gradients of every row."""

import dataclasses

import pytest
import torch
from torch import nn

from attacks.matching import MatchingProblem, ObjectiveTerms
from attacks.rows import row_network
from attacks.simulate import fedsgd_view
from flaudit.models import ModelSpec, build_model

from attack_cases import make_meta, smooth_images


def _bn_model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1, bias=False), nn.Sigmoid(), nn.Flatten(), nn.Linear(4 * 4 * 4, 6), nn.BatchNorm1d(6), nn.Linear(6, 10),
    )
    with torch.no_grad():
        for bn in (model[1], model[7]):
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
    return model.eval()


def _views(model_for_round, *, protocol: str = "fedsgd", rounds=(1, 2)):
    meta = dataclasses.replace(make_meta(batch=2, side=8), protocol=protocol, local_steps=2 if protocol == "fedavg" else 1)
    views = []
    for r in rounds:
        model = model_for_round(r)
        view = fedsgd_view(model, smooth_images(2, side=8, seed=r), torch.tensor([1, 2 + r]), make_meta(batch=2, side=8), round=r, client=0)
        if protocol == "fedavg":  # the weights after two local steps stand in for a FedAvg reply
            update = {k: v.detach() - 0.1 * view.update[k] for k, v in model.named_parameters()}
            view = dataclasses.replace(view, update=update, meta=meta)
        views.append(view)
    return views


@pytest.mark.parametrize("protocol", ["fedsgd", "fedavg"])
@pytest.mark.parametrize("terms", [
    ObjectiveTerms(distance="l2", soft_labels=True),
    ObjectiveTerms(distance="cosine", tv=0.1, bn=0.1, layer_weighting="linear"),
])
@pytest.mark.parametrize("rounds", [(1,), (1, 2)])
def test_rows_equal_vmap(protocol: str, terms: ObjectiveTerms, rounds: tuple[int, ...]) -> None:
    views = _views(_bn_model, protocol=protocol, rounds=rounds)
    problem = MatchingProblem(views, terms)
    assert problem.client.rows is not None
    labels = None if terms.soft_labels else torch.tensor([[1, 3], [1, 4]][: len(rounds)])
    g = torch.Generator().manual_seed(0)
    rows = 3 * len(rounds)
    x = torch.randn(rows, 2, 3, 8, 8, generator=g)
    y = torch.randn(rows, 2, 10, generator=g)
    fast = problem.batched_value_and_grad(labels)
    expected_problem = MatchingProblem(views, terms)
    expected_problem.client.rows = None  # the vmap path
    slow = expected_problem.batched_value_and_grad(labels)
    got, want = (fast(x, y), slow(x, y)) if labels is None else (fast(x), slow(x))
    # Equal to float rounding (in float64 to 1e-13); batch norm over two images amplifies it in float32.
    assert torch.allclose(got[0], want[0], rtol=1e-4, atol=1e-5)
    for a, b in zip(got[1] if labels is None else [got[1]], want[1] if labels is None else [want[1]]):
        assert float((a - b).abs().max()) <= 2e-3 * float(b.abs().max())


def test_models_with_other_parametrised_layers_use_vmap() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3, groups=1), nn.GroupNorm(2, 4), nn.Flatten(), nn.LazyLinear(10))
    model(torch.zeros(1, 3, 8, 8))
    assert row_network(model) is None
    assert row_network(nn.Sequential(nn.Conv2d(4, 4, 3, groups=2))) is None
    assert row_network(build_model(ModelSpec("resnet20", 10, 3, 8), seed=0)) is not None
