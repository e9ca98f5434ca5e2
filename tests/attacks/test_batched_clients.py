"""Several captured updates (clients of one round, or of different rounds) inverted as one batched
computation give each update its own result."""

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


ATTACK_CASES = [
    ("inverting_gradients", dict(iterations=8, restarts=2, tv=1e-3)),
    ("idlg", dict(iterations=2, max_iter=4, restarts=2)),
    ("dlg", dict(iterations=2, max_iter=4, restarts=1)),
]


def _generators(count: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(100 + i) for i in range(count)]


@pytest.mark.parametrize("name, params", ATTACK_CASES)
def test_clients_batched_equal_each_alone(name: str, params: dict) -> None:
    views = _round_views(3)
    attack = create_attack(name, **params)
    together = attack.reconstruct_many(views, generators=_generators(3))
    assert len(together) == 3
    # One row alone runs im2col convolutions, several rows vmapped oneDNN's (another order of
    # float reductions), and L-BFGS amplifies rounding: equal to 1e-3.
    for view, generator, batched in zip(views, _generators(3), together):
        alone = attack.reconstruct(view, generator=generator)
        assert batched.labels.tolist() == alone.labels.tolist()
        assert len(batched.restart_losses) == params["restarts"]
        for a, b in zip(alone.restart_losses, batched.restart_losses):
            assert abs(a - b) <= 1e-3 * max(1.0, abs(a))
        assert torch.allclose(alone.images, batched.images, atol=1e-3)


def test_known_labels_per_client() -> None:
    views = _round_views(2, batch=2)
    labels = [torch.tensor([1, 2]), torch.tensor([7, 0])]
    recs = create_attack("inverting_gradients", iterations=3).reconstruct_many(
        views, generators=_generators(2), labels=labels
    )
    assert [r.labels.tolist() for r in recs] == [[1, 2], [7, 0]]
    assert all(r.labels_known for r in recs)


@pytest.mark.parametrize("name, params", ATTACK_CASES)
def test_rounds_batched_equal_each_alone(name: str, params: dict) -> None:
    # Three rounds, three global models: each row differentiates at its own round's weights.
    views = [_round_views(1, round=r, seed=5 * r)[0] for r in (1, 2, 3)]
    problem = MatchingProblem(views, ObjectiveTerms())
    assert not problem.shared_weights
    attack = create_attack(name, **params)
    together = attack.reconstruct_many(views, generators=_generators(3))
    # Per-row weights change the order of float reductions (grouped convolutions), and L-BFGS
    # amplifies rounding: equal to 1e-3, where one round's clients batched agree to 1e-4.
    for view, generator, batched in zip(views, _generators(3), together):
        alone = attack.reconstruct(view, generator=generator)
        assert batched.labels.tolist() == alone.labels.tolist()
        for a, b in zip(alone.restart_losses, batched.restart_losses):
            assert abs(a - b) <= 1e-3 * max(1.0, abs(a))
        assert torch.allclose(alone.images, batched.images, atol=1e-3)


def test_gradinversion_rows_use_their_rounds_running_statistics() -> None:
    # A BN model whose running statistics differ per round: the BN prior of each row is its round's.
    from attacks.simulate import fedsgd_view as view_of
    from torch import nn

    views = []
    for r in (1, 2):
        torch.manual_seed(r)
        model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 10))
        with torch.no_grad():
            model[1].running_mean.uniform_(-1, 1)
            model[1].running_var.uniform_(0.5, 2)
        model.eval()
        views.append(view_of(model, smooth_images(2, side=8, seed=r), torch.tensor([1, 2]), make_meta(batch=2, side=8), round=r, client=0))
    attack = create_attack("gradinversion", iterations=6, restarts=2, tv=1e-3)
    together = attack.reconstruct_many(views, generators=_generators(2))
    for view, generator, batched in zip(views, _generators(2), together):
        alone = attack.reconstruct(view, generator=generator)
        assert torch.allclose(alone.images, batched.images, atol=1e-4)


def test_batch_groups_split_architectures_and_shapes() -> None:
    first = _round_views(2, round=1, seed=0)
    second = _round_views(1, round=2, seed=5)  # another round: other weights, same architecture
    bigger = _round_views(1, batch=2, round=1, seed=0)  # same model, other image count
    wider = fedsgd_view(build_model(ModelSpec("lenet", 10, 3, 8, width=16), seed=0), smooth_images(1, side=8, seed=1),
                        torch.tensor([1]), make_meta(batch=1, side=8), round=1, client=5)
    views = [first[0], second[0], first[1], bigger[0], wider]
    assert batch_groups(views) == [[0, 1, 2], [3], [4]]
    with pytest.raises(FlauditError, match="cannot be inverted together"):
        MatchingProblem([first[0], bigger[0]], ObjectiveTerms())


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
