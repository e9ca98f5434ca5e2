"""Optimisers over a batch of independent restarts, as plain functions.

Every restart is a row of one tensor, and `value_and_grad` returns per-restart losses and
gradients from one batched (vmapped) call. Adam is elementwise, so one Adam over the stacked
restarts is exactly R independent Adams. L-BFGS is not (its curvature pairs and step rules are
per problem), so `lbfgs_batched` keeps per-restart histories and stopping rules and follows
`torch.optim.LBFGS` (no line search) step for step for each restart.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from flaudit.progress import progress

ValueAndGrad = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class BatchedResult:
    """Outcome of a batched optimisation.

    Args:
        best: (R, ...) per restart, the iterate with the lowest loss seen.
        best_loss: (R,) its loss.
        final: (R, ...) the last iterate.
        iterations: optimiser iterations run.
    """

    best: torch.Tensor
    best_loss: torch.Tensor
    final: torch.Tensor
    iterations: int


def _track_best(best: torch.Tensor, best_loss: torch.Tensor, x: torch.Tensor, loss: torch.Tensor) -> None:
    # torch.where, not `if improved.any()`: no device-to-host sync per iteration on cuda.
    improved = torch.isfinite(loss) & (loss < best_loss)
    best.copy_(torch.where(improved.view(-1, *([1] * (x.dim() - 1))), x, best))
    best_loss.copy_(torch.where(improved, loss, best_loss))


def adam_batched(
    value_and_grad: ValueAndGrad,
    init: torch.Tensor,
    *,
    iterations: int,
    lr: float,
    signed: bool = True,
    lr_decay: bool = True,
    low: torch.Tensor | None = None,
    high: torch.Tensor | None = None,
    desc: str = "attack",
) -> BatchedResult:
    """Adam on (R, ...) restarts, as Inverting Gradients optimises.

    Args:
        value_and_grad: x (R, ...) -> (loss (R,), gradient (R, ...)).
        init: (R, ...) starting points.
        iterations: Adam steps.
        lr: step size.
        signed: use the sign of the gradient (Geiping et al.'s "signed" Adam).
        lr_decay: divide the step by 10 at 3/8, 5/8 and 7/8 of the iterations.
        low: lower box bound broadcastable to one restart (None: no box).
        high: upper box bound.
        desc: progress-bar label.
    """
    x = init.detach().clone().requires_grad_(True)
    optimizer = torch.optim.Adam([x], lr=lr)
    # breaching's milestones (max_iterations // 2.667, // 1.6, // 1.142), i.e. 3/8, 5/8, 7/8.
    milestones = [int(iterations // 2.667), int(iterations // 1.6), int(iterations // 1.142)]
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=0.1) if lr_decay else None
    best = x.detach().clone()
    best_loss = torch.full((x.shape[0],), float("inf"), device=x.device, dtype=x.dtype)
    done = 0
    for _ in progress(range(iterations), desc=desc):
        loss, g = value_and_grad(x.detach())
        _track_best(best, best_loss, x.detach(), loss.detach())
        finite = torch.isfinite(loss).view(-1, *([1] * (x.dim() - 1)))
        # A diverged restart stops moving instead of poisoning the others.
        g = torch.where(finite & torch.isfinite(g), g, torch.zeros_like(g))
        x.grad = g.sign() if signed else g
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        if low is not None and high is not None:
            with torch.no_grad():
                x.copy_(torch.maximum(torch.minimum(x, high), low))
        done += 1
    loss, _ = value_and_grad(x.detach())
    _track_best(best, best_loss, x.detach(), loss.detach())
    return BatchedResult(best=best, best_loss=best_loss, final=x.detach(), iterations=done)


def _two_loop(
    g: torch.Tensor, dirs: torch.Tensor, steps: torch.Tensor, ro: torch.Tensor, h_diag: torch.Tensor
) -> torch.Tensor:
    """L-BFGS direction for each restart; history rows with ro = 0 are empty and contribute nothing."""
    q = -g
    m = dirs.shape[1]
    alphas = []
    for i in range(m - 1, -1, -1):
        al = ro[:, i] * (steps[:, i] * q).sum(dim=1)
        q = q - al[:, None] * dirs[:, i]
        alphas.append(al)
    alphas.reverse()
    r = q * h_diag[:, None]
    for i in range(m):
        be = ro[:, i] * (dirs[:, i] * r).sum(dim=1)
        r = r + steps[:, i] * (alphas[i] - be)[:, None]
    return r


def lbfgs_batched(
    value_and_grad: ValueAndGrad,
    init: torch.Tensor,
    *,
    steps: int,
    lr: float = 1.0,
    max_iter: int = 20,
    max_eval: int | None = None,
    history_size: int = 100,
    tolerance_grad: float = 1e-7,
    tolerance_change: float = 1e-9,
    desc: str = "attack",
) -> BatchedResult:
    """`torch.optim.LBFGS` without line search, `steps` calls of `.step()`, for R independent restarts at once.

    Args:
        value_and_grad: x (R, N) -> (loss (R,), gradient (R, N)).
        init: (R, N) starting points.
        steps: outer L-BFGS steps (what DLG calls iterations).
        lr: step size.
        max_iter: inner iterations per step (torch's default 20).
        max_eval: objective evaluations per step (default max_iter * 5 / 4, as torch).
        history_size: curvature pairs kept.
        tolerance_grad: stop a step when the gradient's max-norm falls below this.
        tolerance_change: stop a step when the step or loss change falls below this.
        desc: progress-bar label.
    """
    max_eval = max_eval if max_eval is not None else max_iter * 5 // 4
    x = init.detach().clone()
    restarts, n = x.shape
    m = history_size
    dirs = x.new_zeros(restarts, m, n)
    stps = x.new_zeros(restarts, m, n)
    ro = x.new_zeros(restarts, m)
    h_diag = x.new_ones(restarts)
    d = x.new_zeros(restarts, n)
    t = x.new_zeros(restarts)
    prev_g = x.new_zeros(restarts, n)
    prev_loss = x.new_zeros(restarts)
    count = torch.zeros(restarts, dtype=torch.long, device=x.device)
    best = x.clone()
    best_loss = torch.full((restarts,), float("inf"), device=x.device, dtype=x.dtype)
    done = 0
    for _ in progress(range(steps), desc=desc):
        loss, g = value_and_grad(x)
        _track_best(best, best_loss, x, loss)
        active = (g.abs().amax(dim=1) > tolerance_grad) & torch.isfinite(loss)
        evals = torch.zeros(restarts, dtype=torch.long, device=x.device)
        inner = 0
        while bool(active.any()) and inner < max_iter:
            inner += 1
            count = count + active.long()
            first = count == 1
            y = g - prev_g
            s = d * t[:, None]
            ys = (y * s).sum(dim=1)
            accept = active & ~first & (ys > 1e-10)
            if bool(accept.any()):
                a3 = accept[:, None, None]
                dirs = torch.where(a3, torch.cat([dirs[:, 1:], y[:, None]], dim=1), dirs)
                stps = torch.where(a3, torch.cat([stps[:, 1:], s[:, None]], dim=1), stps)
                ro = torch.where(accept[:, None], torch.cat([ro[:, 1:], (1.0 / ys)[:, None]], dim=1), ro)
                h_diag = torch.where(accept, ys / (y * y).sum(dim=1), h_diag)
            direction = torch.where(first[:, None], -g, _two_loop(g, dirs, stps, ro, h_diag))
            d = torch.where(active[:, None], direction, d)
            prev_g = torch.where(active[:, None], g, prev_g)
            prev_loss = torch.where(active, loss, prev_loss)
            first_t = torch.clamp(1.0 / g.abs().sum(dim=1), max=1.0) * lr
            t = torch.where(active, torch.where(first, first_t, torch.full_like(t, lr)), t)
            gtd = (g * d).sum(dim=1)
            active = active & ~(gtd > -tolerance_change)
            x = x + torch.where(active[:, None], t[:, None] * d, torch.zeros_like(d))
            if inner != max_iter:
                new_loss, new_g = value_and_grad(x)
                _track_best(best, best_loss, x, new_loss)
                loss = torch.where(active, new_loss, loss)
                g = torch.where(active[:, None], new_g, g)
            evals = evals + active.long()
            stop = (
                (evals >= max_eval)
                | (g.abs().amax(dim=1) <= tolerance_grad)
                | ((d * t[:, None]).abs().amax(dim=1) <= tolerance_change)
                | ((loss - prev_loss).abs() < tolerance_change)
                | ~torch.isfinite(loss)
            )
            active = active & ~stop
        done += 1
    loss, _ = value_and_grad(x)
    _track_best(best, best_loss, x, loss)
    return BatchedResult(best=best, best_loss=best_loss, final=x, iterations=done)


__all__ = ["BatchedResult", "adam_batched", "lbfgs_batched"]
