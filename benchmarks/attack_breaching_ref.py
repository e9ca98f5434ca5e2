"""Reference runs of breaching 0.1.2's attacks on flaudit's cases (run in a separate venv).

Inverting Gradients (`--mode speed|quality`) and DLG/iDLG (`--mode lbfgs-speed --attack dlg|idlg`):
breaching's `deepleakage` config (L-BFGS, step 1; joint labels for DLG, the iDLG label rule for
iDLG), timed per objective evaluation (every call of its L-BFGS closure is counted).

breaching is not a dependency: install it apart, e.g.
    python -m venv --system-site-packages /tmp/breachenv
    /tmp/breachenv/bin/pip install --no-deps breaching==0.1.2 && /tmp/breachenv/bin/pip install "hydra-core>=1.1"
and run  PYTHONPATH=. /tmp/breachenv/bin/python benchmarks/attack_breaching_ref.py --mode speed|quality
Prints one JSON object per line, read by attack_speed.py and attack_quality.py.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from types import SimpleNamespace

import torch

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("FLAUDIT_QUIET", "1")

from attack_common import meta_for, photo, psnr  # noqa: E402

from attacks.simulate import fedsgd_view  # noqa: E402
from flaudit.models import ModelSpec, build_model  # noqa: E402


def breaching_ig(model, view, label, *, iterations: int, tv: float, seed: int, restarts: int = 1):
    import breaching

    logging.getLogger("breaching").setLevel(logging.WARNING)
    cfg = breaching.get_attack_config(
        "invertinggradients",
        overrides=[f"optim.max_iterations={iterations}", f"regularization.total_variation.scale={tv}", "optim.callback=100000",
                   f"restarts.num_trials={restarts}"],
    )
    setup = dict(device=torch.device("cpu"), dtype=torch.float)
    attacker = breaching.attacks.prepare_attack(model, torch.nn.CrossEntropyLoss(), cfg, setup)
    metadata = SimpleNamespace(shape=(3, 32, 32), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), modality="vision", classes=10)
    payload = [dict(parameters=[p.detach() for p in view.model.parameters()], buffers=None, metadata=metadata)]
    shared = [
        dict(
            gradients=[g.clone() for g in view.update.values()],
            buffers=None,
            metadata=dict(num_data_points=1, labels=label.clone(), local_hyperparams=None),
        )
    ]
    torch.manual_seed(seed)
    start = time.perf_counter()
    rec, _ = attacker.reconstruct(payload, shared, {}, dryrun=False)
    elapsed = time.perf_counter() - start
    images = (rec["data"] * 0.5 + 0.5).clamp(0, 1)
    return images, elapsed


class _Metadata(dict):
    """breaching reads the payload's metadata both as attributes and as keys."""

    __getattr__ = dict.__getitem__


def breaching_lbfgs(model, view, label, *, attack: str, iterations: int, restarts: int, seed: int) -> dict:
    """breaching's DLG (joint labels) or iDLG (labels by its iDLG rule): seconds and objective evaluations."""
    import breaching

    logging.getLogger("breaching").setLevel(logging.WARNING)
    overrides = [f"optim.max_iterations={iterations}", "optim.callback=100000", f"restarts.num_trials={restarts}"]
    if attack == "idlg":
        overrides += ["attack_type=optimization", "label_strategy=iDLG"]
    cfg = breaching.get_attack_config("deepleakage", overrides=overrides)
    setup = dict(device=torch.device("cpu"), dtype=torch.float)
    attacker = breaching.attacks.prepare_attack(model, torch.nn.CrossEntropyLoss(), cfg, setup)
    evaluations = [0]
    make_closure = attacker._compute_objective

    def counted(*args, **kwargs):
        closure = make_closure(*args, **kwargs)

        def call():
            evaluations[0] += 1
            return closure()

        return call

    attacker._compute_objective = counted
    metadata = _Metadata(shape=(3, 32, 32), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), modality="vision", classes=10, task="classification")
    payload = [dict(parameters=[p.detach() for p in view.model.parameters()], buffers=None, metadata=metadata)]
    shared = [
        dict(
            gradients=[g.clone() for g in view.update.values()],
            buffers=None,
            metadata=dict(num_data_points=1, labels=None, local_hyperparams=None),
        )
    ]
    torch.manual_seed(seed)
    start = time.perf_counter()
    rec, _ = attacker.reconstruct(payload, shared, {}, dryrun=False)
    elapsed = time.perf_counter() - start
    images = (rec["data"] * 0.5 + 0.5).clamp(0, 1)
    return dict(seconds=elapsed, evaluations=evaluations[0], ms_per_evaluation=1000 * elapsed / max(1, evaluations[0]),
                images=images)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=("speed", "quality", "lbfgs-speed"), default="speed")
    parser.add_argument("--attack", choices=("dlg", "idlg"), default="dlg", help="with --mode lbfgs-speed")
    parser.add_argument("--restarts", type=int, default=1, help="breaching runs restarts one after another; figures are per restart")
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--tv", type=float, default=0.2)
    parser.add_argument("--photos", default="astronaut")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for index, name in enumerate(args.photos.split(",")):
        model = build_model(ModelSpec("lenet", 10, 3, 32), seed=index)
        x = photo(name)[None]
        label = torch.tensor([index % 10])
        view = fedsgd_view(model, x, label, meta_for(1))
        if args.mode == "lbfgs-speed":
            kwargs = dict(attack=args.attack, restarts=args.restarts, seed=index)
            breaching_lbfgs(model, view, label, iterations=2, **kwargs)  # warm-up
            out = breaching_lbfgs(model, view, label, iterations=args.iterations, **kwargs)
            print(json.dumps(dict(photo=name, attack=args.attack, iterations=args.iterations, restarts=args.restarts,
                                  seconds=out["seconds"], evaluations=out["evaluations"],  # over all restarts
                                  ms_per_evaluation=out["ms_per_evaluation"], psnr_db=psnr(out["images"], x))), flush=True)
            continue
        if args.mode == "speed":
            breaching_ig(model, view, label, iterations=10, tv=args.tv, seed=index)  # warm-up
        images, elapsed = breaching_ig(model, view, label, iterations=args.iterations, tv=args.tv, seed=index, restarts=args.restarts)
        print(
            json.dumps(
                dict(photo=name, iterations=args.iterations, tv=args.tv, restarts=args.restarts, seconds=elapsed,
                     ms_per_iteration=1000 * elapsed / args.iterations / args.restarts, psnr_db=psnr(images, x))
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
