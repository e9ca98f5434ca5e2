import torch

from attacks import create_attack
from attacks.functional import ClientModel, observed_target
from attacks.matching import MatchingProblem, ObjectiveTerms
from attacks.objectives import cosine_distance
from attacks.simulate import fedavg_view, fedsgd_view, normalize
from flaudit.models import ModelSpec, build_model

from attack_cases import make_meta, psnr, smooth_images


def _lenet_case(batch: int = 1, seed: int = 0):
    model = build_model(ModelSpec("lenet", 10, 3, 8), seed=seed)
    images = smooth_images(batch, side=8, seed=seed)
    labels = torch.arange(batch) + 2
    return images, labels, fedsgd_view(model, images, labels, make_meta(batch=batch, side=8))


def _bn_model(seed: int = 0) -> torch.nn.Module:
    model = build_model(ModelSpec("convnet", 10, 3, 8, width=4), seed=seed)
    # Running statistics from "real" data: a few train-mode passes over smooth images.
    model.train()
    with torch.no_grad():
        for s in range(5):
            model(normalize(smooth_images(16, side=8, seed=50 + s), make_meta(batch=1, side=8)))
    return model.eval()


def test_simulated_gradient_equals_observed_at_truth_bn_train_mode() -> None:
    """The functional client reproduces the client's train-mode BN gradient and FedAvg delta exactly."""
    model = _bn_model()
    images, labels = smooth_images(3, side=8, seed=1), torch.tensor([1, 4, 4])
    meta = make_meta(batch=3, side=8)
    view = fedsgd_view(model, images, labels, meta)
    names, target = observed_target(view)
    simulated, stats = ClientModel(view.model, names).gradient(normalize(images, meta), labels)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(simulated, target))
    assert len(stats) == sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    # The view's model was not touched by the client's train-mode pass.
    assert all(torch.equal(a, b) for a, b in zip(view.model.state_dict().values(), model.state_dict().values()))

    avg_meta = make_meta(batch=4, side=8, protocol="fedavg", local_steps=4, lr=0.05)
    four = smooth_images(4, side=8, seed=2)
    avg_view = fedavg_view(model, four, torch.tensor([0, 1, 2, 3]), avg_meta)
    names, target = observed_target(avg_view)
    delta, _ = ClientModel(avg_view.model, names).fedavg_delta(
        normalize(four, avg_meta), torch.tensor([0, 1, 2, 3]), local_steps=4, learning_rate=0.05, batch_size=1
    )
    assert float(cosine_distance(delta, target)) < 1e-6


def test_ig_improves_loss_and_image() -> None:
    images, labels, view = _lenet_case()
    attack = create_attack("inverting_gradients", iterations=30, tv=1e-4, restarts=2)
    rec = attack.reconstruct(view, generator=torch.Generator().manual_seed(0), labels=labels)
    assert rec.labels_known and rec.iterations == 30 and len(rec.restart_losses) == 2
    assert rec.images.min() >= 0 and rec.images.max() <= 1
    init = torch.randn((1, 1, 3, 8, 8), generator=torch.Generator().manual_seed(0))
    problem = MatchingProblem(view, ObjectiveTerms(distance="cosine", tv=1e-4))
    start_loss = float(problem.objective(init[0], labels))
    assert min(rec.restart_losses) < 0.5 * start_loss
    start_psnr = psnr(((init[0] * 0.5) + 0.5).clamp(0, 1), images)
    assert psnr(rec.images, images) > start_psnr + 2


def test_ig_deterministic_under_seed() -> None:
    _, labels, view = _lenet_case()
    attack = create_attack("inverting_gradients", iterations=5, restarts=2)
    a = attack.reconstruct(view, generator=torch.Generator().manual_seed(7))
    b = attack.reconstruct(view, generator=torch.Generator().manual_seed(7))
    c = attack.reconstruct(view, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a.images, b.images) and a.restart_losses == b.restart_losses
    assert not torch.equal(a.images, c.images)


