"""Per-image leakage metrics by name, with their direction and how to build them on a device.

A metric here is `fn(originals, reconstructions) -> (B,)` plus whether higher values mean a
better reconstruction (more leakage). Metrics that need weights are built lazily, so a missing
file makes only that metric unavailable. FID is a set metric and handled by the scorer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from audit import functional as AF
from fl_sim.scenario import METRIC_NAMES
from flaudit.registry import Registry

MetricFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class ImageMetric:
    """A per-image metric.

    Args:
        name: its name in records and dashboards.
        fn: f(originals, reconstructions) -> (B,) values, images (B, C, H, W) in [0, 1].
        higher_is_leakier: True when a higher value means a better reconstruction (PSNR, SSIM);
            False for distances (MSE, LPIPS, SemSim). The worst case of a round is the most
            leaky image: the max or the min accordingly.
    """

    name: str
    fn: MetricFn
    higher_is_leakier: bool


MetricBuilder = Callable[..., ImageMetric]

#: Builders by name: builder(*, device, download) -> ImageMetric; may raise WeightsUnavailableError.
IMAGE_METRICS: Registry[MetricBuilder] = Registry("metric")


def _register(name: str) -> Callable[[MetricBuilder], MetricBuilder]:
    return IMAGE_METRICS.register(name)


@_register("mse")
def _mse(*, device: torch.device, download: bool = True) -> ImageMetric:
    return ImageMetric("mse", lambda ori, rec: AF.mse(rec, ori), higher_is_leakier=False)


@_register("psnr")
def _psnr(*, device: torch.device, download: bool = True) -> ImageMetric:
    return ImageMetric("psnr", lambda ori, rec: AF.psnr(rec, ori), higher_is_leakier=True)


@_register("ssim")
def _ssim(*, device: torch.device, download: bool = True) -> ImageMetric:
    return ImageMetric("ssim", lambda ori, rec: AF.ssim_auto(rec, ori), higher_is_leakier=True)


@_register("lpips")
def _lpips(*, device: torch.device, download: bool = True) -> ImageMetric:
    net = AF.load_lpips(device=device, download=download)
    return ImageMetric("lpips", lambda ori, rec: AF.lpips(rec, ori, net=net), higher_is_leakier=False)


#: The set metric, scored per round over all of a round's images.
SET_METRICS = ("fid",)
DEFAULT_METRICS: tuple[str, ...] = METRIC_NAMES


def known_metrics() -> tuple[str, ...]:
    return IMAGE_METRICS.names() + SET_METRICS


def as_image_metric(name: str, value: ImageMetric | MetricFn) -> ImageMetric:
    """An extra metric given as a plain callable is a distance (lower = more leakage), like SemSim."""
    if isinstance(value, ImageMetric):
        return value
    return ImageMetric(name, value, higher_is_leakier=False)
