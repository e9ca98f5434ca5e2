"""`flaudit audit RUN_DIR`: (re-)score an existing run and rewrite metrics, dashboards and report.

`audit_run` is the whole audit step (oracle, scoring, TensorBoard, report), also what
`flaudit run` calls after the attack.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch

from audit.metrics import DEFAULT_METRICS, ImageMetric, known_metrics
from audit.scorer import RoundAudit, score_run
from fl_sim.run_store import RunStore
from flaudit.errors import DatasetUnavailableError, FlauditError, ScenarioError


def audit_run(
    store: RunStore,
    *,
    metrics: Sequence[str] = DEFAULT_METRICS,
    device: str | torch.device | None = None,
    oracle: bool = True,
    oracle_cache_dir: str | Path | None = None,
    semsim_checkpoint: str | Path | None = None,
    extra_metrics: Mapping[str, ImageMetric | Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] | None = None,
    align_cost: str = "mse",
    hparams: Mapping[str, float | int | str | bool] | None = None,
    download: bool = True,
    quiet: bool = False,
) -> list[RoundAudit]:
    """Score a run and write metrics.jsonl, rounds.jsonl, TensorBoard events and report.md.

    Args:
        store: the run directory (with reconstructions under attacks/).
        metrics: metric names (see `audit.metrics.known_metrics()`).
        device: "auto"/None, "cpu", "cuda".
        oracle: score machine recognition (trains the oracle on the run's dataset on first use).
        oracle_cache_dir: where to cache the oracle (default RUN_DIR/cache; share it across a sweep).
        semsim_checkpoint: a SemSim checkpoint; adds the `semsim` metric.
        extra_metrics: more per-image metrics (see `score_run`).
        align_cost: "mse" or "ssim" (the scenario's `audit.align_by`).
        hparams: extra HParams for TensorBoard (e.g. the sweep value).
        download: let LPIPS/FID fetch missing weights.
        quiet: print nothing.

    Returns:
        The RoundAudits.
    """
    from audit.report import write_report
    from audit.tensorboard import write_tensorboard
    from flaudit.device import resolve_device

    dev = resolve_device(device)
    judge = None
    if oracle:
        from audit.oracle import oracle_for_run

        try:
            judge = oracle_for_run(store, cache_dir=oracle_cache_dir, device=dev)
        except (DatasetUnavailableError, ScenarioError, FileNotFoundError) as err:
            if not quiet:
                print(f"oracle unavailable: {err}")
    extras = dict(extra_metrics or {})
    if semsim_checkpoint is not None:
        from semsim.score import load_scorer

        extras["semsim"] = load_scorer(str(semsim_checkpoint), device=dev)
    audits = score_run(store, metrics=metrics, oracle=judge, device=dev, extra_metrics=extras, align_cost=align_cost,
                       download=download)
    write_tensorboard(store, audits, hparams=hparams)
    report = write_report(store, audits)
    if not quiet:
        for name, reason in sorted({k: v for a in audits for k, v in a.unavailable.items()}.items()):
            print(f"{name}: {reason}")
        print(f"wrote {store.root / 'metrics.jsonl'}, {store.tensorboard_dir}, {report}")
    return audits


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "audit", help="re-score an existing run (metrics, dashboards, report)",
        description="Score the reconstructions of an existing run directory without re-training: align them to the "
        "ground truth, score every image, and rewrite metrics.jsonl, rounds.jsonl, tb/ and report.md.",
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", type=Path, help="a run directory written by `flaudit run`")
    parser.add_argument("--metrics", default=",".join(DEFAULT_METRICS),
                        help=f"comma-separated metrics (known: {', '.join(known_metrics())}; default: %(default)s)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (default: %(default)s)")
    parser.add_argument("--no-oracle", action="store_true", help="skip the machine annotator")
    parser.add_argument("--oracle-cache", type=Path, help="folder to cache the oracle in (default RUN_DIR/cache)")
    parser.add_argument("--semsim", metavar="CHECKPOINT", help="add SemSim with this checkpoint")
    parser.add_argument("--align-by", default="mse", choices=("mse", "ssim"), help="matching cost (default: %(default)s)")
    parser.add_argument("--no-download", action="store_true", help="never download LPIPS/FID weights")
    parser.set_defaults(func=_audit)


def _audit(args: argparse.Namespace) -> int:
    store = RunStore(args.run_dir)
    if not store.root.is_dir():
        raise FlauditError(f"{store.root}: no such run directory; run `flaudit run SCENARIO` first")
    if not (store.root / "attacks").is_dir():
        raise FlauditError(f"{store.root}: no reconstructions (attacks/ is missing); the scenario needs an `attack:` section")
    metrics = tuple(m.strip() for m in args.metrics.split(",") if m.strip())
    audits = audit_run(store, metrics=metrics, device=args.device, oracle=not args.no_oracle, oracle_cache_dir=args.oracle_cache,
                       semsim_checkpoint=args.semsim, align_cost=args.align_by, download=not args.no_download,
                       quiet=args.quiet)
    if not args.quiet:
        from audit.report import round_table

        for attack in sorted({a.attack for a in audits}):
            print(f"\n{attack}\n" + round_table([a for a in audits if a.attack == attack]))
    return 0
