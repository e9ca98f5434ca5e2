"""One mean/worst summary of a metric over images, with one rule for NaN and infinities.

Used by the scorer (per client and per round), the sweep's privacy-utility table and the
metric study. The worst case is the most leaky image, since one recognisable image is
already a leak: the max for PSNR/SSIM, the min for MSE/LPIPS/SemSim. NaN means "nothing to
score" and is left out; +inf (the PSNR of a perfect reconstruction) is a value, kept in the
mean (which is then +inf) and the worst case, never capped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class MetricSummary:
    """One metric over a set of images.

    Args:
        mean: mean over the images (None when none has a value).
        worst: the most leaky image's value: max for PSNR/SSIM, min for MSE/LPIPS/SemSim.
        count: images scored.
        higher_is_leakier: the metric's direction.
    """

    mean: float | None
    worst: float | None
    count: int
    higher_is_leakier: bool

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "worst": self.worst, "count": self.count, "higher_is_leakier": self.higher_is_leakier}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MetricSummary:
        return cls(data["mean"], data["worst"], int(data["count"]), bool(data["higher_is_leakier"]))


def summarise(values: torch.Tensor | Iterable[float], *, higher_is_leakier: bool) -> MetricSummary:
    """Mean and worst case (most leaky image) of the values that are not NaN (+inf counts)."""
    values = torch.as_tensor(values if isinstance(values, torch.Tensor) else list(values), dtype=torch.float64).flatten()
    not_nan = values[~torch.isnan(values)]
    if not_nan.numel() == 0:
        return MetricSummary(None, None, 0, higher_is_leakier)
    worst = float(not_nan.max() if higher_is_leakier else not_nan.min())
    return MetricSummary(float(not_nan.mean()), worst, int(not_nan.numel()), higher_is_leakier)


def combine(summaries: Iterable[MetricSummary]) -> MetricSummary | None:
    """Summaries of groups (e.g. the rounds of a run) as one: the mean of their means, the worst of their worsts."""
    scored = [s for s in summaries if s.mean is not None]
    if not scored:
        return None
    higher = scored[0].higher_is_leakier
    means = summarise([s.mean for s in scored], higher_is_leakier=higher)  # type: ignore[misc]
    worst = summarise([s.worst for s in scored if s.worst is not None], higher_is_leakier=higher).worst
    return MetricSummary(means.mean, worst, sum(s.count for s in scored), higher)
