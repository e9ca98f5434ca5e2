"""SemSim's training settings, without torch (the study's scenario loader checks them before any heavy import)."""

from __future__ import annotations

from dataclasses import dataclass

from flaudit.errors import FlauditError


@dataclass(frozen=True)
class TrainConfig:
    """SemSim training settings (defaults follow the paper where it states them).

    Args:
        backbone: embedding network (`resnet18`, `resnet50`, `lenet`).
        width: the backbone's base width (None: the published one).
        input_size: image side the network sees.
        in_channels: network input channels (grey images are repeated).
        pretrained: `auto` (ImageNet weights when cached), `imagenet` or `none`.
        epochs: passes over the training triplets (negatives resampled each epoch).
        batch_size: triplets per step.
        lr: SGD learning rate.
        momentum: SGD momentum.
        weight_decay: SGD weight decay.
        step_size: epochs between learning-rate drops (None: a third of the epochs).
        gamma: learning-rate factor at each drop.
        margin: triplet margin (1 in the paper).
        val_fraction: fraction of originals held out for validation.
        seed: weights, split and triplet sampling.
        device: `auto`, `cpu` or `cuda[:N]`.
    """

    backbone: str = "resnet18"
    width: int | None = None
    input_size: int = 32
    in_channels: int = 3
    pretrained: str = "auto"
    epochs: int = 30
    batch_size: int = 64
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    step_size: int | None = None
    gamma: float = 0.1
    margin: float = 1.0
    val_fraction: float = 0.2
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        for name in ("input_size", "epochs", "batch_size", "in_channels"):
            if int(getattr(self, name)) < 1:
                raise FlauditError(f"TrainConfig.{name}={getattr(self, name)}; must be >= 1")
        if not 0 <= self.val_fraction < 1:
            raise FlauditError(f"TrainConfig.val_fraction={self.val_fraction}; must be in [0, 1)")
        if self.lr <= 0 or self.margin <= 0:
            raise FlauditError("TrainConfig.lr and margin must be > 0")
