"""SemSim embedding networks by name, and their weights_only-safe checkpoints.

The paper trains a ResNet-18 whose classification layer is removed (`fc = Identity`), so the
embedding is the pooled feature vector; the triplet loss and the score use it L2-normalised.
ImageNet initialisation is used when torchvision's weights are already in the torch hub
cache (nothing is downloaded here: the checkpoint states which initialisation was used).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from flaudit.errors import CaptureCorruptError, FlauditError, WeightsUnavailableError
from flaudit.registry import Registry
from semsim.config import BACKBONE_NAMES

CHECKPOINT_FORMAT = "flaudit-semsim/1"

# torchvision's file names for the ImageNet weights (torch hub cache, `checkpoints/`).
IMAGENET_FILES = {
    "resnet18": "resnet18-f37072fd.pth",
    "resnet50": "resnet50-11ad3fa6.pth",
}


@dataclass(frozen=True)
class BackboneSpec:
    """Architecture of a SemSim embedding network.

    Args:
        name: registry name (`resnet18`, `resnet50`, `lenet`).
        in_channels: image channels the network takes (3: grey images are repeated).
        input_size: square side the images are resized to.
        width: base width (64 for the ResNets as published; smaller is faster on CPU).
        cifar_stem: 3x3/1 stem without max-pool, for small images (the default for < 96 px).
    """

    name: str = "resnet18"
    in_channels: int = 3
    input_size: int = 32
    width: int | None = None
    cifar_stem: bool | None = None

    @property
    def uses_cifar_stem(self) -> bool:
        return self.cifar_stem if self.cifar_stem is not None else self.input_size < 96

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "in_channels": self.in_channels, "input_size": self.input_size, "width": self.width, "cifar_stem": self.cifar_stem}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "BackboneSpec":
        return cls(**data)


BACKBONES: Registry[Callable[[BackboneSpec], nn.Module]] = Registry("SemSim backbone")


def _torchvision_resnet(depth: int) -> Callable[[BackboneSpec], nn.Module]:
    def build(spec: BackboneSpec) -> nn.Module:
        from torchvision.models.resnet import BasicBlock, Bottleneck

        block, layers = (BasicBlock, [2, 2, 2, 2]) if depth == 18 else (Bottleneck, [3, 4, 6, 3])
        model = _ResNet(block, layers, spec.width or 64)
        if spec.uses_cifar_stem:
            model.conv1 = nn.Conv2d(spec.in_channels, model.conv1.out_channels, 3, stride=1, padding=1, bias=False)
            model.maxpool = nn.Identity()  # type: ignore[assignment]
        elif spec.in_channels != 3:
            model.conv1 = nn.Conv2d(spec.in_channels, model.conv1.out_channels, 7, stride=2, padding=3, bias=False)
        model.fc = nn.Identity()  # type: ignore[assignment]
        return model

    return build


def _resnet_class() -> type:
    from torchvision.models.resnet import ResNet

    class ResNetWidth(ResNet):
        """torchvision's ResNet with a base width other than 64 (same module names, so
        ImageNet weights load at width 64); narrower ones make CPU training practical."""

        def __init__(self, block: type, layers: list[int], width: int) -> None:
            nn.Module.__init__(self)
            self._norm_layer = nn.BatchNorm2d
            self.inplanes, self.dilation, self.groups, self.base_width = width, 1, 1, 64
            self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
            self.bn1 = nn.BatchNorm2d(width)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
            self.layer1 = self._make_layer(block, width, layers[0])
            self.layer2 = self._make_layer(block, 2 * width, layers[1], stride=2)
            self.layer3 = self._make_layer(block, 4 * width, layers[2], stride=2)
            self.layer4 = self._make_layer(block, 8 * width, layers[3], stride=2)
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Identity()
            for module in self.modules():
                if isinstance(module, nn.Conv2d):
                    nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    return ResNetWidth


def _ResNet(block: type, layers: list[int], width: int) -> nn.Module:
    return _resnet_class()(block, layers, width)


class LeNetEmbedding(nn.Module):
    """A small LeNet-style embedding (two conv+pool stages, one hidden layer), for tiny images."""

    def __init__(self, spec: BackboneSpec) -> None:
        super().__init__()
        w = spec.width or 16
        self.features = nn.Sequential(
            nn.Conv2d(spec.in_channels, w, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 5, padding=2),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(4),
        )
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(2 * w * 16, 8 * w), nn.ReLU(), nn.Linear(8 * w, 8 * w))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


BACKBONES.add("resnet18", _torchvision_resnet(18))
BACKBONES.add("resnet50", _torchvision_resnet(50))
BACKBONES.add("lenet", LeNetEmbedding)
# `semsim.config` names the backbones without torch (the config is checked before any heavy import); both must agree.
assert BACKBONES.names() == BACKBONE_NAMES, (BACKBONES.names(), BACKBONE_NAMES)


def hub_checkpoint_dir() -> Path:
    """Where torchvision keeps downloaded weights (`$TORCH_HOME/hub/checkpoints`)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def imagenet_weights_path(name: str) -> Path | None:
    """Path of the ImageNet weights for backbone `name` in the torch hub cache, or None if it has none."""
    file = IMAGENET_FILES.get(name)
    return hub_checkpoint_dir() / file if file else None


