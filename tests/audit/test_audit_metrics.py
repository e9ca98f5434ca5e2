"""Metrics against their references: scikit-image, the lpips package, scipy's sqrtm."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from scipy import linalg
from skimage import data as skdata
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from skimage.transform import resize

from audit.functional import align, frechet_distance, gaussian_statistics, load_lpips, lpips, mse, psnr, ssim, ssim_auto
from audit.functional.weights import WeightFile
from flaudit.errors import WeightsUnavailableError


def _pairs(channels: int, size: int, batch: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Natural images (scikit-image photos) and noisy, blurred versions of them."""
    photos = [skdata.astronaut(), skdata.chelsea(), skdata.coffee(), skdata.rocket()]
    imgs = np.stack([resize(p, (size, size), anti_aliasing=True) for p in photos[:batch]])  # (B, H, W, 3) in [0, 1]
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float()
    if channels == 1:
        x = x.mean(dim=1, keepdim=True)
    g = torch.Generator().manual_seed(seed)
    y = (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    return x, y


@pytest.mark.parametrize("channels,size", [(3, 32), (1, 32), (3, 24)])
def test_psnr_mse_match_skimage(channels: int, size: int) -> None:
    x, y = _pairs(channels, size)
    ours = psnr(y, x)
    for i in range(x.shape[0]):
        ref = peak_signal_noise_ratio(x[i].numpy().astype(np.float64), y[i].numpy().astype(np.float64), data_range=1.0)
        assert abs(ours[i].item() - ref) < 1e-4
    assert torch.allclose(mse(y, x), (y.double() - x.double()).pow(2).mean(dim=(1, 2, 3)))


@pytest.mark.parametrize("channels,size", [(3, 32), (1, 32), (3, 16), (1, 11)])
def test_ssim_matches_skimage(channels: int, size: int) -> None:
    x, y = _pairs(channels, size)
    ours = ssim(y, x)
    for i in range(x.shape[0]):
        ref = structural_similarity(
            x[i].numpy().astype(np.float64), y[i].numpy().astype(np.float64),
            gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0, channel_axis=0,
        )
        assert abs(ours[i].item() - ref) < 1e-4, (i, ours[i].item(), ref)


def test_ssim_identical_is_one_and_small_images_shrink_window() -> None:
    x, _ = _pairs(1, 8)
    assert torch.allclose(ssim_auto(x, x), torch.ones(x.shape[0], dtype=torch.float64))
    with pytest.raises(ValueError, match="smaller than"):
        ssim(x, x)


def test_align_restores_shuffled_batch_exactly() -> None:
    g = torch.Generator().manual_seed(1)
    originals = torch.rand(12, 3, 16, 16, generator=g)
    perm = torch.randperm(12, generator=g)
    shuffled = (originals[perm] + 0.05 * torch.randn(12, 3, 16, 16, generator=g)).clamp(0, 1)
    for cost in ("mse", "neg_ssim"):
        aligned, match = align(originals, shuffled, cost=cost)
        assert torch.equal(perm[match], torch.arange(12))
        assert torch.equal(aligned, shuffled[match])
    exact, _ = align(originals, originals[perm])
    assert torch.equal(exact, originals)


def test_align_fewer_reconstructions() -> None:
    originals = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    aligned, match = align(originals, originals[[3, 1]])
    assert match.tolist() == [-1, 1, -1, 0, -1]
    assert torch.equal(aligned, originals[[1, 3]])


def test_lpips_wrapper_matches_package_with_random_trunk() -> None:
    import lpips as lpips_package

    x, y = _pairs(3, 32)
    torch.manual_seed(123)
    ours_net = load_lpips(pretrained_backbone=False)
    torch.manual_seed(123)
    ref_net = lpips_package.LPIPS(net="alex", pnet_rand=True, verbose=False).eval()
    ours = lpips(y, x, net=ours_net)
    with torch.no_grad():
        ref = ref_net(2 * y - 1, 2 * x - 1).flatten().double()  # the package's own [-1, 1] input
    assert torch.allclose(ours, ref, atol=1e-6)
    assert (ours > 0).all()
    assert torch.allclose(lpips(x, x, net=ours_net), torch.zeros(4, dtype=torch.float64), atol=1e-6)
    # grayscale and tiny images go through (repeated to RGB, upsampled to 32)
    g1, g2 = _pairs(1, 8)
    assert lpips(g1, g2, net=ours_net).shape == (4,)


def test_missing_weights_name_file_and_path(torch_home, network_attempts) -> None:
    """Offline (FLAUDIT_OFFLINE=1, as in every test): the file and the folder are named, and no connection is tried."""
    from audit.functional import ALEXNET, FID_INCEPTION, load_inception

    for download in (False, True):
        with pytest.raises(WeightsUnavailableError) as err:
            load_lpips(download=download)
        assert f"download https://download.pytorch.org/models/alexnet-owt-7be5be79.pth and put it at {torch_home / ALEXNET.filename}" in str(err.value)
        assert ("download disabled" if not download else "FLAUDIT_OFFLINE is set") in str(err.value)
        with pytest.raises(WeightsUnavailableError, match=re.escape(f"put it at {torch_home / FID_INCEPTION.filename}")):
            load_inception(download=download)
    assert network_attempts == [] and list(torch_home.iterdir()) == []


def test_failed_download_names_the_error_and_leaves_no_partial_file(torch_home, online) -> None:
    """Downloads allowed but no network (the conftest refuses it): the reason is named, nothing is left behind."""
    from audit.functional import ALEXNET

    with pytest.raises(WeightsUnavailableError, match=r"could not be downloaded \(URLError: .*blocked in the tests.*put it at") as err:
        ALEXNET.ensure(download=True)
    assert str(torch_home / ALEXNET.filename) in str(err.value)
    assert online == ["download.pytorch.org:443"]
    refused = WeightFile("x", "nothing.pth", "http://127.0.0.1:9/nothing.pth", "a test file")  # loopback: allowed, nobody listens
    with pytest.raises(WeightsUnavailableError, match=r"\(URLError: .*Connection refused.*put it at"):
        refused.ensure(download=True)
    assert online == ["download.pytorch.org:443"]
    assert list(torch_home.iterdir()) == []


def _random_cov(dim: int, rng: np.random.Generator) -> np.ndarray:
    a = rng.normal(size=(dim, dim))
    return a @ a.T / dim + 0.1 * np.eye(dim)


def test_frechet_distance_matches_scipy_sqrtm() -> None:
    rng = np.random.default_rng(0)
    for dim in (1, 5, 32):
        mu1, mu2 = rng.normal(size=dim), rng.normal(size=dim)
        s1, s2 = _random_cov(dim, rng), _random_cov(dim, rng)
        ref = float(np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * linalg.sqrtm(s1 @ s2).real))
        assert abs(frechet_distance(mu1, s1, mu2, s2) - ref) < 1e-8 * max(1.0, abs(ref))
    # closed form for commuting (diagonal) covariances: sum (sqrt(a) - sqrt(b))^2
    a, b = rng.uniform(0.5, 2, size=8), rng.uniform(0.5, 2, size=8)
    expected = float(np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)) + 4.0
    assert abs(frechet_distance(np.zeros(8), np.diag(a), np.full(8, 1 / np.sqrt(2)), np.diag(b)) - expected) < 1e-9
    # identical Gaussians: zero
    s = _random_cov(6, rng)
    assert abs(frechet_distance(np.ones(6), s, np.ones(6), s)) < 1e-8


