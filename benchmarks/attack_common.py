"""Shared cases of the attack benchmarks: natural 32x32 photos from scikit-image, PSNR, the LeNet case."""

from __future__ import annotations

import torch
from skimage import data, transform

from attacks.base import SharedMetadata

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "cat", "immunohistochemistry", "hubble_deep_field", "colorwheel")


def photo(name: str, *, side: int = 32) -> torch.Tensor:
    """A scikit-image sample photo, centre-cropped to a square and resized: (3, side, side) in [0, 1]."""
    image = getattr(data, name)()
    h, w = image.shape[:2]
    s = min(h, w)
    image = image[(h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s, :3]
    image = transform.resize(image, (side, side), anti_aliasing=True)
    return torch.tensor(image, dtype=torch.float32).permute(2, 0, 1).contiguous()


def photo_crops(count: int, *, generator: torch.Generator, side: int = 32, scale: int = 128) -> torch.Tensor:
    """Random side x side crops of the photos resized to `scale` on the short side: (count, 3, side, side)."""
    bank = []
    for name in PHOTOS[:5]:
        image = getattr(data, name)()[..., :3]
        h, w = image.shape[:2]
        resized = transform.resize(image, (scale, max(scale, scale * w // h)), anti_aliasing=True)
        bank.append(torch.tensor(resized, dtype=torch.float32).permute(2, 0, 1))
    out = []
    for _ in range(count):
        src = bank[int(torch.randint(len(bank), (1,), generator=generator))]
        i = int(torch.randint(src.shape[1] - side + 1, (1,), generator=generator))
        j = int(torch.randint(src.shape[2] - side + 1, (1,), generator=generator))
        out.append(src[:, i : i + side, j : j + side])
    return torch.stack(out)


def meta_for(batch: int, *, side: int = 32, classes: int = 10) -> SharedMetadata:
    return SharedMetadata(
        protocol="fedsgd",
        num_examples=batch,
        batch_size=batch,
        local_steps=1,
        learning_rate=0.1,
        input_shape=(3, side, side),
        num_classes=classes,
        data_mean=(0.5, 0.5, 0.5),
        data_std=(0.5, 0.5, 0.5),
    )


def psnr(rec: torch.Tensor, ref: torch.Tensor) -> float:
    """Mean over images of 10 log10(1 / MSE) on [0, 1] images (same order; batch-1 cases need no matching)."""
    mse = ((rec - ref) ** 2).flatten(1).mean(dim=1).clamp_min(1e-12)
    return float((10 * torch.log10(1.0 / mse)).mean())


def matched_psnr(rec: torch.Tensor, ref: torch.Tensor) -> float:
    """PSNR after the Hungarian one-to-one matching of reconstructions to originals (by MSE)."""
    from scipy.optimize import linear_sum_assignment

    cost = ((rec[:, None] - ref[None]) ** 2).flatten(2).mean(dim=2)
    rows, cols = linear_sum_assignment(cost.numpy())
    return psnr(rec[rows], ref[cols])
