"""Speed of the optimisation attacks: flaudit's batched forms vs a plain loop, and vs breaching 0.1.2.

Case: DLG's untrained sigmoid LeNet (width 12, U(-0.5, 0.5), seed 0), one 32x32 RGB photo
(scikit-image astronaut), FedSGD gradient, CPU, 2 threads (the issue's case).

Inverting Gradients (cosine distance + TV 0.2, signed Adam, box, known label), ms per iteration per restart:
* batched: flaudit's `inverting_gradients` with R = 1 and R = 8 restarts (one vmapped computation),
  eagerly and with `compile=True` (torch.compile; its one-time compilation is reported apart).
* loop: a Python loop over the R = 8 restarts, each with its own Adam and plain autograd.
* clients: 4 clients of one round, 1 restart each, `reconstruct_many` vs one call per client.
DLG (joint soft labels) and iDLG (the label read from the gradient), L-BFGS, ms per objective
evaluation (every call of the objective counted, bookkeeping included), per restart:
* flaudit's `dlg`/`idlg` at R = 1 and R = 8, eager and compiled;
* loop: torch.optim.LBFGS per restart with a plain-autograd closure (how one writes it).
breaching: the same attacks in breaching 0.1.2 (`attack_breaching_ref.py`, its own venv at
BREACHING_PYTHON, default /tmp/breachenv/bin/python) at 1 and 8 restarts (it runs restarts one
after another); skipped with the reason when it is not installed.

The machine is shared, so the forms are measured in alternation, several rounds, and the median
is reported. The last line is the smallest of the four ratios the issue asks for against breaching
(`min_ratio_vs_breaching`), or against the plain loop when breaching is absent.

Run: PYTHONPATH=. python benchmarks/attack_speed.py [--iterations 100] [--lbfgs-steps 10] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("FLAUDIT_QUIET", "1")

from attack_common import PHOTOS, meta_for, photo  # noqa: E402

from attacks import create_attack  # noqa: E402
from attacks.objectives import total_variation  # noqa: E402
from attacks.simulate import fedsgd_view  # noqa: E402
from flaudit.models import ModelSpec, build_model  # noqa: E402

TV = 0.2


def case():
    model = build_model(ModelSpec("lenet", 10, 3, 32), seed=0)
    x = photo("astronaut")[None]
    label = torch.tensor([0])
    return model, x, label, fedsgd_view(model, x, label, meta_for(1))


def batched_ms(view, label, restarts: int, iterations: int, *, compile: bool = False) -> float:
    """ms per iteration per restart of a warm run (the first call, and with `compile` its compilation, excluded)."""
    attack = create_attack("inverting_gradients", iterations=iterations, restarts=restarts, tv=TV, compile=compile)
    init = torch.randn((restarts, 1, 3, 32, 32), generator=torch.Generator().manual_seed(0))
    attack.reconstruct_from(view, init, labels=label)  # warm-up (and compilation); a new call reuses it
    start = time.perf_counter()
    attack.reconstruct_from(view, init, labels=label)
    return 1000 * (time.perf_counter() - start) / iterations / restarts


def compile_seconds(view, label, restarts: int) -> float:
    """Wall time of the first compiled call (10 iterations): compilation, or loading inductor's on-disk cache."""
    attack = create_attack("inverting_gradients", iterations=10, restarts=restarts, tv=TV, compile=True)
    init = torch.randn((restarts, 1, 3, 32, 32), generator=torch.Generator().manual_seed(0))
    start = time.perf_counter()
    attack.reconstruct_from(view, init, labels=label)
    return time.perf_counter() - start


def client_views(count: int):
    model = build_model(ModelSpec("lenet", 10, 3, 32), seed=0)
    views = [
        fedsgd_view(model, photo(name)[None], torch.tensor([i]), meta_for(1), client=i)
        for i, name in enumerate(PHOTOS[:count])
    ]
    return views, [torch.tensor([i]) for i in range(count)]


def clients_ms(views, labels, iterations: int, *, batched: bool) -> float:
    """ms per iteration per client: the round's clients in one batch, or one call per client."""
    attack = create_attack("inverting_gradients", iterations=iterations, restarts=1, tv=TV)
    generators = [torch.Generator().manual_seed(i) for i in range(len(views))]
    start = time.perf_counter()
    if batched:
        attack.reconstruct_many(views, generators=generators, labels=labels)
    else:
        for view, g, y in zip(views, generators, labels):
            attack.reconstruct(view, generator=g, labels=y)
    return 1000 * (time.perf_counter() - start) / iterations / len(views)