def build_backbone(spec: BackboneSpec, *, pretrained: str = "auto", seed: int | None = None) -> tuple[nn.Module, str]:
    """Build the embedding network `spec` names.

    Args:
        spec: the architecture.
        pretrained: `auto` (ImageNet weights when cached, else from scratch), `imagenet`
            (required; raises when unavailable) or `none`.
        seed: makes the random initialisation reproducible.

    Returns:
        The network and its initialisation, `imagenet` or `scratch`.

    Raises:
        WeightsUnavailableError: `pretrained="imagenet"` and the cached weights are absent
            (the message names the file and the folder to put it in).
    """
    if pretrained not in ("auto", "imagenet", "none"):
        raise FlauditError(f"pretrained={pretrained!r}; use auto, imagenet or none")
    factory = BACKBONES.get(spec.name)
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        model = factory(spec)
    if pretrained == "none":
        return model, "scratch"
    path = imagenet_weights_path(spec.name)
    if path is None or (spec.width not in (None, 64)):
        if pretrained == "imagenet":
            raise WeightsUnavailableError(f"backbone {spec.name!r} (width {spec.width}) has no ImageNet weights; use pretrained=auto or none")
        return model, "scratch"
    if not path.is_file():
        if pretrained == "imagenet":
            raise WeightsUnavailableError(
                f"ImageNet weights for {spec.name} unavailable: put {path.name} (torchvision's) at {path}, or train from scratch with --pretrained none"
            )
        return model, "scratch"
    state = torch.load(path, map_location="cpu", weights_only=True)
    own = model.state_dict()
    # The CIFAR stem's 3x3 conv1 (or a grey conv1) cannot take the 7x7 RGB kernel; everything else transfers.
    compatible = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(compatible, strict=False)
    return model, "imagenet"


@dataclass(frozen=True)
class Preprocess:
    """How images enter the network: resized to `input_size`, then (x - mean) / std per channel."""

    input_size: int
    in_channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __call__(self, images01: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) images in [0, 1] -> normalised network input (N, in_channels, S, S)."""
        x = images01.float()
        if x.dim() == 3:
            x = x.unsqueeze(0)
        if x.shape[1] != self.in_channels:
            if x.shape[1] == 1:
                x = x.expand(-1, self.in_channels, -1, -1)
            elif self.in_channels == 1:
                x = x.mean(dim=1, keepdim=True)
            else:
                raise FlauditError(f"images have {x.shape[1]} channels; the SemSim model takes {self.in_channels}")
        if x.shape[-2:] != (self.input_size, self.input_size):
            x = nn.functional.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False, antialias=True)
        mean = torch.tensor(self.mean, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, -1, 1, 1)
        return (x - mean) / std


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class SemSimModel:
    """A trained SemSim embedding: network, preprocessing and what the checkpoint says about itself."""

    network: nn.Module
    spec: BackboneSpec
    preprocess: Preprocess
    init: str
    info: dict[str, Any]

    @torch.no_grad()
    def embed(self, images01: torch.Tensor, *, batch_size: int = 128) -> torch.Tensor:
        """L2-normalised embeddings of (N, C, H, W) images in [0, 1], batched, on the network's device."""
        device = next(self.network.parameters()).device
        self.network.eval()
        out = []
        for start in range(0, images01.shape[0], batch_size):
            x = self.preprocess(images01[start : start + batch_size].to(device))
            out.append(nn.functional.normalize(self.network(x), dim=1))
        if not out:
            return torch.zeros(0, 1, device=device)
        return torch.cat(out)


def embed_train(network: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """L2-normalised embeddings of already-preprocessed inputs, with gradients (training)."""
    return nn.functional.normalize(network(x), dim=1)


def checkpoint_dict(network: nn.Module, spec: BackboneSpec, preprocess: Preprocess, *, init: str, info: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint of plain tensors, numbers, strings, lists and dicts only (loads with weights_only=True)."""
    return {
        "format": CHECKPOINT_FORMAT,
        "backbone": spec.to_dict(),
        "preprocess": {"input_size": preprocess.input_size, "in_channels": preprocess.in_channels, "mean": list(preprocess.mean), "std": list(preprocess.std)},
        "init": init,
        "distance": "l2 of l2-normalised embeddings",
        "state_dict": {k: v.detach().cpu().clone() for k, v in network.state_dict().items()},
        "info": info,
    }


def save_checkpoint(path: str | Path, checkpoint: dict[str, Any]) -> Path:
    """Save a checkpoint atomically with torch.save."""
    import io

    from flaudit.io import atomic_write_bytes

    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    return atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(checkpoint: str | Path | dict[str, Any] | SemSimModel, *, device: str | torch.device | None = None) -> SemSimModel:
    """Load a SemSim checkpoint (path or dict) with `torch.load(weights_only=True)`.

    Raises:
        WeightsUnavailableError: the file does not exist.
        CaptureCorruptError: the file is not a SemSim checkpoint.
    """
    from flaudit.device import resolve_device

    if isinstance(checkpoint, SemSimModel):
        return checkpoint
    if not isinstance(checkpoint, dict):
        path = Path(checkpoint)
        if not path.is_file():
            raise WeightsUnavailableError(f"SemSim checkpoint {path} not found; train one with `flaudit semsim train --annotations FILE --out {path}`")
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            raise CaptureCorruptError(f"{path}: not a loadable SemSim checkpoint ({type(err).__name__}: {err})") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise CaptureCorruptError(f"not a SemSim checkpoint (expected format {CHECKPOINT_FORMAT!r})")
    spec = BackboneSpec.from_dict(checkpoint["backbone"])
    network, _ = build_backbone(spec, pretrained="none")
    network.load_state_dict(checkpoint["state_dict"])
    p = checkpoint["preprocess"]
    preprocess = Preprocess(int(p["input_size"]), int(p["in_channels"]), tuple(p["mean"]), tuple(p["std"]))
    network.to(resolve_device(device)).eval()
    return SemSimModel(network, spec, preprocess, str(checkpoint["init"]), dict(checkpoint.get("info", {})))
