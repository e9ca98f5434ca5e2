"""Pixel metrics on batches of [0, 1] images: MSE, PSNR and SSIM, one value per image.

Conventions follow scikit-image (the reference the tests hold them to): PSNR is
10·log10(data_range² / MSE) per image, SSIM is Wang et al. (2004) with an 11×11 Gaussian
window (σ = 1.5), population covariances, constants K1 = 0.01 and K2 = 0.03, computed per
channel and averaged over the "valid" region that is not affected by padding, exactly as
`skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=1.0, channel_axis=...)` does.
"""

from __future__ import annotations

import torch


def _check_pair(preds: torch.Tensor, target: torch.Tensor) -> None:
    if preds.shape != target.shape:
        raise ValueError(f"images must have the same shape, got {tuple(preds.shape)} and {tuple(target.shape)}")
    if preds.dim() != 4:
        raise ValueError(f"expected (B, C, H, W) batches, got shape {tuple(preds.shape)}")


def mse(preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error per image.

    Args:
        preds: (B, C, H, W) reconstructions.
        target: (B, C, H, W) originals.

    Returns:
        (B,) float64 mean of the squared pixel differences of each image.
    """
    _check_pair(preds, target)
    if preds.dtype == torch.float64 or target.dtype == torch.float64:
        diff = preds.to(torch.float64) - target.to(torch.float64)
    else:
        diff = preds.to(torch.float32) - target.to(torch.float32)  # differences of [0, 1] values are exact enough
    return diff.square_().flatten(1).sum(dim=1, dtype=torch.float64) / diff[0].numel()


def psnr(preds: torch.Tensor, target: torch.Tensor, *, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio per image, 10·log10(data_range² / MSE), in dB.

    Identical images give +inf, as in scikit-image; average over images afterwards.

    Args:
        preds: (B, C, H, W) reconstructions in [0, data_range].
        target: (B, C, H, W) originals in [0, data_range].
        data_range: the images' value range.

    Returns:
        (B,) float64 PSNR in dB.
    """
    err = mse(preds, target)
    return 10.0 * torch.log10(data_range**2 / err)


def gaussian_window(*, kernel_size: int = 11, sigma: float = 1.5, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The normalised 1-D Gaussian of SSIM (scipy's `gaussian_filter` taps for the same radius)."""
    if kernel_size % 2 != 1 or kernel_size < 1:
        raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
    radius = kernel_size // 2
    x = torch.arange(-radius, radius + 1, dtype=dtype)
    window = torch.exp(-0.5 * (x / sigma) ** 2)
    return window / window.sum()


def ssim_window_for(height: int, width: int, *, kernel_size: int = 11, sigma: float = 1.5) -> tuple[int, float]:
    """The SSIM window to use for images of this size: the standard one, shrunk for tiny images.

    Images smaller than the 11×11 window (8×8 digits) get the largest odd window that fits,
    with σ scaled by the same factor, so the window still covers ±3.5σ as in scikit-image.
    """
    side = min(height, width)
    if side >= kernel_size:
        return kernel_size, sigma
    smaller = side if side % 2 == 1 else side - 1
    if smaller < 3:
        raise ValueError(f"images of {height}x{width} pixels are too small for SSIM (need at least 3x3)")
    return smaller, sigma * smaller / kernel_size


def ssim(
    preds: torch.Tensor,
    target: torch.Tensor,
    *,
    data_range: float = 1.0,
    kernel_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> torch.Tensor:
    """Structural similarity per image (Wang et al. 2004), Gaussian window, averaged over channels.

    Only the region where the window lies fully inside the image is averaged (scikit-image
    crops the same border), so padding never enters the score.

    Args:
        preds: (B, C, H, W) reconstructions in [0, data_range].
        target: (B, C, H, W) originals in [0, data_range].
        data_range: the images' value range.
        kernel_size: odd window side; the images must be at least this large
            (see `ssim_window_for` for tiny images).
        sigma: standard deviation of the Gaussian window.
        k1: luminance constant.
        k2: contrast constant.

    Returns:
        (B,) float64 mean SSIM of each image, in [-1, 1].
    """
    _check_pair(preds, target)
    batch, channels, height, width = preds.shape
    if height < kernel_size or width < kernel_size:
        raise ValueError(
            f"images of {height}x{width} pixels are smaller than the {kernel_size}x{kernel_size} SSIM window; "
            "pick a smaller window with ssim_window_for(height, width)"
        )
    # float32 images are filtered in float32 (errors ~1e-7, far below C2 = 9e-4; the BLAS
    # products are twice as fast); float64 images stay in float64.
    dtype = torch.float64 if preds.dtype == torch.float64 else torch.float32
    x = preds.to(dtype).reshape(batch * channels, height, width)
    y = target.to(dtype).reshape(batch * channels, height, width)
    window = gaussian_window(kernel_size=kernel_size, sigma=sigma, dtype=dtype).to(x.device)
    # Separable "valid" filtering as two matrix products with banded (Toeplitz) matrices: on
    # CPU a batched BLAS product is several times faster than conv2d for these small images.
    rows = _valid_filter_matrix(window, height)  # (H - k + 1, H)
    cols_t = _valid_filter_matrix(window, width).T.contiguous()  # (W, W - k + 1)

    def blur(m: torch.Tensor) -> torch.Tensor:
        return rows @ (m @ cols_t)

    mu_x, mu_y = blur(x), blur(y)
    # In-place arithmetic on the filtered maps: this is memory-bound, so fewer temporaries is faster.
    sigma_sum = blur(x * x).add_(blur(y * y))  # E[x²] + E[y²]
    cov2 = blur(x * y).mul_(2)  # 2 E[xy]
    mu_xy2 = (mu_x * mu_y).mul_(2)  # 2 μx μy
    mu_sq = mu_x.square_().add_(mu_y.square_())  # μx² + μy²
    c1 = (k1 * data_range) ** 2
    c2 = (k2 * data_range) ** 2
    numerator = cov2.sub_(mu_xy2).add_(c2).mul_(mu_xy2.add_(c1))  # (2σxy + C2)(2μxμy + C1)
    denominator = sigma_sum.sub_(mu_sq).add_(c2).mul_(mu_sq.add_(c1))  # (σx² + σy² + C2)(μx² + μy² + C1)
    ssim_map = numerator.div_(denominator)
    return ssim_map.reshape(batch, -1).to(torch.float64).mean(dim=1)


def _valid_filter_matrix(window: torch.Tensor, length: int) -> torch.Tensor:
    """(length - k + 1, length) matrix whose row i holds the window at offset i (valid correlation)."""
    k = window.shape[0]
    out = torch.zeros(length - k + 1, length, dtype=window.dtype, device=window.device)
    index = torch.arange(length - k + 1, device=window.device)
    for offset in range(k):  # k taps (11), not a loop over images
        out[index, index + offset] = window[offset]
    return out


def ssim_auto(preds: torch.Tensor, target: torch.Tensor, *, data_range: float = 1.0) -> torch.Tensor:
    """SSIM with the standard window, shrunk only where the images are smaller than it."""
    kernel_size, sigma = ssim_window_for(preds.shape[-2], preds.shape[-1])
    return ssim(preds, target, data_range=data_range, kernel_size=kernel_size, sigma=sigma)
