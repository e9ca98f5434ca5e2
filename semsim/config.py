"""SemSim's settings, without torch: the study's scenario loader and the command line check them
before any heavy import, with the rule and message of every config key (`flaudit.fields`)."""

from __future__ import annotations

from dataclasses import dataclass

from flaudit.fields import check, spec

BACKBONE_NAMES: tuple[str, ...] = ("lenet", "resnet18", "resnet50")  # `semsim.model.BACKBONES`, named without torch
PRETRAINED: tuple[str, ...] = ("auto", "imagenet", "none")


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

    backbone: str = spec("resnet18", choices=BACKBONE_NAMES, doc="embedding network")
    width: int | None = spec(None, ge=1, doc="the backbone's base width (default: the published one)")
    input_size: int = spec(32, ge=1, doc="image side the network sees")
    in_channels: int = spec(3, ge=1, doc="network input channels (grey images are repeated)")
    pretrained: str = spec("auto", choices=PRETRAINED, doc="ImageNet init from the torch hub cache (auto: when present)")
    epochs: int = spec(30, ge=1, doc="passes over the training triplets")
    batch_size: int = spec(64, ge=1, doc="triplets per step")
    lr: float = spec(0.01, gt=0.0, doc="SGD learning rate")
    momentum: float = spec(0.9, ge=0.0, doc="SGD momentum")
    weight_decay: float = spec(5e-4, ge=0.0, doc="SGD weight decay")
    step_size: int | None = spec(None, ge=1, doc="epochs per learning-rate drop (default: a third of the epochs)")
    gamma: float = spec(0.1, gt=0.0, doc="learning-rate factor at each drop")
    margin: float = spec(1.0, gt=0.0, doc="triplet margin")
    val_fraction: float = spec(0.2, ge=0.0, lt=1.0, doc="share of originals held out for validation")
    seed: int = spec(0, ge=0, doc="weights, split and triplet sampling")
    device: str = spec("auto", doc="auto, cpu or cuda[:N]")

    def __post_init__(self) -> None:
        check(self)


@dataclass(frozen=True)
class ScoreConfig:
    """`flaudit semsim score`'s settings (`semsim.score.semsim`)."""

    batch_size: int = spec(128, ge=1, doc="images per forward pass")

    def __post_init__(self) -> None:
        check(self)


@dataclass(frozen=True)
class CorrelateConfig:
    """`flaudit semsim correlate`'s settings (`semsim.correlate.correlate_rows`)."""

    n_boot: int = spec(2000, ge=1, doc="bootstrap resamples for the CIs")
    confidence: float = spec(0.95, gt=0.0, lt=1.0, doc="confidence level of the CIs")
    seed: int = spec(0, ge=0, doc="seed of the bootstrap")

    def __post_init__(self) -> None:
        check(self)


ANNOTATION_MODES: tuple[str, ...] = ("class", "pair")  # `semsim.annotate.items.MODES`, named without torch


@dataclass(frozen=True)
class AnnotateConfig:
    """`flaudit annotate`'s settings (`semsim.annotate`)."""

    port: int = spec(8765, ge=1, le=65535, doc="TCP port of the page")
    annotators: int = spec(1, ge=1, doc="different people who judge each item")
    mode: str | None = spec(None, choices=ANNOTATION_MODES,
                            doc="class: pick the category among the oracle's candidates; pair: original beside "
                                "reconstruction, same or not (default: pair for identity datasets, else class)")

    def __post_init__(self) -> None:
        check(self)
