"""One-to-one matching of a reconstructed batch to the original batch (Hungarian assignment).

Gradient inversion recovers a batch as a set: its order is arbitrary. Every metric is
computed after pairing each reconstruction with one original so that the total cost is
minimal (scipy's `linear_sum_assignment`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from audit.functional.image import mse, ssim_auto
from flaudit.registry import Registry

PairCost = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

#: Per-pair costs by name: f(reconstructions, originals) -> (N,) cost, lower = better match.
ALIGN_COSTS: Registry[PairCost] = Registry("alignment cost")
ALIGN_COSTS.add("mse", lambda rec, ori: mse(rec, ori))
ALIGN_COSTS.add("neg_ssim", lambda rec, ori: -ssim_auto(rec, ori))
ALIGN_COSTS.add("ssim", ALIGN_COSTS.get("neg_ssim"))  # the scenario's `align_by: ssim`: maximise SSIM


def cost_matrix(originals: torch.Tensor, reconstructions: torch.Tensor, *, cost: str | PairCost = "mse") -> torch.Tensor:
    """Cost of pairing every original with every reconstruction.

    Args:
        originals: (N, C, H, W).
        reconstructions: (M, C, H, W).
        cost: a name in `ALIGN_COSTS` ("mse", "neg_ssim") or a batched pair cost.

    Returns:
        (N, M) cost matrix, entry [i, j] = cost(reconstructions[j], originals[i]).
    """
    fn = ALIGN_COSTS.get(cost) if isinstance(cost, str) else cost
    n, m = originals.shape[0], reconstructions.shape[0]
    ori = originals.unsqueeze(1).expand(n, m, *originals.shape[1:]).reshape(n * m, *originals.shape[1:])
    rec = reconstructions.unsqueeze(0).expand(n, m, *reconstructions.shape[1:]).reshape(n * m, *reconstructions.shape[1:])
    return fn(rec, ori).reshape(n, m)


def assignment(originals: torch.Tensor, reconstructions: torch.Tensor, *, cost: str | PairCost = "mse") -> torch.Tensor:
    """The minimum-cost one-to-one assignment of reconstructions to originals.

    Returns:
        (min(N, M),) int64 `perm`: original `i` is matched with reconstruction `perm[i]`.
        When there are fewer reconstructions than originals, only the first M originals in the
        cost-optimal matching are covered; use `align` to get the matched pairs.
    """
    costs = cost_matrix(originals, reconstructions, cost=cost).detach().cpu().to(torch.float64).numpy()
    costs = np.nan_to_num(costs, nan=np.inf, posinf=1e300, neginf=-1e300)
    rows, cols = linear_sum_assignment(costs)
    perm = torch.full((originals.shape[0],), -1, dtype=torch.int64)
    perm[torch.as_tensor(rows, dtype=torch.int64)] = torch.as_tensor(cols, dtype=torch.int64)
    return perm


def align(
    originals: torch.Tensor, reconstructions: torch.Tensor, *, cost: str | PairCost = "mse"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reorder the reconstructions so that row i is the best one-to-one match of original i.

    Args:
        originals: (N, C, H, W) in [0, 1].
        reconstructions: (M, C, H, W) in [0, 1], any order.
        cost: matching cost by name ("mse", "neg_ssim") or a batched pair cost.

    Returns:
        (aligned, perm): `aligned[i] = reconstructions[perm[i]]`. If M < N, originals without a
        reconstruction get perm -1 and are left out of `aligned` (so aligned has M rows, in the
        order of the originals that were matched); if M > N, surplus reconstructions are dropped.
    """
    if originals.shape[1:] != reconstructions.shape[1:]:
        raise ValueError(f"image shapes differ: originals {tuple(originals.shape[1:])}, reconstructions {tuple(reconstructions.shape[1:])}")
    perm = assignment(originals, reconstructions, cost=cost)
    matched = perm >= 0
    return reconstructions[perm[matched].to(reconstructions.device)], perm
