"""`flaudit run`: federation -> attack -> audit -> dashboards, for a scenario and each variant of its sweep."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attacks.registry import create_attack
from flaudit.errors import FlauditError, ScenarioError
from flaudit.progress import is_quiet
from fl_sim.run_store import RunStore
from fl_sim.scenario import DefenseConfig, Scenario, SweepAxis, dump_scenario, load_scenario
from fl_sim.simulate import run_federation


def load_checked_scenario(path: str | Path) -> Scenario:
    """Load a scenario and also check the names only the top of the stack knows (attacks)."""
    scenario = load_scenario(path)
    if scenario.attack is not None:
        try:
            create_attack(scenario.attack.name, **dict(scenario.attack.params))
        except FlauditError as err:
            raise ScenarioError(f"{path}: attack: {err}") from None
    return scenario


def default_run_dir(scenario: Scenario) -> Path:
    return Path(scenario.output_dir) / scenario.name


@dataclass(frozen=True)
class Variant:
    """One point of a sweep: a name and the scenario it runs."""

    name: str
    axis: SweepAxis | None
    value: float | None
    scenario: Scenario


def sweep_variants(scenario: Scenario) -> list[Variant]:
    """The scenario's sweep as variants (the scenario alone when it has no sweep).

    Each value of an axis sets that parameter of the named defense: in place when the scenario
    already lists the defense (its other parameters kept), appended otherwise.
    """
    if not scenario.sweep:
        return [Variant(scenario.name, None, None, scenario)]
    variants = []
    for axis in scenario.sweep:
        for value in axis.values:
            defenses = list(scenario.defenses)
            for index, defense in enumerate(defenses):
                if defense.name == axis.defense:
                    defenses[index] = DefenseConfig(defense.name, {**defense.params, axis.param: value})
                    break
            else:
                defenses.append(DefenseConfig(axis.defense, {axis.param: value}))
            name = f"{axis.defense}-{axis.param}-{value:g}"
            variants.append(Variant(name, axis, value, dataclasses.replace(scenario, name=name, defenses=tuple(defenses), sweep=())))
    return variants


def run_one(scenario: Scenario, run_dir: Path, *, device: str, force: bool, verbose: bool,
            audit: Callable[[RunStore, Scenario, str], Any] | None) -> RunStore:
    """Federation (skipped when `run_dir` already holds this scenario's finished federation), attack, audit."""
    store = RunStore(run_dir)
    text = dump_scenario(scenario)
    finished = store.history_path.exists() and store.scenario_path.exists()
    if finished and store.scenario_path.read_text(encoding="utf-8") == text and not force:
        if not is_quiet():
            print(f"{run_dir}: federation already finished for this scenario; reusing it (--force to re-run)")
    else:
        if store.scenario_path.exists() and store.scenario_path.read_text(encoding="utf-8") != text and not force:
            raise FlauditError(f"{run_dir} holds a run of a different scenario; pass --run-dir NEW_DIR, or --force to replace it")
        if force and store.root.exists():
            _clear_run(store)
        run_federation(scenario, run_dir, verbose=verbose)
    if scenario.attack is not None:
        from audit.attack_step import attack_run

        attack_run(store, scenario.attack, device=device, force=force)
    if audit is not None:
        audit(store, scenario, device)
    return store


def audit_step(store: RunStore, scenario: Scenario, device: str, *, oracle_cache_dir: Path | None = None,
               hparams: dict[str, float | str] | None = None) -> list[Any]:
    """Score the run's reconstructions with the scenario's `audit:` settings (nothing to score without an attack)."""
    if scenario.attack is None:
        return []
    from audit.commands.audit import audit_run

    settings = scenario.audit
    return audit_run(
        store, metrics=settings.metrics, device=device, oracle=settings.oracle, oracle_cache_dir=oracle_cache_dir,
        semsim_checkpoint=settings.semsim_checkpoint, align_cost=settings.align_by, hparams=hparams, quiet=is_quiet(),
    )


def write_sweep(root: Path, runs: list[tuple[Variant, RunStore]]) -> list[Path]:
    """The privacy-utility table (markdown, CSV) and plot of a sweep's variants, in the sweep's root folder."""
    from audit.sweep_table import sweep_point, write_privacy_utility

    points = [
        sweep_point(store, name=variant.name, defense=variant.axis.defense if variant.axis else None,
                    param=variant.axis.param if variant.axis else None, value=variant.value)
        for variant, store in runs
    ]
    return write_privacy_utility(points, root)


def _clear_run(store: RunStore) -> None:
    import shutil

    for name in ("captures", "ground_truth", "attacks", "tb"):
        shutil.rmtree(store.root / name, ignore_errors=True)
    for name in ("history.json", "metrics.jsonl", "rounds.jsonl", "report.md"):
        (store.root / name).unlink(missing_ok=True)
