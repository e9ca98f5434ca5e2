"""`flaudit run SCENARIO`: federation -> attack -> audit -> dashboards, and each variant of a sweep."""

from __future__ import annotations

import argparse
import contextlib
import functools
import sys
import time
from pathlib import Path

from fl_sim.scenario import Scenario
from flaudit.fields import enforcing_limits, flag
from pipeline.commands.options import add_threads_option, add_wait_option, writing


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run", help="run a scenario end to end",
        description="Run a scenario: the Flower federation with its defenses and capture, then the attack "
        "and the audit when the scenario has them. A finished federation in RUN_DIR is reused. One process writes "
        "a run directory at a time: a second `run`, `attack` or `audit` on it stops with an error naming the first "
        "(or waits for it with --wait).",
    )
    parser.add_argument("scenario", metavar="SCENARIO", help="scenario YAML file")
    parser.add_argument("--run-dir", type=Path, help="run directory (default: OUTPUT_DIR/NAME from the scenario)")
    parser.add_argument("--device", **flag(Scenario, "device", default=None, help="where attacks and metrics run (default: the scenario's)"))
    parser.add_argument("--force", action="store_true", help="re-run every step even when its outputs exist")
    parser.add_argument("--no-audit", action="store_true", help="stop after the federation and the attack")
    add_wait_option(parser)
    add_threads_option(parser)
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from fl_sim.scenario import load_scenario

    scenario = load_scenario(args.scenario)
    with enforcing_limits(scenario.limits):  # the limits it raised hold for all it builds (attack, captures read back)
        return _run_scenario(args, scenario)


def _run_scenario(args: argparse.Namespace, scenario: Scenario) -> int:
    from flaudit.threads import configure_threads
    from pipeline.runs import (
        audit_step,
        default_run_dir,
        run_one,
        sweep_variants,
        write_sweep,
    )
    from pipeline.summary import print_summary
    from fl_sim.preflight import check_before_run
    from fl_sim.ray_session import shared_ray

    threads = configure_threads(args.threads, scenario.threads)
    root = args.run_dir or default_run_dir(scenario)
    device = args.device or scenario.device
    variants = sweep_variants(scenario)
    sweep = len(variants) > 1
    for variant in variants:  # before any lock or folder: a run this machine cannot start writes nothing
        check_before_run(variant.scenario, device=device)
    started = time.perf_counter()
    stores = []
    corrupt: list[str] = []
    # A sweep's folder (its table, its shared oracle) is written too: locked for the whole sweep, and each
    # variant's run directory while that variant runs (`flaudit attack VARIANT_DIR` locks only the latter).
    # Its federations share one Ray (a single run's Ray ends with its federation).
    with writing(root, args) if sweep else contextlib.nullcontext(), shared_ray() if sweep else contextlib.nullcontext():
        for variant in variants:
            run_dir = root / variant.name if sweep else root
            if sweep and not args.quiet:
                print(f"== variant {variant.name} -> {run_dir}")
            hparams = {"sweep/value": variant.value} if variant.value is not None else None
            # The variants of a sweep share one oracle: it depends on the dataset only.
            audit = None if args.no_audit else functools.partial(audit_step, oracle_cache_dir=root / "cache" if sweep else None, hparams=hparams)
            with writing(run_dir, args):
                result = run_one(variant.scenario, run_dir, device=device, force=args.force, verbose=args.verbose,
                                 audit=audit, threads=threads)
            store = result.store
            corrupt += result.corrupt
            stores.append((variant, store))
            if not args.quiet:
                print_summary(store)
        if sweep and not args.no_audit and scenario.attack is not None:
            for path in write_sweep(root, stores):
                print(f"wrote {path}")
    print(f"done in {time.perf_counter() - started:.1f} s: {root}")
    for message in corrupt:
        print(f"flaudit: corrupt, not attacked or scored: {message}", file=sys.stderr)
    return 1 if corrupt else 0
