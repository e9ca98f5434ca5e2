"""FID: the Fréchet distance between Gaussians fitted to Inception-v3 pool features.

The features are pytorch-fid's (the TensorFlow FID Inception weights, resized to 299 and
scaled to [-1, 1] inside the network). A round holds a handful of images while the pool
features have 2048 dimensions, so the covariances are singular: `frechet_distance` adds a
small ridge to the diagonals when the matrix square root is not finite, as pytorch-fid does,
and every FID is reported with its sample size and feature dimension.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from scipy import linalg
from torch import nn

from audit.functional.weights import FID_INCEPTION
from flaudit.errors import WeightsUnavailableError

FEATURE_DIMS = (64, 192, 768, 2048)


@dataclass(frozen=True)
class FidResult:
    """An FID value with what it rests on.

    Args:
        value: the Fréchet distance.
        num_real: originals the real-side Gaussian was fitted to.
        num_fake: reconstructions the other side was fitted to.
        dims: feature dimension.
    """

    value: float
    num_real: int
    num_fake: int
    dims: int

    def to_dict(self) -> dict[str, float | int]:
        return {"value": self.value, "num_real": self.num_real, "num_fake": self.num_fake, "dims": self.dims}


def frechet_distance(
    mu1: np.ndarray | torch.Tensor,
    sigma1: np.ndarray | torch.Tensor,
    mu2: np.ndarray | torch.Tensor,
    sigma2: np.ndarray | torch.Tensor,
    *,
    eps: float = 1e-6,
) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2).

    d² = ||mu1 - mu2||² + Tr(sigma1 + sigma2 - 2·sqrt(sigma1·sigma2)).

    Args:
        mu1, mu2: (D,) means.
        sigma1, sigma2: (D, D) covariances.
        eps: ridge added to both diagonals when sqrt(sigma1·sigma2) is not finite
            (near-singular covariances), as in pytorch-fid.

    Returns:
        The distance d² (the quantity FID reports), as a float.
    """
    mu1, mu2 = (np.atleast_1d(_numpy(v)) for v in (mu1, mu2))
    sigma1, sigma2 = (np.atleast_2d(_numpy(v)) for v in (sigma1, sigma2))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"shapes differ: means {mu1.shape} vs {mu2.shape}, covariances {sigma1.shape} vs {sigma2.shape}")
    diff = mu1 - mu2
    covmean = _sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = _sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        # Round-off leaves tiny imaginary parts; large ones mean the inputs were not covariances.
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"imaginary component {np.max(np.abs(covmean.imag)):.3g} in sqrt(sigma1·sigma2)")
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def gaussian_statistics(features: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased, as pytorch-fid) covariance of (N, D) features."""
    feats = _numpy(features)
    if feats.shape[0] < 2:
        raise ValueError(f"FID needs at least 2 images per side, got {feats.shape[0]}")
    return feats.mean(axis=0), np.cov(feats, rowvar=False)


def load_inception(*, dims: int = 2048, device: str | torch.device = "cpu", download: bool = True) -> nn.Module:
    """pytorch-fid's `InceptionV3` returning the block for `dims` features, in eval mode.

    Raises:
        WeightsUnavailableError: the pytorch-fid package is missing, or the FID Inception weights are
            missing and cannot be downloaded.
    """
    if dims not in FEATURE_DIMS:
        raise ValueError(f"dims must be one of {FEATURE_DIMS}, got {dims}")
    try:
        from pytorch_fid.inception import InceptionV3
    except ImportError as err:
        raise WeightsUnavailableError(f"fid unavailable: the pytorch-fid package is missing ({err}); pip install pytorch-fid") from None
    FID_INCEPTION.ensure(download=download)
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            model = InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[dims]])
    except Exception as err:
        raise WeightsUnavailableError(FID_INCEPTION.missing_message(f"loading failed: {err}")) from None
    return model.to(device).eval()


@torch.no_grad()
def inception_features(images: torch.Tensor, *, model: nn.Module, batch_size: int = 64) -> torch.Tensor:
    """(N, D) pool features of [0, 1] images (grayscale repeated to RGB)."""
    device = next(model.parameters()).device
    feats = []
    for start in range(0, images.shape[0], batch_size):
        batch = images[start : start + batch_size].to(device, torch.float32)
        if batch.shape[1] == 1:
            batch = batch.expand(-1, 3, -1, -1)
        out = model(batch)[0]
        if out.shape[-2:] != (1, 1):
            # The 64/192/768-dim blocks end before Inception's own pooling; pool as pytorch-fid does.
            out = torch.nn.functional.adaptive_avg_pool2d(out, output_size=(1, 1))
        feats.append(out.flatten(1).to(torch.float64).cpu())
    return torch.cat(feats)


def fid_from_features(real: torch.Tensor | np.ndarray, fake: torch.Tensor | np.ndarray, *, eps: float = 1e-6) -> FidResult:
    """FID between two feature sets (N, D) and (M, D)."""
    mu1, sigma1 = gaussian_statistics(real)
    mu2, sigma2 = gaussian_statistics(fake)
    value = frechet_distance(mu1, sigma1, mu2, sigma2, eps=eps)
    return FidResult(value=value, num_real=int(real.shape[0]), num_fake=int(fake.shape[0]), dims=int(real.shape[1]))


def fid(originals: torch.Tensor, reconstructions: torch.Tensor, *, model: nn.Module, batch_size: int = 64) -> FidResult:
    """FID between originals and reconstructions ([0, 1] images) with a model from `load_inception`."""
    return fid_from_features(
        inception_features(originals, model=model, batch_size=batch_size),
        inception_features(reconstructions, model=model, batch_size=batch_size),
    )


def _sqrtm(matrix: np.ndarray) -> np.ndarray:
    # scipy warns (older versions) about singular products; the caller checks finiteness itself.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(linalg.sqrtm(matrix))


def _numpy(value: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().to(torch.float64).numpy()
    return np.asarray(value, dtype=np.float64)
