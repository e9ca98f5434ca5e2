"""Objectives of gradient inversion, as plain functions on tensors.

Gradient distances compare the gradient a candidate batch would produce with the one the
client sent (`l2_distance` as in DLG, `cosine_distance` as in Inverting Gradients);
`total_variation` and `bn_statistics_loss` are the image priors of Inverting Gradients and
GradInversion. All of them work on one candidate; the attacks `vmap` them over restarts.
"""

from __future__ import annotations

from collections.abc import Sequence

import math

import torch
import torch.nn.functional as F

from attacks.params import LAYER_WEIGHTINGS


def layer_weights(count: int, *, scheme: str = "equal") -> tuple[float, ...]:
    """Per-tensor weights of a gradient distance, first layer first.

    `linear` and `exp` emphasise the first layers, where the input leaks most directly
    (the `weights` option of Geiping et al.'s inversefed).

    Args:
        count: number of gradient tensors.
        scheme: `equal`, `linear` (count, ..., 1) / count, or `exp` (softmax of (count, ..., 1)).
    """
    if scheme == "equal":
        return tuple(1.0 for _ in range(count))
    ramp = torch.arange(count, 0, -1, dtype=torch.float64)
    if scheme == "linear":
        return tuple((ramp / count).tolist())
    if scheme == "exp":
        return tuple(torch.softmax(ramp, dim=0).tolist())
    raise ValueError(f"unknown layer weighting {scheme!r}; known: {', '.join(LAYER_WEIGHTINGS)}")


def l2_distance(
    candidate: Sequence[torch.Tensor],
    target: Sequence[torch.Tensor],
    *,
    weights: Sequence[float] | None = None,
) -> torch.Tensor:
    """Sum over tensors of the (weighted) squared Euclidean distance, DLG's objective."""
    total = candidate[0].new_zeros(())
    for index, (rec, ref) in enumerate(zip(candidate, target, strict=True)):
        w = 1.0 if weights is None else weights[index]
        total = total + w * (rec - ref).pow(2).sum()
    return total


def cosine_distance(
    candidate: Sequence[torch.Tensor],
    target: Sequence[torch.Tensor],
    *,
    weights: Sequence[float] | None = None,
    eps: float = 1e-12,
) -> torch.Tensor:
    """1 - cosine similarity of the concatenated (weighted) gradients, Inverting Gradients' objective.

    The cosine is taken over all tensors at once (not averaged per layer), as in Geiping et
    al.'s code, which makes the objective invariant to the gradient's scale (learning rate,
    batch size, local steps).
    """
    dot = candidate[0].new_zeros(())
    norm_rec = candidate[0].new_zeros(())
    norm_ref = candidate[0].new_zeros(())
    for index, (rec, ref) in enumerate(zip(candidate, target, strict=True)):
        w = 1.0 if weights is None else weights[index]
        dot = dot + w * (rec * ref).sum()
        norm_rec = norm_rec + w * rec.pow(2).sum()
        norm_ref = norm_ref + w * ref.pow(2).sum()
    return 1.0 - dot / (norm_rec.sqrt() * norm_ref.sqrt() + eps)


def flatten_gradients(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """One flat vector of a gradient tuple (fewer, larger ops: what the batched attack loop wants)."""
    return torch.cat([t.reshape(-1) for t in tensors])


def element_weights(tensors: Sequence[torch.Tensor], weights: Sequence[float]) -> torch.Tensor:
    """Per-tensor weights spread to a flat per-element vector matching `flatten_gradients`."""
    return torch.cat(
        [torch.full((t.numel(),), float(w), dtype=t.dtype, device=t.device) for t, w in zip(tensors, weights, strict=True)]
    )


def flat_l2_distance(candidate: torch.Tensor, target: torch.Tensor, *, weights: torch.Tensor | None = None) -> torch.Tensor:
    """`l2_distance` on flattened gradients with per-element weights (over the last dim: (R, N) gives (R,))."""
    diff = (candidate - target).pow(2)
    return (diff if weights is None else diff * weights).sum(dim=-1)


def flat_cosine_distance(
    candidate: torch.Tensor, target: torch.Tensor, *, weights: torch.Tensor | None = None, eps: float = 1e-12
) -> torch.Tensor:
    """`cosine_distance` on flattened gradients with per-element weights (over the last dim, as `flat_l2_distance`)."""
    weighted = candidate if weights is None else candidate * weights
    dot = (weighted * target).sum(dim=-1)
    norm_rec = (weighted * candidate).sum(dim=-1)
    norm_ref = (target.pow(2) if weights is None else target.pow(2) * weights).sum(dim=-1)
    return 1.0 - dot / (norm_rec.sqrt() * norm_ref.sqrt() + eps)


def total_variation(images: torch.Tensor, *, eps: float = 1e-8) -> torch.Tensor:
    """Total variation of a (B, C, H, W) batch, averaged over pixels; of each row of (R, B, C, H, W), (R,).

    Forward differences with a zero border, `mean((|dx| + eps) + (|dy| + eps))`: breaching
    0.1.2's definition with its default exponents (anisotropic TV), so TV weights carry over.
    Written as two sums rather than one per-pixel map: it runs (with its backward) on every
    iteration of every restart, where each op saved counts.
    """
    dx = F.pad(images, (0, 1))[..., :, 1:] - images
    dy = F.pad(images, (0, 0, 0, 1))[..., 1:, :] - images
    per_candidate = math.prod(images.shape[-4:])
    return (dx.abs().flatten(-4).sum(dim=-1) + dy.abs().flatten(-4).sum(dim=-1)) / per_candidate + 2 * eps


def batch_norm_statistics(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and (biased) variance of a BN layer's input, as BN computes them in train mode."""
    dims = [0, *range(2, features.dim())]
    mean = features.mean(dim=dims)
    var = (features - mean.view(1, -1, *([1] * (features.dim() - 2)))).pow(2).mean(dim=dims)
    return mean, var


def bn_statistics_loss(
    statistics: Sequence[tuple[torch.Tensor, torch.Tensor]],
    running: Sequence[tuple[torch.Tensor, torch.Tensor]],
    *,
    first_multiplier: float = 10.0,
) -> torch.Tensor:
    """GradInversion's batch-statistics prior: sum over BN layers of ||mu - mu_run|| + ||var - var_run||.

    Args:
        statistics: per BN layer, the candidate batch's (mean, var) of the layer input.
        running: per BN layer, the model's (running_mean, running_var).
        first_multiplier: weight of the first BN layer (10 in DeepInversion and breaching).
    """
    total = statistics[0][0].new_zeros(()) if statistics else torch.zeros(())
    for index, ((mean, var), (run_mean, run_var)) in enumerate(zip(statistics, running, strict=True)):
        w = first_multiplier if index == 0 else 1.0
        # Norms over the channels: per row when the statistics are (R, C).
        total = total + w * (torch.linalg.vector_norm(mean - run_mean, dim=-1) + torch.linalg.vector_norm(var - run_var, dim=-1))
    return total


__all__ = [
    "LAYER_WEIGHTINGS",
    "batch_norm_statistics",
    "bn_statistics_loss",
    "cosine_distance",
    "element_weights",
    "flat_cosine_distance",
    "flat_l2_distance",
    "flatten_gradients",
    "l2_distance",
    "layer_weights",
    "total_variation",
]
