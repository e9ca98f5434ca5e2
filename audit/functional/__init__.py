"""Leakage metrics as plain functions on batches of [0, 1] images (B, C, H, W).

Per image: `mse`, `psnr`, `ssim`, `lpips`; per set: `fid` (with `frechet_distance` apart);
and `align`, the one-to-one matching of reconstructions to originals that comes before any
metric.
"""

from audit.functional.align import ALIGN_COSTS, align, assignment, cost_matrix
from audit.functional.fid import FidResult, fid, fid_from_features, frechet_distance, gaussian_statistics, inception_features, load_inception
from audit.functional.image import gaussian_window, mse, psnr, ssim, ssim_auto, ssim_window_for
from audit.functional.lpips import load_lpips, lpips
from audit.functional.weights import ALEXNET, FID_INCEPTION, WEIGHT_FILES, WeightFile

__all__ = [
    "ALEXNET", "ALIGN_COSTS", "FID_INCEPTION", "FidResult", "WEIGHT_FILES", "WeightFile", "align", "assignment",
    "cost_matrix", "fid", "fid_from_features", "frechet_distance", "gaussian_statistics", "gaussian_window",
    "inception_features", "load_inception", "load_lpips", "lpips", "mse", "psnr", "ssim", "ssim_auto", "ssim_window_for",
]
