"""Speed of inverting_gradients: batched restarts (torch.func vmap) vs a plain-autograd loop, and vs breaching.

Case: DLG's untrained sigmoid LeNet (width 12, U(-0.5, 0.5), seed 0), one 32x32 RGB photo
(scikit-image astronaut), known label, FedSGD gradient; Inverting Gradients' objective
(cosine distance + TV 0.2), Adam on signed gradients, box constraint, CPU, 2 threads.

* batched: flaudit's `inverting_gradients` with R = 1 and R = 8 restarts (one vmapped computation),
  eagerly and, at R = 8, with `compile=True` (torch.compile of the vmapped objective; its
  one-time compilation is reported apart, not in the per-iteration figure).
* loop: the straightforward form, a Python loop over the R = 8 restarts, each with its own Adam
  and plain autograd (`torch.autograd.grad(..., create_graph=True)` then backward).
* clients: 4 clients of one round (4 photos, same global model), 1 restart each, inverted by
  `reconstruct_many` as one batched computation vs one `reconstruct` call per client.
* breaching: breaching 0.1.2's invertinggradients at 1 restart on the same model and input, run
  in a separate venv (BREACHING_PYTHON, default /tmp/breachenv/bin/python); skipped with the
  reason if it is not installed.

The machine is shared, so the forms are measured in alternation, several rounds, and the median
is reported. Prints ms per iteration per restart; the last line is `batched_speedup_8_restarts: X.XX`.

Run: PYTHONPATH=. python benchmarks/attack_speed.py [--iterations 100] [--rounds 5]
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


def breaching_ms(iterations: int, threads: int) -> tuple[float | None, str]:
    python = os.environ.get("BREACHING_PYTHON", "/tmp/breachenv/bin/python")
    if not os.path.exists(python):
        return None, f"no breaching venv at {python} (see benchmarks/attack_breaching_ref.py for the install)"
    script = os.path.join(os.path.dirname(__file__), "attack_breaching_ref.py")
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    proc = subprocess.run(
        [python, script, "--mode", "speed", "--iterations", str(iterations), "--tv", str(TV), "--threads", str(threads)],
        capture_output=True,
        text=True,
        env=env,
        timeout=1200,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        return None, f"breaching run failed (rc {proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}"
    return float(json.loads(lines[-1])["ms_per_iteration"]), "ok"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-breaching", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    _, _, label, view = case()
    views, labels = client_views(4)
    rows: dict[str, list[float]] = {
        "batched_r1": [], "batched_r8": [], "batched_r8_compiled": [], "loop_r8": [],
        "clients4_batched": [], "clients4_one_by_one": [],
        "breaching_r1": [],
    }
    note = "skipped (--no-breaching)"
    first_compiled = compile_seconds(view, label, 8)
    for _ in range(args.rounds):
        rows["batched_r1"].append(batched_ms(view, label, 1, args.iterations))
        rows["batched_r8"].append(batched_ms(view, label, 8, args.iterations))
        rows["batched_r8_compiled"].append(batched_ms(view, label, 8, args.iterations, compile=True))
        rows["loop_r8"].append(loop_ms(view, label, 8, args.iterations))
        rows["clients4_batched"].append(clients_ms(views, labels, args.iterations, batched=True))
        rows["clients4_one_by_one"].append(clients_ms(views, labels, args.iterations, batched=False))
        if not args.no_breaching:
            value, note = breaching_ms(args.iterations, args.threads)
            if value is not None:
                rows["breaching_r1"].append(value)
    med = {k: statistics.median(v) for k, v in rows.items() if v}
    print(f"case: sigmoid LeNet-12 32x32 RGB, batch 1, known label, cosine + TV {TV}, signed Adam, CPU {args.threads} threads")
    print(f"iterations per measurement: {args.iterations}, rounds: {args.rounds} (median; runs alternate)")
    for key, values in rows.items():
        if values:
            unit = "client" if key.startswith("clients") else "restart"
            print(f"{key}: {med[key]:.2f} ms/iteration/{unit}  (rounds: {', '.join(f'{v:.2f}' for v in values)})")
    print(f"batched_speedup_4_clients: {med['clients4_one_by_one'] / med['clients4_batched']:.2f}")
    if "breaching_r1" in med:
        print(f"batched_r1 vs breaching_r1: {med['breaching_r1'] / med['batched_r1']:.2f}x (>= 1 means flaudit is no slower)")
    else:
        print(f"breaching_r1: not measured: {note}")
    print(f"first compiled call (torch.compile, 10 iterations): {first_compiled:.1f} s")
    print(f"batched_speedup_8_restarts_eager: {med['loop_r8'] / med['batched_r8']:.2f}")
    print(f"batched_speedup_8_restarts_compiled: {med['loop_r8'] / med['batched_r8_compiled']:.2f}")
    # The last line: flaudit's batched form at its fastest (vmap over restarts, compile=True).
    print(f"batched_speedup_8_restarts: {med['loop_r8'] / min(med['batched_r8'], med['batched_r8_compiled']):.2f}")


if __name__ == "__main__":
    main()
