"""`flaudit audit RUN_DIR`: (re-)score an existing run and rewrite metrics, dashboards and report (`pipeline.runs.audit_run`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fl_sim.scenario import METRIC_NAMES, AuditConfig
from flaudit.errors import FlauditError
from flaudit.fields import flag
from pipeline.commands.options import add_threads_option, add_wait_option, comma_list, writing


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "audit", help="re-score an existing run (metrics, dashboards, report)",
        description="Score the reconstructions of an existing run directory without re-training: align them to the "
        "ground truth, score every image, and rewrite metrics.jsonl, rounds.jsonl, tb/ and report.md.",
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", type=Path, help="a run directory written by `flaudit run`")
    parser.add_argument("--metrics", type=comma_list(AuditConfig, "metrics"), default=",".join(METRIC_NAMES),
                        help=f"comma-separated metrics (known: {', '.join(METRIC_NAMES)}; default: %(default)s)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (default: %(default)s)")
    parser.add_argument("--no-oracle", action="store_true", help="skip the machine annotator")
    parser.add_argument("--oracle-cache", type=Path, help="folder to cache the oracle in (default RUN_DIR/cache)")
    parser.add_argument("--semsim", metavar="CHECKPOINT", help="add SemSim with this checkpoint")
    parser.add_argument("--align-by", **flag(AuditConfig, "align_by", default=AuditConfig.align_by, help="matching cost (default: %(default)s)"))
    parser.add_argument("--no-download", action="store_true", help="never download LPIPS/FID weights")
    add_wait_option(parser)
    add_threads_option(parser)
    parser.set_defaults(func=_audit)


def _audit(args: argparse.Namespace) -> int:
    from pipeline.commands.options import scenario_threads
    from pipeline.runs import audit_run
    from fl_sim.run_store import RunStore
    from flaudit.threads import configure_threads

    store = RunStore(args.run_dir)
    if not store.root.is_dir():
        raise FlauditError(f"{store.root}: no such run directory; run `flaudit run SCENARIO` first")
    if not (store.root / "attacks").is_dir():
        raise FlauditError(f"{store.root}: no reconstructions (attacks/ is missing); the scenario needs an `attack:` section")
    configure_threads(args.threads, scenario_threads(store))
    with writing(store.root, args):
        audits = audit_run(store, metrics=args.metrics, device=args.device, oracle=not args.no_oracle,
                           oracle_cache_dir=args.oracle_cache, semsim_checkpoint=args.semsim, align_cost=args.align_by,
                           download=not args.no_download, quiet=args.quiet)
    if not args.quiet:
        from audit.report import round_table

        for attack in sorted({a.attack for a in audits}):
            print(f"\n{attack}\n" + round_table([a for a in audits if a.attack == attack]))
    corrupt = [f"round {a.round} ({a.attack}): {message}" for a in audits for message in a.corrupt]
    for line in corrupt:
        print(f"flaudit: corrupt, not scored: {line}", file=sys.stderr)
    return 1 if corrupt else 0
