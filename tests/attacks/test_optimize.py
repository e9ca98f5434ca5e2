import torch

from attacks.optimize import adam_batched, lbfgs_batched


def rosenbrock(x: torch.Tensor) -> torch.Tensor:
    return (100 * (x[..., 1:] - x[..., :-1] ** 2) ** 2 + (1 - x[..., :-1]) ** 2).sum(-1)


def value_and_grad(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.detach().requires_grad_(True)
    loss = rosenbrock(x)
    (g,) = torch.autograd.grad(loss.sum(), x)
    return loss.detach(), g


def test_lbfgs_batched_matches_torch_lbfgs_per_restart() -> None:
    init = torch.randn(3, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    batched = lbfgs_batched(value_and_grad, init, steps=4, lr=0.5, max_iter=7, history_size=5)
    for r in range(3):
        x = init[r].clone().requires_grad_(True)
        opt = torch.optim.LBFGS([x], lr=0.5, max_iter=7, history_size=5)

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = rosenbrock(x)
            loss.backward()
            return loss

        for _ in range(4):
            opt.step(closure)
        assert torch.allclose(batched.final[r], x.detach(), rtol=1e-9, atol=1e-9)


def test_adam_batched_is_independent_adams() -> None:
    init = torch.randn(2, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    result = adam_batched(value_and_grad, init, iterations=16, lr=0.05, signed=True, lr_decay=True)
    for r in range(2):
        x = init[r].clone().requires_grad_(True)
        opt = torch.optim.Adam([x], lr=0.05)
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[int(16 // 2.667), int(16 // 1.6), int(16 // 1.142)], gamma=0.1)
        for _ in range(16):
            _, g = value_and_grad(x.detach()[None])
            x.grad = g[0].sign()
            opt.step()
            sched.step()
        assert torch.allclose(result.final[r], x.detach())
        assert result.best_loss[r] <= rosenbrock(init[r])


def test_lbfgs_batched_float32_long_run_with_full_history() -> None:
    """float32, rows that stop at different times, a history that wraps many times: still torch's LBFGS per row."""
    gen = torch.Generator().manual_seed(2)
    scales = torch.rand(3, 40, generator=gen) * 4 + 0.5
    init = torch.randn(3, 40, generator=gen)

    def quartic(x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return (0.5 * scale * x**2 + 0.05 * x**4 + 0.1 * x[..., :1] * x[..., 1:2]).sum(-1)

    def vg(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.detach().requires_grad_(True)
        loss = quartic(x, scales)
        (g,) = torch.autograd.grad(loss.sum(), x)
        return loss.detach(), g

    batched = lbfgs_batched(vg, init, steps=6, lr=0.8, max_iter=15, history_size=4, tolerance_change=1e-7)
    for r in range(3):
        x = init[r].clone().requires_grad_(True)
        opt = torch.optim.LBFGS([x], lr=0.8, max_iter=15, history_size=4, tolerance_change=1e-7)

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = quartic(x, scales[r])
            loss.backward()
            return loss

        for _ in range(6):
            opt.step(closure)
        assert torch.allclose(batched.final[r], x.detach(), rtol=1e-4, atol=1e-5)
