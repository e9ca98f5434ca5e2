"""Several clients of one round inverted as one batched computation give each client its own result."""

import pytest
import torch

from attacks import create_attack
from attacks.matching import MatchingProblem, ObjectiveTerms, batch_groups
from attacks.simulate import fedsgd_view
from flaudit.models import ModelSpec, build_model
from flaudit.errors import FlauditError

from attack_cases import make_meta, smooth_images


def _round_views(clients: int = 3, *, batch: int = 1, round: int = 1, seed: int = 0):
    model = build_model(ModelSpec("lenet", 10, 3, 8), seed=seed)
    meta = make_meta(batch=batch, side=8)
    views = []
    for client in range(clients):
        images = smooth_images(batch, side=8, seed=seed + 10 * client + 1)
        labels = (torch.arange(batch) + 3 * client + 1) % 10
        views.append(fedsgd_view(model, images, labels, meta, round=round, client=client))
    return views


def _generators(count: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(100 + i) for i in range(count)]


@pytest.mark.parametrize(
    "name, params",
    [
        ("inverting_gradients", dict(iterations=8, restarts=2, tv=1e-3)),
        ("idlg", dict(iterations=2, max_iter=4, restarts=2)),
        ("dlg", dict(iterations=2, max_iter=4, restarts=1)),
    ],
)
def test_clients_batched_equal_each_alone(name: str, params: dict) -> None:
    views = _round_views(3)
    attack = create_attack(name, **params)
    together = attack.reconstruct_many(views, generators=_generators(3))
    assert len(together) == 3
    for view, generator, batched in zip(views, _generators(3), together):
        alone = attack.reconstruct(view, generator=generator)
        assert batched.labels.tolist() == alone.labels.tolist()
        assert len(batched.restart_losses) == params["restarts"]
        for a, b in zip(alone.restart_losses, batched.restart_losses):
            assert abs(a - b) <= 1e-4 * max(1.0, abs(a))
        assert torch.allclose(alone.images, batched.images, atol=1e-4)


def test_known_labels_per_client() -> None:
    views = _round_views(2, batch=2)
    labels = [torch.tensor([1, 2]), torch.tensor([7, 0])]
    recs = create_attack("inverting_gradients", iterations=3).reconstruct_many(
        views, generators=_generators(2), labels=labels
    )
    assert [r.labels.tolist() for r in recs] == [[1, 2], [7, 0]]
    assert all(r.labels_known for r in recs)


def test_batch_groups_split_rounds_and_shapes() -> None:
    first = _round_views(2, round=1, seed=0)
    second = _round_views(1, round=2, seed=5)  # another round: another global model
    bigger = _round_views(1, batch=2, round=1, seed=0)  # same model, other image count
    views = [first[0], second[0], first[1], bigger[0]]
    assert batch_groups(views) == [[0, 2], [1], [3]]
    with pytest.raises(FlauditError, match="cannot be inverted together"):
        MatchingProblem([first[0], second[0]], ObjectiveTerms())


def test_objective_of_several_clients_needs_target() -> None:
    problem = MatchingProblem(_round_views(2), ObjectiveTerms())
    x = torch.zeros(1, 3, 8, 8)
    with pytest.raises(FlauditError, match="target"):
        problem.objective(x, torch.tensor([1]))
    assert torch.isfinite(problem.objective(x, torch.tensor([1]), problem.flat_targets[1]))


def test_default_reconstruct_many_loops_for_analytic() -> None:
    from attacks.simulate import fedsgd_view as view_of
    from torch import nn

    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 10))
    meta = make_meta(batch=1, side=8)
    images = smooth_images(2, side=8, seed=3)
    views = [view_of(model, images[i : i + 1], torch.tensor([i]), meta, client=i) for i in range(2)]
    recs = create_attack("analytic_linear").reconstruct_many(views, generators=_generators(2))
    for rec, original in zip(recs, images):
        assert torch.allclose(rec.images[0], original, atol=1e-4)
