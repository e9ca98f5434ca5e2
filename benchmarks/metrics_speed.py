"""Images per second for PSNR + SSIM on 1,000 pairs of 32x32 RGB images: batched torch vs a per-image scikit-image loop.

The reference SemSim code scores one image at a time with scikit-image; the audit scores a
whole batch at once. Both compute the same numbers (checked here to 1e-4).

    PYTHONPATH=. python benchmarks/metrics_speed.py [--pairs 1000] [--repeats 3] [--threads N]

Both sides get one CPU core by default (the scikit-image loop is single-threaded), so the
figure compares algorithms, not core counts; `--threads 0` keeps torch's own thread count
(on a shared, busy machine OpenMP workers then wait on each other and the batched side slows).

The last line is `speedup_vs_skimage: X.XX`.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from audit.functional import psnr, ssim


def skimage_loop(originals: np.ndarray, reconstructions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    psnrs, ssims = [], []
    for ori, rec in zip(originals, reconstructions):
        psnrs.append(peak_signal_noise_ratio(ori, rec, data_range=1.0))
        ssims.append(structural_similarity(ori, rec, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                           data_range=1.0, channel_axis=0))
    return np.array(psnrs), np.array(ssims)


def batched(originals: torch.Tensor, reconstructions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return psnr(reconstructions, originals), ssim(reconstructions, originals)


def best_time(fn, repeats: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=1000)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads; 0 = torch's default (default: %(default)s)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    originals = torch.rand(args.pairs, 3, args.size, args.size, generator=g)
    reconstructions = (originals + 0.1 * torch.randn(originals.shape, generator=g)).clamp(0, 1)
    ori_np, rec_np = originals.double().numpy(), reconstructions.double().numpy()

    ref_psnr, ref_ssim = skimage_loop(ori_np, rec_np)
    our_psnr, our_ssim = batched(originals, reconstructions)
    err = max(np.abs(our_psnr.numpy() - ref_psnr).max(), np.abs(our_ssim.numpy() - ref_ssim).max())
    assert err < 1e-4, f"batched metrics disagree with scikit-image by {err}"

    t_ref = best_time(lambda: skimage_loop(ori_np, rec_np), args.repeats)
    t_ours = best_time(lambda: batched(originals, reconstructions), args.repeats)
    print(f"pairs: {args.pairs} of 3x{args.size}x{args.size}; torch threads: {torch.get_num_threads()}; max |diff| vs skimage: {err:.2e}")
    print(f"skimage per-image loop: {t_ref:.3f} s  ({args.pairs / t_ref:,.0f} images/s)")
    print(f"audit batched (torch):  {t_ours:.3f} s  ({args.pairs / t_ours:,.0f} images/s)")
    print(f"speedup_vs_skimage: {t_ref / t_ours:.2f}")


if __name__ == "__main__":
    main()