def test_vmap_restarts_match_python_loop() -> None:
    """Restarts run as one vmapped computation give the per-restart results of separate runs."""
    _, labels, view = _lenet_case(batch=2, seed=3)
    attack = create_attack("inverting_gradients", iterations=6, restarts=3)
    init = torch.randn((3, 2, 3, 8, 8), generator=torch.Generator().manual_seed(1))
    together = attack.reconstruct_from(view, init, labels=labels)
    single = create_attack("inverting_gradients", iterations=6, restarts=1)
    for r in range(3):
        alone = single.reconstruct_from(view, init[r : r + 1], labels=labels)
        assert abs(alone.restart_losses[0] - together.restart_losses[r]) < 1e-5
    best = min(range(3), key=lambda r: together.restart_losses[r])
    alone = single.reconstruct_from(view, init[best : best + 1], labels=labels)
    assert torch.allclose(alone.images, together.images, atol=1e-5)

    # And the batched gradient equals plain autograd per restart.
    problem = MatchingProblem(view, ObjectiveTerms(distance="cosine", tv=0.1))
    losses, grads = problem.batched_value_and_grad(labels)(init)
    for r in range(3):
        x = init[r].clone().requires_grad_(True)
        loss = problem.objective(x, labels)
        (g,) = torch.autograd.grad(loss, x)
        assert torch.allclose(losses[r], loss.detach(), atol=1e-6)
        assert torch.allclose(grads[r], g, atol=1e-5)


def test_fedavg_variant_improves() -> None:
    model = build_model(ModelSpec("lenet", 10, 3, 8), seed=4)
    images = smooth_images(2, side=8, seed=4)
    meta = make_meta(batch=2, side=8, protocol="fedavg", local_steps=2, lr=0.01)
    view = fedavg_view(model, images, torch.tensor([1, 6]), meta)
    rec = create_attack("inverting_gradients", iterations=20, tv=1e-4).reconstruct(
        view, generator=torch.Generator().manual_seed(0), labels=torch.tensor([1, 6])
    )
    init = torch.randn((1, 2, 3, 8, 8), generator=torch.Generator().manual_seed(0))
    problem = MatchingProblem(view, ObjectiveTerms(distance="cosine", tv=1e-4))
    assert rec.restart_losses[0] < 0.5 * float(problem.objective(init[0], torch.tensor([1, 6])))
    assert rec.images.shape == (2, 3, 8, 8)


def test_gradinversion_runs_on_bn_model_and_uses_prior() -> None:
    model = _bn_model(seed=5)
    images = smooth_images(2, side=8, seed=6)
    view = fedsgd_view(model, images, torch.tensor([3, 8]), make_meta(batch=2, side=8))
    gen = torch.Generator().manual_seed(0)
    rec = create_attack("gradinversion", iterations=10, bn=0.1).reconstruct(view, generator=gen)
    assert rec.images.shape == (2, 3, 8, 8) and sorted(rec.labels.tolist()) == [3, 8]
    x = torch.randn((2, 3, 8, 8), generator=torch.Generator().manual_seed(0))
    with_prior = MatchingProblem(view, ObjectiveTerms(bn=1.0)).objective(x, torch.tensor([3, 8]))
    without = MatchingProblem(view, ObjectiveTerms(bn=0.0)).objective(x, torch.tensor([3, 8]))
    assert float(with_prior) > float(without)


def test_vmap_with_batchnorm_train_mode_matches_autograd() -> None:
    """BN in train mode under vmap (batch statistics per restart) equals plain autograd per restart."""
    model = _bn_model(seed=7)
    labels = torch.tensor([2, 5])
    view = fedsgd_view(model, smooth_images(2, side=8, seed=8), labels, make_meta(batch=2, side=8))
    problem = MatchingProblem(view, ObjectiveTerms(distance="cosine", tv=0.01, bn=0.1))
    init = torch.randn((2, 2, 3, 8, 8), generator=torch.Generator().manual_seed(2))
    losses, grads = problem.batched_value_and_grad(labels)(init)
    for r in range(2):
        x = init[r].clone().requires_grad_(True)
        loss = problem.objective(x, labels, autograd=True)
        (g,) = torch.autograd.grad(loss, x)
        assert torch.allclose(losses[r], loss.detach(), atol=1e-5)
        assert torch.allclose(grads[r], g, atol=1e-4)