def loop_ms(view, label, restarts: int, iterations: int) -> float:
    """Python loop over restarts, plain autograd, one Adam per restart (how one writes it without vmap)."""
    import copy

    model = copy.deepcopy(view.model).train()
    params = list(model.parameters())
    target = [view.update[name] for name, _ in model.named_parameters()]
    low, high = -1.0, 1.0  # the normalised [0, 1] box for mean = std = 0.5
    init = torch.randn((restarts, 1, 3, 32, 32), generator=torch.Generator().manual_seed(0))
    start = time.perf_counter()
    for r in range(restarts):
        x = init[r].clone().requires_grad_(True)
        optimizer = torch.optim.Adam([x], lr=0.1)
        m = [int(iterations // 2.667), int(iterations // 1.6), int(iterations // 1.142)]
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=m, gamma=0.1)
        for _ in range(iterations):
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x), label)
            grads = torch.autograd.grad(loss, params, create_graph=True)
            dot = sum((g * t).sum() for g, t in zip(grads, target))
            norm_g = sum(g.pow(2).sum() for g in grads)
            norm_t = sum(t.pow(2).sum() for t in target)
            objective = 1 - dot / (norm_g.sqrt() * norm_t.sqrt()) + TV * total_variation(x)
            objective.backward(inputs=[x])
            x.grad.sign_()
            optimizer.step()
            scheduler.step()
            with torch.no_grad():
                x.clamp_(low, high)
    return 1000 * (time.perf_counter() - start) / iterations / restarts


def _breaching(args: list[str], threads: int) -> tuple[dict | None, str]:
    python = os.environ.get("BREACHING_PYTHON", "/tmp/breachenv/bin/python")
    if not os.path.exists(python):
        return None, f"no breaching venv at {python} (see benchmarks/attack_breaching_ref.py for the install)"
    script = os.path.join(os.path.dirname(__file__), "attack_breaching_ref.py")
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    proc = subprocess.run([python, script, *args, "--threads", str(threads)], capture_output=True, text=True, env=env, timeout=1200)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        return None, f"breaching run failed (rc {proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}"
    return json.loads(lines[-1]), "ok"


def breaching_ig_ms(iterations: int, restarts: int, threads: int) -> tuple[float | None, str]:
    out, note = _breaching(["--mode", "speed", "--iterations", str(iterations), "--tv", str(TV), "--restarts", str(restarts)], threads)
    return (None if out is None else float(out["ms_per_iteration"])), note


def breaching_lbfgs_ms(attack: str, steps: int, restarts: int, threads: int) -> tuple[float | None, str]:
    out, note = _breaching(["--mode", "lbfgs-speed", "--attack", attack, "--iterations", str(steps), "--restarts", str(restarts)], threads)
    return (None if out is None else float(out["ms_per_evaluation"])), note


def lbfgs_ms(view, name: str, restarts: int, steps: int, *, compile: bool = False) -> float:
    """flaudit's DLG/iDLG: ms per objective evaluation per restart, bookkeeping included (a warm run)."""
    import attacks.dlg

    counted = {"evaluations": 0}
    optimise = attacks.dlg.lbfgs_batched

    def counting(value_and_grad, init, **kwargs):
        def call(x):
            counted["evaluations"] += 1
            return value_and_grad(x)

        return optimise(call, init, **kwargs)

    attack = create_attack(name, iterations=steps, restarts=restarts, compile=compile)
    attacks.dlg.lbfgs_batched = counting
    try:
        attack.reconstruct(view, generator=torch.Generator().manual_seed(0))  # warm-up (and compilation)
        counted["evaluations"] = 0
        start = time.perf_counter()
        attack.reconstruct(view, generator=torch.Generator().manual_seed(0))
        elapsed = time.perf_counter() - start
    finally:
        attacks.dlg.lbfgs_batched = optimise
    return 1000 * elapsed / counted["evaluations"] / restarts


