"""Image classifiers by name, for any input size and channel count: the architectures a capture names.

Shared by the simulation that trains them and the attacks that run them (a capture records a
`ModelSpec`, and the attacker rebuilds the model from it), so they live in the core, not in `fl_sim`.

`lenet` is the sigmoid LeNet of DLG (Zhu et al. 2019), initialised U(-0.5, 0.5) as in the
paper's code; `convnet` is the ConvNet of Geiping et al. 2020 (width parameter); `resnet20`
and `resnet32` are the CIFAR ResNets of He et al. 2016; `resnet18` is torchvision's, with a
CIFAR-style stem for small inputs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from flaudit.registry import Registry


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a model's architecture (weights travel separately).

    Args:
        name: registry name (`lenet`, `convnet`, `resnet20`, `resnet32`, `resnet18`).
        num_classes: output classes.
        in_channels: image channels.
        image_size: input side length in pixels (square images).
        width: the model's width parameter; None means the model's published default.
        bn: batch normalisation on (ignored by `lenet`, which has none).
    """

    name: str
    num_classes: int
    in_channels: int
    image_size: int
    width: int | None = None
    bn: bool = True

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "num_classes": self.num_classes,
            "in_channels": self.in_channels,
            "image_size": self.image_size,
            "width": self.width,
            "bn": self.bn,
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> "ModelSpec":
        return cls(**data)  # type: ignore[arg-type]


MODELS: Registry[Callable[[ModelSpec], nn.Module]] = Registry("model")


def build_model(spec: ModelSpec, *, seed: int | None = None) -> nn.Module:
    """Build the model `spec` names; with `seed`, its initial weights are reproducible."""
    factory = MODELS.get(spec.name)
    if seed is None:
        return factory(spec)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return factory(spec)


def _norm(bn: bool) -> Callable[[int], nn.Module]:
    return nn.BatchNorm2d if bn else (lambda channels: nn.Identity())


class LeNet(nn.Module):
    """DLG's LeNet: three 5x5 sigmoid convolutions and one linear layer, no pooling."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        width = spec.width or 12
        self.body = nn.Sequential(
            nn.Conv2d(spec.in_channels, width, kernel_size=5, padding=2, stride=2),
            nn.Sigmoid(),
            nn.Conv2d(width, width, kernel_size=5, padding=2, stride=2),
            nn.Sigmoid(),
            nn.Conv2d(width, width, kernel_size=5, padding=2, stride=1),
            nn.Sigmoid(),
        )
        side = (((spec.image_size + 1) // 2) + 1) // 2
        self.fc = nn.Linear(width * side * side, spec.num_classes)
        # DLG's reference code draws every weight and bias from U(-0.5, 0.5); the attack
        # results of the paper (and the thresholds) are for this initialisation.
        for param in self.parameters():
            nn.init.uniform_(param, -0.5, 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x).flatten(1))


class ConvNet(nn.Module):
    """The ConvNet of Inverting Gradients (Geiping et al. 2020), width 64 by default."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        w = spec.width or 64
        norm = _norm(spec.bn)

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1), norm(cout), nn.ReLU()]

        self.features = nn.Sequential(
            *block(spec.in_channels, w),
            *block(w, 2 * w),
            *block(2 * w, 2 * w),
            *block(2 * w, 4 * w),
            *block(4 * w, 4 * w),
            *block(4 * w, 4 * w),
            nn.MaxPool2d(3, ceil_mode=True),
            *block(4 * w, 4 * w),
            *block(4 * w, 4 * w),
            *block(4 * w, 4 * w),
            nn.MaxPool2d(3, ceil_mode=True),
            nn.AdaptiveAvgPool2d(3),
        )
        self.fc = nn.Linear(4 * w * 9, spec.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).flatten(1))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, norm: Callable[[int], nn.Module]) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = norm(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1, bias=False)
        self.bn2 = norm(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), norm(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for small images (He et al. 2016, Section 4.2), base width 16."""

    def __init__(self, spec: ModelSpec, blocks_per_stage: int) -> None:
        super().__init__()
        w = spec.width or 16
        norm = _norm(spec.bn)
        self.conv1 = nn.Conv2d(spec.in_channels, w, 3, padding=1, bias=False)
        self.bn1 = norm(w)
        stages: list[nn.Module] = []
        cin = w
        for stage, cout in enumerate((w, 2 * w, 4 * w)):
            for index in range(blocks_per_stage):
                stride = 2 if stage > 0 and index == 0 else 1
                stages.append(BasicBlock(cin, cout, stride, norm))
                cin = cout
        self.layers = nn.Sequential(*stages)
        self.fc = nn.Linear(cin, spec.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.layers(out)
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(out, 1), 1))


def _resnet18(spec: ModelSpec) -> nn.Module:
    from torchvision.models import resnet18

    norm_layer = nn.BatchNorm2d if spec.bn else (lambda channels: nn.Identity())
    model = resnet18(num_classes=spec.num_classes, norm_layer=norm_layer)
    width = 64
    if spec.image_size < 96:
        # CIFAR-style stem: a 7x7/2 convolution and a max-pool would shrink a 32x32 image to 8x8.
        model.conv1 = nn.Conv2d(spec.in_channels, width, 3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()  # type: ignore[assignment]
    elif spec.in_channels != 3:
        model.conv1 = nn.Conv2d(spec.in_channels, width, 7, stride=2, padding=3, bias=False)
    return model


MODELS.add("lenet", LeNet)
MODELS.add("convnet", ConvNet)
MODELS.add("resnet20", lambda spec: CifarResNet(spec, blocks_per_stage=3))
MODELS.add("resnet32", lambda spec: CifarResNet(spec, blocks_per_stage=5))
MODELS.add("resnet18", _resnet18)
