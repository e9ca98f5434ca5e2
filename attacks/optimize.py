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
    # The fused kernel: one op per step instead of a dozen (Adam's arithmetic, to float rounding).
    optimizer = torch.optim.Adam([x], lr=lr, fused=x.dtype in (torch.float32, torch.float64) and x.device.type in ("cpu", "cuda"))
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
                x.clamp_(low, high)
        done += 1
    loss, _ = value_and_grad(x.detach())
    _track_best(best, best_loss, x.detach(), loss.detach())
    return BatchedResult(best=best, best_loss=best_loss, final=x.detach(), iterations=done)


@dataclass
class _History:
    """Per-row L-BFGS curvature pairs in ring buffers, with the Gram matrices the compact form needs.

    `pairs[r, k]` holds row r's k-th slot, (step s, gradient change y), written at iteration
    `time[r, k]` (-1: empty). Rows accept pairs at different iterations, so each has its own
    write position; slots fill from 0 upwards, so the first `filled` slots (a host-side bound,
    no sync) hold every row's pairs. Each inner iteration reads the buffer twice: once for every
    dot product it needs, once to apply the inverse Hessian (`direction`).
    """

    pairs: torch.Tensor  # (R, m, 2, N): s then y of each slot
    sy: torch.Tensor  # (R, m, m) s_i . y_j
    yy: torch.Tensor  # (R, m, m) y_i . y_j
    time: torch.Tensor  # (R, m) when each slot was written; -1 empty
    pos: torch.Tensor  # (R,) next slot to write
    upper_mask: torch.Tensor  # (m, m) float64, 1 on and above the diagonal
    filled: int = 0  # upper bound of the slots in use, over all rows

    @classmethod
    def empty(cls, rows: int, size: int, n: int, like: torch.Tensor) -> _History:
        return cls(
            like.new_zeros(rows, size, 2, n), like.new_zeros(rows, size, size), like.new_zeros(rows, size, size),
            torch.full((rows, size), -1, dtype=torch.long, device=like.device),
            torch.zeros(rows, dtype=torch.long, device=like.device),
            torch.ones(size, size, dtype=torch.float64, device=like.device).triu(),
        )

    def step(self, accept: torch.Tensor, s: torch.Tensor, y: torch.Tensor, g: torch.Tensor, now: torch.Tensor,
             h_diag: torch.Tensor) -> torch.Tensor:
        """Write (s, y) into each accepting row's next slot (its oldest once full), then return
        -H g per row, H the inverse Hessian of the row's pairs with H0 = h_diag I.

        The direction is the compact form of Byrd, Nocedal and Schnabel (1994, Thm 2.2), equal to
        the two-loop recursion: two passes over the buffer and two small triangular solves instead
        of 4m vector operations. The m x m algebra runs in float64 (cheap; R can be
        ill-conditioned); empty slots decouple (unit diagonal, zero right-hand side).
        """
        rows, size, _, n = self.pairs.shape
        k = min(size, self.filled + 1)
        view = self.pairs[:, :k].reshape(rows, 2 * k, n)
        # Pass 1: every slot's s and y against s_new, y_new and g (the slot about to be replaced included; fixed below).
        # (3, N) x (N, 2k), not (2k, N) x (N, 3): torch's CPU bmm is an order of magnitude slower in that layout.
        dots = torch.bmm(torch.stack([s, y, g], dim=1), view.transpose(1, 2)).transpose(1, 2).reshape(rows, k, 2, 3)
        ys, yy_new = (s * y).sum(1), (y * y).sum(1)
        sg, yg = (s * g).sum(1), (y * g).sum(1)
        slot = self.pos[:, None]
        one_hot = torch.zeros(rows, k, dtype=torch.bool, device=s.device).scatter_(1, slot, accept[:, None])
        # Write the pair: one row copy per restart (rows that do not accept write back their old pair).
        flat = self.pairs.view(rows * size, 2 * n)
        at = torch.arange(rows, device=s.device) * size + self.pos
        flat.index_copy_(0, at, torch.where(accept[:, None], torch.cat([s, y], dim=1), flat.index_select(0, at)))
        self.time = torch.where(one_hot, now[:, None], self.time[:, :k]) if k == size else torch.cat(
            [torch.where(one_hot, now[:, None], self.time[:, :k]), self.time[:, k:]], dim=1)
        # The new slot's row and column of S^T Y and Y^T Y.
        sy_row = torch.where(one_hot, ys[:, None], dots[:, :, 1, 0])  # s_new . y_j (j's y against s_new)
        sy_col = torch.where(one_hot, ys[:, None], dots[:, :, 0, 1])  # s_i . y_new
        yy_line = torch.where(one_hot, yy_new[:, None], dots[:, :, 1, 1])
        a = torch.where(one_hot, sg[:, None], dots[:, :, 0, 2])  # S^T g
        b = torch.where(one_hot, yg[:, None], dots[:, :, 1, 2])  # Y^T g
        sy, yy = self.sy[:, :k, :k], self.yy[:, :k, :k]
        row_mask, col_mask = one_hot[:, :, None], one_hot[:, None, :]
        sy = torch.where(row_mask, sy_row[:, None, :], torch.where(col_mask, sy_col[:, :, None], sy))
        yy = torch.where(row_mask, yy_line[:, None, :], torch.where(col_mask, yy_line[:, :, None], yy))
        self.sy[:, :k, :k] = sy
        self.yy[:, :k, :k] = yy
        self.pos = torch.where(accept, (self.pos + 1) % size, self.pos)
        self.filled = k

        order = self.time[:, :k].argsort(dim=1)  # chronological; empty slots (-1) first
        rows_of = order[:, :, None].expand(-1, -1, k)
        cols_of = order[:, None, :].expand(-1, k, -1)
        sy_c = sy.gather(1, rows_of).gather(2, cols_of).double()
        yy_c = yy.gather(1, rows_of).gather(2, cols_of).double()
        empty = (self.time[:, :k].gather(1, order) < 0).double()
        gamma = h_diag.double()[:, None]
        a_c, b_c = a.gather(1, order).double(), b.gather(1, order).double()
        upper = sy_c * self.upper_mask[:k, :k] + torch.diag_embed(empty)  # R: s_i . y_j for i <= j in time
        u = torch.linalg.solve_triangular(upper, a_c[:, :, None], upper=True)  # R^-1 S^T g
        w = torch.diagonal(sy_c, dim1=1, dim2=2)[:, :, None] * u + gamma[:, :, None] * (yy_c @ u) - gamma[:, :, None] * b_c[:, :, None]
        p_s = torch.linalg.solve_triangular(upper.transpose(1, 2), w, upper=False)[:, :, 0]
        p_y = -gamma * u[:, :, 0]
        # Pass 2, back in slot order: H g = gamma g + S p_s + Y p_y.
        coef = torch.stack([torch.zeros_like(p_s).scatter(1, order, p_s), torch.zeros_like(p_y).scatter(1, order, p_y)], dim=2)
        applied = torch.bmm(coef.to(g.dtype).view(rows, 1, 2 * k), self.pairs[:, :k].reshape(rows, 2 * k, n))[:, 0]
        return -(h_diag[:, None] * g + applied)


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

    Each row follows torch's algorithm step for step: its own curvature pairs, step size and
    stopping rules. The bookkeeping is a small fraction of an objective evaluation: the pairs
    live in per-row ring buffers with their Gram matrices updated one row and column at a time,
    the direction comes from the compact form (`_History.step`), and only the filled slots
    are used. On cuda nothing waits for the device inside a step: a row that has stopped is
    masked, and the step runs its `max_iter` inner iterations (on the CPU, where checking is
    free, a step ends once every row has stopped).

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
    history = _History.empty(restarts, history_size, n, x)
    h_diag = x.new_ones(restarts)
    d = x.new_zeros(restarts, n)
    t = x.new_zeros(restarts)
    prev_g = x.new_zeros(restarts, n)
    prev_loss = x.new_zeros(restarts)
    count = torch.zeros(restarts, dtype=torch.long, device=x.device)
    best = x.clone()
    best_loss = torch.full((restarts,), float("inf"), device=x.device, dtype=x.dtype)
    may_sync = x.device.type == "cpu"
    done = 0
    for _ in progress(range(steps), desc=desc):
        loss, g = value_and_grad(x)
        _track_best(best, best_loss, x, loss)
        active = (g.abs().amax(dim=1) > tolerance_grad) & torch.isfinite(loss)
        evals = torch.zeros(restarts, dtype=torch.long, device=x.device)
        for inner in range(1, max_iter + 1):
            if may_sync and not bool(active.any()):
                break
            count = count + active.long()
            first = count == 1
            y = g - prev_g
            s = d * t[:, None]
            ys = (y * s).sum(dim=1)
            accept = active & ~first & (ys > 1e-10)
            h_diag = torch.where(accept, ys / (y * y).sum(dim=1), h_diag)
            direction = torch.where(first[:, None], -g, history.step(accept, s, y, g, count, h_diag))
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
