"""LPIPS (Zhang et al. 2018) through the `lpips` package: AlexNet trunk, v0.1 linear layers.

Inputs are [0, 1] images; the package expects [-1, 1], so the wrapper passes
`normalize=True`. Grayscale images are repeated to three channels, and images smaller than
32 pixels are upsampled (bilinear) to 32, the smallest size AlexNet's five stages accept.
"""

from __future__ import annotations

import contextlib
import io

import torch
import torch.nn.functional as F
from torch import nn

from audit.functional.weights import ALEXNET, lpips_linear_layers_path
from flaudit.errors import WeightsUnavailableError

MIN_SIDE = 32


def load_lpips(
    *, device: str | torch.device = "cpu", download: bool = True, pretrained_backbone: bool = True
) -> nn.Module:
    """Build the LPIPS network (`lpips.LPIPS(net="alex")`) in eval mode.

    Args:
        device: where to put it.
        download: fetch the AlexNet backbone from torchvision's URL when it is not cached.
        pretrained_backbone: False builds the package's randomly initialised trunk
            (`pnet_rand=True`, seeded by the caller), for tests where the ImageNet weights are
            missing; such a network is not the LPIPS metric and must not be reported as one.

    Raises:
        WeightsUnavailableError: the package, the backbone or the linear-layer weights cannot be had; the message
            names the file and where to put it.
    """
    try:
        import lpips as lpips_package
    except ImportError as err:
        raise WeightsUnavailableError(f"lpips unavailable: the lpips package is missing ({err}); pip install lpips") from None
    linear = lpips_linear_layers_path()
    if not linear.is_file():
        raise WeightsUnavailableError(
            f"lpips unavailable: the package's linear layers {linear} are missing; reinstall it (pip install --force-reinstall lpips)"
        )
    if pretrained_backbone:
        ALEXNET.ensure(download=download)
    # The package prints its set-up lines; keep the CLI's output clean.
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            net = lpips_package.LPIPS(net="alex", version="0.1", pnet_rand=not pretrained_backbone, verbose=False)
        except Exception as err:  # a corrupt cached file shows up here
            if pretrained_backbone:
                raise WeightsUnavailableError(ALEXNET.missing_message(f"loading failed: {err}")) from None
            raise
    return net.to(device).eval()


def prepare_lpips_input(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] (B, C, H, W) to what AlexNet accepts: 3 channels, at least 32 pixels a side."""
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    elif images.shape[1] != 3:
        raise ValueError(f"LPIPS needs 1 or 3 channels, got {images.shape[1]}")
    side = min(images.shape[-2:])
    if side < MIN_SIDE:
        scale = MIN_SIDE / side
        size = (round(images.shape[-2] * scale), round(images.shape[-1] * scale))
        images = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
    return images


@torch.no_grad()
def lpips(
    preds: torch.Tensor, target: torch.Tensor, *, net: nn.Module, batch_size: int = 256
) -> torch.Tensor:
    """LPIPS distance per image (lower = more similar).

    Args:
        preds: (B, C, H, W) reconstructions in [0, 1].
        target: (B, C, H, W) originals in [0, 1].
        net: a network from `load_lpips`.
        batch_size: images per forward pass.

    Returns:
        (B,) float64 distances.
    """
    if preds.shape != target.shape:
        raise ValueError(f"images must have the same shape, got {tuple(preds.shape)} and {tuple(target.shape)}")
    device = next(net.parameters()).device
    out = []
    for start in range(0, preds.shape[0], batch_size):
        x = prepare_lpips_input(preds[start : start + batch_size].to(device, torch.float32))
        y = prepare_lpips_input(target[start : start + batch_size].to(device, torch.float32))
        out.append(net(x, y, normalize=True).flatten().to(torch.float64).cpu())
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)
