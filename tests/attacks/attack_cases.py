"""Small shared cases for the attack tests: tiny batches and protocol metadata."""

from __future__ import annotations

import torch

from attacks.base import SharedMetadata


def make_meta(
    *, batch: int, channels: int = 3, side: int = 32, protocol: str = "fedsgd", local_steps: int = 1, lr: float = 0.1
) -> SharedMetadata:
    return SharedMetadata(
        protocol=protocol,  # type: ignore[arg-type]
        num_examples=batch,
        batch_size=batch if protocol == "fedsgd" else max(1, batch // max(1, local_steps)),
        local_steps=local_steps,
        learning_rate=lr,
        input_shape=(channels, side, side),
        num_classes=10,
        data_mean=(0.5,) * channels,
        data_std=(0.5,) * channels,
    )


def smooth_images(count: int, *, channels: int = 3, side: int = 8, seed: int = 0) -> torch.Tensor:
    """Smooth random images in [0, 1] (upsampled noise), closer to natural images than white noise."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(count, channels, max(2, side // 4), max(2, side // 4), generator=g)
    return torch.nn.functional.interpolate(coarse, size=(side, side), mode="bilinear", align_corners=False)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1.0 / ((a - b) ** 2).mean()))
