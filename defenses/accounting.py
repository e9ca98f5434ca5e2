"""Privacy accounting for `clip_noise`, by Opacus' RDP analysis of the (subsampled) Gaussian mechanism.

Each round a client releases its clipped, noised update once: one Gaussian mechanism with
noise multiplier z. Local DP gets no amplification from the server's client sampling (the
client does not know whether it would have been sampled), so sample_rate defaults to 1.
"""

from __future__ import annotations

from dataclasses import dataclass

from opacus.accountants.analysis.rdp import compute_rdp, get_privacy_spent
from opacus.accountants.rdp import RDPAccountant

ORDERS: tuple[float, ...] = tuple(RDPAccountant.DEFAULT_ALPHAS)


@dataclass(frozen=True)
class PrivacySpent:
    """(epsilon, delta) after `steps` releases, and the Rényi order that gave the bound."""

    epsilon: float
    delta: float
    steps: int
    best_order: float


def gaussian_epsilon(*, noise_multiplier: float, steps: int, delta: float, sample_rate: float = 1.0) -> PrivacySpent:
    """Epsilon of `steps` compositions of the (subsampled) Gaussian mechanism at `delta`.

    Args:
        noise_multiplier: z, noise std / clipping norm (> 0; 0 means no privacy: epsilon = inf).
        steps: number of releases (rounds the client took part in).
        delta: target delta, in (0, 1).
        sample_rate: Poisson sampling rate of the release (1 for local DP).
    """
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    if noise_multiplier <= 0:
        return PrivacySpent(float("inf"), delta, steps, float("nan"))
    rdp = compute_rdp(q=sample_rate, noise_multiplier=noise_multiplier, steps=steps, orders=list(ORDERS))
    epsilon, order = get_privacy_spent(orders=list(ORDERS), rdp=rdp, delta=delta)
    return PrivacySpent(float(epsilon), delta, steps, float(order))
