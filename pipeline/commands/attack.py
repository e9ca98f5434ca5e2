"""`flaudit attack RUN_DIR`: invert the captured updates of a finished run."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from attacks.config import AttackConfig
from attacks.params import ATTACK_PARAMS
from flaudit.errors import FlauditError
from flaudit.fields import enforcing_limits, flag
from pipeline.commands.options import add_threads_option, add_wait_option, writing

if TYPE_CHECKING:
    from fl_sim.run_store import RunStore


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "attack", help="attack the captured updates of a run",
        description="Reconstruct the clients' batches from the captured updates of RUN_DIR. Writes "
        "attacks/ATTACK/round_RRR/client_CCC/ with reconstruction.safetensors and a record.json (the audit adds the "
        "{i}_{label}_ori.png / {i}_{label}_rec.png pairs). "
        "Finished updates are kept unless --force.",
    )
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    parser.add_argument("--attack", type=_attack_name, help="attack name (default: the scenario's attack, else inverting_gradients)")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="attack hyperparameter (JSON value), repeatable, e.g. --param iterations=300")
    parser.add_argument("--rounds", **flag(AttackConfig, "rounds", nargs="+", help="rounds to attack (default: the scenario's, else all captured)"))
    parser.add_argument("--clients", **flag(AttackConfig, "clients", nargs="+", help="clients to attack (default: the scenario's, else all captured)"))
    parser.add_argument("--known-labels", action="store_true", help="threat model: give the attack the true labels")
    parser.add_argument("--seed", **flag(AttackConfig, "seed", default=None, help="seed of the attack's initialisations (default: the scenario's)"))
    parser.add_argument("--updates-per-batch", **flag(
        AttackConfig, "updates_per_batch", default=None, metavar="N",
        help="invert at most N captured updates (any clients and rounds) as one batched computation (default: the scenario's, else 16)",
    ))
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    parser.add_argument("--force", action="store_true", help="re-attack updates that already have a reconstruction")
    add_wait_option(parser)
    add_threads_option(parser)
    parser.set_defaults(func=_attack)


def _attack_name(text: str) -> str:
    """A registered attack's name; else argparse's error with the registry's message."""
    if text not in ATTACK_PARAMS:
        raise argparse.ArgumentTypeError(ATTACK_PARAMS.unknown_message(text))
    return text


def attack_config(args: argparse.Namespace, store: RunStore) -> AttackConfig:
    """The scenario's attack section, overridden by the command line."""
    from attacks.params import check_attack_params
    from fl_sim.scenario import load_scenario

    base = load_scenario(store.scenario_path).attack if store.scenario_path.exists() else None
    base = base or AttackConfig()
    name = args.attack or base.name
    params = dict(base.params) if name == base.name else {}
    for item in args.param:
        key, sep, raw = item.partition("=")
        if not sep:
            raise FlauditError(f"--param {item!r}: expected KEY=VALUE")
        try:
            params[key] = json.loads(raw)
        except json.JSONDecodeError:
            params[key] = raw
    check_attack_params(name, params)  # fails here, with the allowed parameters, before any work
    return AttackConfig(
        name=name, params=params, known_labels=args.known_labels or (base.known_labels and name == base.name),
        rounds=tuple(args.rounds) if args.rounds else base.rounds, clients=tuple(args.clients) if args.clients else base.clients,
        seed=base.seed if args.seed is None else args.seed,
        updates_per_batch=args.updates_per_batch or base.updates_per_batch,
    )


def _attack(args: argparse.Namespace) -> int:
    from pipeline.stages import attack_run
    from pipeline.commands.options import scenario_limits, scenario_threads
    from fl_sim.run_store import RunStore
    from flaudit.threads import configure_threads

    store = RunStore(args.run_dir)
    if not store.captures.capture_keys():
        raise FlauditError(f"{args.run_dir}: no captures found (captures/round_RRR/client_CCC.safetensors); run `flaudit run SCENARIO` first")
    configure_threads(args.threads, scenario_threads(store))
    # One writer at a time; the limits the run's scenario raised hold for the flags and its captures.
    with writing(store.root, args), enforcing_limits(scenario_limits(store)):
        outcomes = attack_run(store, attack_config(args, store), device=args.device, force=args.force).outcomes
    corrupt = [o for o in outcomes if o.corrupt]
    done = sum(not o.skipped and not o.corrupt for o in outcomes)
    kept = sum(o.skipped for o in outcomes)
    print(f"{done} update(s) attacked, {kept} already done, {len(corrupt)} not attacked (corrupt input): {store.root / 'attacks'}")
    for outcome in corrupt:
        print(f"flaudit: corrupt: round {outcome.key.round} client {outcome.key.client}: {outcome.corrupt}", file=sys.stderr)
    return 1 if corrupt else 0