def lbfgs_loop_ms(view, restarts: int, steps: int) -> float:
    """DLG written plainly: per restart torch.optim.LBFGS over (image, label logits), plain-autograd closure."""
    import copy

    model = copy.deepcopy(view.model).train()
    params = list(model.parameters())
    target = [view.update[name] for name, _ in model.named_parameters()]
    g = torch.Generator().manual_seed(0)
    evaluations = 0
    start = time.perf_counter()
    for _ in range(restarts):
        x = torch.randn((1, 3, 32, 32), generator=g).requires_grad_(True)
        y = torch.randn((1, 10), generator=g).requires_grad_(True)
        optimizer = torch.optim.LBFGS([x, y], lr=1.0)

        def closure():
            nonlocal evaluations
            evaluations += 1
            optimizer.zero_grad()
            loss = -(torch.softmax(y, -1) * F.log_softmax(model(x), -1)).sum(-1).mean()
            grads = torch.autograd.grad(loss, params, create_graph=True)
            distance = sum((a - b).pow(2).sum() for a, b in zip(grads, target))
            distance.backward(inputs=[x, y])
            return distance

        for _ in range(steps):
            optimizer.step(closure)
    return 1000 * (time.perf_counter() - start) / evaluations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=100, help="Adam iterations per Inverting Gradients measurement")
    parser.add_argument("--lbfgs-steps", type=int, default=10, help="L-BFGS steps (of up to 20 evaluations) per DLG/iDLG measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-breaching", action="store_true")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile forms (their compilation takes minutes)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    _, _, label, view = case()
    views, labels = client_views(4)
    rows: dict[str, list[float]] = {}
    notes: list[str] = []

    def add(key: str, value: float | None, note: str = "ok") -> None:
        if value is None:
            notes.append(f"{key}: not measured: {note}")
        else:
            rows.setdefault(key, []).append(value)

    first_compiled = None if args.no_compile else compile_seconds(view, label, 8)
    steps = args.lbfgs_steps
    for _ in range(args.rounds):
        add("ig_r1", batched_ms(view, label, 1, args.iterations))
        add("ig_r8", batched_ms(view, label, 8, args.iterations))
        add("ig_loop_r8", loop_ms(view, label, 8, args.iterations))
        add("ig_clients4_batched", clients_ms(views, labels, args.iterations, batched=True))
        add("ig_clients4_one_by_one", clients_ms(views, labels, args.iterations, batched=False))
        for name in ("dlg", "idlg"):
            add(f"{name}_r1", lbfgs_ms(view, name, 1, steps))
            add(f"{name}_r8", lbfgs_ms(view, name, 8, steps))
        add("dlg_loop_r8", lbfgs_loop_ms(view, 8, steps))
        if not args.no_compile:
            add("ig_r1_compiled", batched_ms(view, label, 1, args.iterations, compile=True))
            add("ig_r8_compiled", batched_ms(view, label, 8, args.iterations, compile=True))
            add("dlg_r1_compiled", lbfgs_ms(view, "dlg", 1, steps, compile=True))
            add("dlg_r8_compiled", lbfgs_ms(view, "dlg", 8, steps, compile=True))
        if not args.no_breaching:
            add("breaching_ig_r1", *breaching_ig_ms(args.iterations, 1, args.threads))
            add("breaching_ig_r8", *breaching_ig_ms(args.iterations, 8, args.threads))
            for name in ("dlg", "idlg"):
                add(f"breaching_{name}_r1", *breaching_lbfgs_ms(name, steps, 1, args.threads))
                add(f"breaching_{name}_r8", *breaching_lbfgs_ms(name, steps, 8, args.threads))
    med = {k: statistics.median(v) for k, v in rows.items()}
    print(f"case: sigmoid LeNet-12 32x32 RGB, batch 1, FedSGD, CPU {args.threads} threads; medians of {args.rounds} alternating rounds")
    print(f"Inverting Gradients: cosine + TV {TV}, signed Adam, known label, {args.iterations} iterations; ms/iteration/restart")
    print(f"DLG/iDLG: L-BFGS, {steps} steps of up to 20 evaluations; ms/objective evaluation/restart (bookkeeping included)")
    for key, values in rows.items():
        unit = "client" if "clients" in key else "restart"
        print(f"{key}: {med[key]:.2f} ms per {unit}  (rounds: {', '.join(f'{v:.2f}' for v in values)})")
    for note in dict.fromkeys(notes):
        print(note)
    if first_compiled is not None:
        print(f"first compiled call (torch.compile, IG R=8, 10 iterations): {first_compiled:.1f} s")
    print(f"ig_speedup_4_clients_vs_one_by_one: {med['ig_clients4_one_by_one'] / med['ig_clients4_batched']:.2f}")
    print(f"ig_r8_eager_vs_loop: {med['ig_loop_r8'] / med['ig_r8']:.2f}")
    print(f"dlg_r8_eager_vs_loop: {med['dlg_loop_r8'] / med['dlg_r8']:.2f}")
    ratios = {}
    for ours, theirs in (("ig_r1", "breaching_ig_r1"), ("ig_r8", "breaching_ig_r8"), ("dlg_r1", "breaching_dlg_r1"),
                         ("dlg_r8", "breaching_dlg_r8"), ("idlg_r1", "breaching_idlg_r1"), ("idlg_r8", "breaching_idlg_r8")):
        if theirs in med:
            ratios[ours] = med[theirs] / med[ours]
            compiled = f"{ours}_compiled"
            beside = f", compiled {med[theirs] / med[compiled]:.2f}x" if compiled in med else ""
            print(f"{ours} vs breaching (eager): {ratios[ours]:.2f}x{beside}")
    if ratios:
        # The bars: IG 1.5x at R=1 and 4x per restart at R=8; DLG/iDLG 2x and 5x.
        bars = {"ig_r1": 1.5, "ig_r8": 4.0, "dlg_r1": 2.0, "dlg_r8": 5.0, "idlg_r1": 2.0, "idlg_r8": 5.0}
        print("against the issue's bars: " + ", ".join(f"{k} {v:.2f}/{bars[k]:g}" for k, v in ratios.items()))
        print(f"min_ratio_vs_breaching: {min(ratios.values()):.2f}")
    else:
        print(f"min_ratio_vs_loop: {min(med['ig_loop_r8'] / med['ig_r8'], med['dlg_loop_r8'] / med['dlg_r8']):.2f}")


if __name__ == "__main__":
    main()
