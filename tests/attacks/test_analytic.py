import pytest
import torch
from torch import nn

from attacks import create_attack
from attacks.simulate import fedsgd_view
from flaudit.models import ModelSpec, build_model
from flaudit.errors import FlauditError

from attack_cases import make_meta, psnr, smooth_images


class TinyMLP(nn.Module):
    """A fully connected first layer with bias on the flattened image."""

    def __init__(self, side: int = 8) -> None:
        super().__init__()
        self.fc1 = nn.Linear(3 * side * side, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


def test_analytic_linear_exact() -> None:
    torch.manual_seed(0)
    images = smooth_images(1, side=8, seed=3)
    view = fedsgd_view(TinyMLP(), images, torch.tensor([4]), make_meta(batch=1, side=8))
    rec = create_attack("analytic_linear").reconstruct(view, generator=torch.Generator().manual_seed(0))
    assert rec.images.shape == (1, 3, 8, 8)
    assert psnr(rec.images, images) > 60.0
    assert rec.labels.tolist() == [4]
    assert not rec.labels_known


def test_analytic_linear_rejects_conv_models() -> None:
    model = build_model(ModelSpec("lenet", 10, 3, 8), seed=0)
    view = fedsgd_view(model, smooth_images(1, side=8), torch.tensor([1]), make_meta(batch=1, side=8))
    with pytest.raises(FlauditError, match="first layer is nn.Linear"):
        create_attack("analytic_linear").reconstruct(view, generator=torch.Generator().manual_seed(0))