def test_frechet_distance_stable_for_singular_covariances() -> None:
    # 4 samples in 64 dimensions: rank-3 covariances, as a round's handful of images gives.
    rng = np.random.default_rng(1)
    f1, f2 = rng.normal(size=(4, 64)), rng.normal(size=(4, 64)) + 0.5
    mu1, s1 = gaussian_statistics(f1)
    mu2, s2 = gaussian_statistics(f2)
    value = frechet_distance(mu1, s1, mu2, s2)
    assert np.isfinite(value) and value > 0
    assert abs(frechet_distance(mu1, s1, mu1, s1)) < 1e-3


def test_fid_pipeline_with_a_stand_in_feature_network() -> None:
    """`fid` = Fréchet distance of the network's features; checked with a tiny stand-in for Inception."""
    from audit.functional import fid, fid_from_features, inception_features

    class PoolFeatures(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(1))

        def forward(self, x: torch.Tensor) -> list[torch.Tensor]:  # pytorch-fid returns a list of blocks
            return [(self.scale * torch.nn.functional.adaptive_avg_pool2d(x, 2)).flatten(1)[:, :, None, None]]

    net = PoolFeatures()
    g = torch.Generator().manual_seed(0)
    real = torch.rand(32, 1, 16, 16, generator=g)
    result = fid(real, real, model=net)
    assert result.num_real == 32 and result.dims == 12 and abs(result.value) < 1e-6  # grayscale repeated to RGB
    shifted = fid(real, (real + 0.3).clamp(0, 1), model=net)
    feats = inception_features(real, model=net)
    assert shifted.value > 0.05
    assert fid_from_features(feats, feats).value == pytest.approx(0.0, abs=1e-6)
