import torch

from attacks import create_attack
from attacks.simulate import fedsgd_view
from flaudit.models import ModelSpec, build_model

from attack_cases import make_meta, psnr, smooth_images


def _case(seed: int = 0, label: int = 3):
    model = build_model(ModelSpec("lenet", 10, 3, 8), seed=seed)
    images = smooth_images(1, side=8, seed=seed)
    return images, fedsgd_view(model, images, torch.tensor([label]), make_meta(batch=1, side=8))


def test_idlg_recovers_tiny_image() -> None:
    images, view = _case()
    rec = create_attack("idlg", iterations=10).reconstruct(view, generator=torch.Generator().manual_seed(0))
    assert rec.labels.tolist() == [3] and not rec.labels_known
    assert rec.images.shape == images.shape
    assert psnr(rec.images, images) > 30.0


def test_dlg_joint_labels_reduces_loss_and_finds_label() -> None:
    images, view = _case(seed=1, label=7)
    short = create_attack("dlg", iterations=1, max_iter=2).reconstruct(view, generator=torch.Generator().manual_seed(0))
    rec = create_attack("dlg", iterations=8).reconstruct(view, generator=torch.Generator().manual_seed(0))
    assert rec.restart_losses[0] < 1e-2 * short.restart_losses[0]
    assert rec.labels.tolist() == [7]
    assert psnr(rec.images, images) > psnr(short.images, images) + 10


def test_known_labels_are_flagged() -> None:
    _, view = _case()
    rec = create_attack("idlg", iterations=1, max_iter=2).reconstruct(
        view, generator=torch.Generator().manual_seed(0), labels=torch.tensor([5])
    )
    assert rec.labels_known and rec.labels.tolist() == [5]


def test_dlg_restarts_batched_equal_looped() -> None:
    """R restarts in one batched L-BFGS give each restart the result it gets alone."""
    from attacks.matching import MatchingProblem, ObjectiveTerms
    from attacks.optimize import lbfgs_batched

    _, view = _case(seed=2)
    batched = create_attack("idlg", iterations=3, max_iter=5, restarts=3).reconstruct(
        view, generator=torch.Generator().manual_seed(4)
    )
    init = torch.randn((3, 1, 3, 8, 8), generator=torch.Generator().manual_seed(4))  # the same draws
    step = MatchingProblem(view, ObjectiveTerms(distance="l2")).batched_value_and_grad(torch.tensor([3]))

    def single(flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loss, grad = step(flat.reshape(1, 1, 3, 8, 8))
        return loss, grad.flatten(1)

    for r in range(3):
        alone = lbfgs_batched(single, init[r : r + 1].flatten(1), steps=3, max_iter=5)
        assert abs(float(alone.best_loss[0]) - batched.restart_losses[r]) <= 1e-4 * max(1.0, batched.restart_losses[r])
