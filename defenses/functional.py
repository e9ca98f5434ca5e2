"""Defenses as pure functions on a tuple of tensors (one client update).

Each returns a new tuple and leaves its input untouched. Randomness comes only from the
`generator` argument, so a seeded run is reproducible.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

Update = tuple[torch.Tensor, ...]


def gaussian(update: Sequence[torch.Tensor], *, sigma: float, generator: torch.Generator) -> Update:
    """Add N(0, sigma^2) noise to every entry (the DLG paper's "Gaussian noise" defense).

    Args:
        update: the tensors of one update.
        sigma: the noise standard deviation (>= 0).
        generator: the source of randomness (on the update's device).
    """
    _check_nonnegative("sigma", sigma)
    if sigma == 0:
        return tuple(t.clone() for t in update)
    return tuple(
        t + sigma * torch.randn(t.shape, generator=generator, device=t.device, dtype=t.dtype) for t in update
    )


def prune(update: Sequence[torch.Tensor], *, ratio: float) -> Update:
    """Zero the `ratio` share of smallest-magnitude entries of each tensor (DLG's gradient pruning).

    Exactly floor(ratio * n) entries of an n-entry tensor are zeroed and the n - floor(ratio * n)
    largest in magnitude are kept (ties broken by position, deterministically).

    Args:
        update: the tensors of one update.
        ratio: the pruned share per tensor, in [0, 1].
    """
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"prune: ratio must be in [0, 1], got {ratio}")
    pruned = []
    for tensor in update:
        flat = tensor.reshape(-1)
        n_zero = int(ratio * flat.numel())
        keep = flat.numel() - n_zero
        out = torch.zeros_like(flat)
        if keep > 0:
            index = torch.topk(flat.abs(), keep, sorted=False).indices
            out[index] = flat[index]
        pruned.append(out.reshape(tensor.shape))
    return tuple(pruned)


def global_norm(update: Sequence[torch.Tensor]) -> torch.Tensor:
    """The L2 norm of the whole update (all tensors flattened together)."""
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t.float()) for t in update]))


def clip(update: Sequence[torch.Tensor], *, max_norm: float) -> Update:
    """Scale the whole update so that its L2 norm is at most `max_norm`."""
    if max_norm <= 0:
        raise ValueError(f"clip: max_norm must be > 0, got {max_norm}")
    factor = torch.clamp(max_norm / (global_norm(update) + 1e-12), max=1.0)
    return tuple(t * factor.to(t.dtype) for t in update)


def clip_noise(
    update: Sequence[torch.Tensor], *, clip_norm: float, noise_multiplier: float, generator: torch.Generator
) -> Update:
    """Clip the update to L2 norm C, then add N(0, (z*C)^2) noise: the DP-FedAvg / local-DP Gaussian mechanism.

    Args:
        update: the tensors of one update.
        clip_norm: C, the L2 bound on the update (the mechanism's sensitivity).
        noise_multiplier: z, the noise std in units of C.
        generator: the source of randomness.
    """
    _check_nonnegative("noise_multiplier", noise_multiplier)
    return gaussian(clip(update, max_norm=clip_norm), sigma=noise_multiplier * clip_norm, generator=generator)


def _check_nonnegative(name: str, value: float) -> None:
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
