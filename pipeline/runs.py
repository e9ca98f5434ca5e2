"""`flaudit run`: federation -> attack -> audit -> dashboards, for a scenario and each variant of its sweep."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from audit.metrics import DEFAULT_METRICS, ImageMetric
from audit.scorer import RoundAudit, score_run
from flaudit.errors import DatasetUnavailableError, FlauditError, ScenarioError
from flaudit.progress import is_quiet
from fl_sim.preflight import check_before_run
from fl_sim.run_store import RunStore
from fl_sim.scenario import DefenseConfig, Scenario, SweepAxis, parse_scenario
from fl_sim.simulate import run_federation


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
            name = axis.variant_name(value)
            variants.append(Variant(name, axis, value, dataclasses.replace(scenario, name=name, defenses=tuple(defenses), sweep=())))
    return variants


@dataclass(frozen=True)
class RunResult:
    """A finished run: its directory, and the inputs that were corrupt or missing (never scored)."""

    store: RunStore
    corrupt: tuple[str, ...] = ()


def run_one(scenario: Scenario, run_dir: Path, *, device: str, force: bool, verbose: bool,
            audit: Callable[[RunStore, Scenario, str], Any] | None, threads: int | None = None) -> RunResult:
    """Federation (skipped when `run_dir` already holds this scenario's finished federation), attack, audit.

    `threads` is the CPU count the federation may use (see `flaudit.threads`); it is not part
    of what makes two runs the same. What this machine lacks for the run (the device, the dataset,
    enough examples for the clients) is refused first (`fl_sim.preflight.check_before_run`).
    """
    check_before_run(scenario, device=device)
    store = RunStore(run_dir)
    same = _holds_same_scenario(store, scenario)
    finished = store.history_path.exists() and same
    if finished and not force:
        if not is_quiet():
            print(f"{run_dir}: federation already finished for this scenario; reusing it (--force to re-run)")
    else:
        if store.scenario_path.exists() and not same and not force:
            raise FlauditError(f"{run_dir} holds a run of a different scenario; pass --run-dir NEW_DIR, or --force to replace it")
        if force and store.root.exists():
            _clear_run(store)
        run_federation(scenario, run_dir, verbose=verbose, threads=threads)
    corrupt: list[str] = []
    if scenario.attack is not None:
        from pipeline.stages import attack_run

        corrupt += attack_run(store, scenario.attack, device=device, force=force).corrupt
    if audit is not None:
        corrupt += [m for a in audit(store, scenario, device) for m in a.corrupt if m not in corrupt]
    return RunResult(store, tuple(corrupt))


def audit_step(store: RunStore, scenario: Scenario, device: str, *, oracle_cache_dir: Path | None = None,
               hparams: dict[str, float | str] | None = None) -> list[Any]:
    """Score the run's reconstructions with the scenario's `audit:` settings (nothing to score without an attack)."""
    if scenario.attack is None:
        return []
    settings = scenario.audit
    return audit_run(
        store, metrics=settings.metrics, device=device, oracle=settings.oracle, oracle_cache_dir=oracle_cache_dir,
        semsim_checkpoint=settings.semsim_checkpoint, align_cost=settings.align_by, hparams=hparams, quiet=is_quiet(),
    )


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
        from pipeline.annotators import oracle_for_run

        try:
            judge = oracle_for_run(store, cache_dir=oracle_cache_dir, device=dev)
        except (DatasetUnavailableError, ScenarioError, FileNotFoundError) as err:
            if not quiet:
                print(f"oracle unavailable: {err}")
    extras = dict(extra_metrics or {})
    if semsim_checkpoint is not None:
        from semsim.score import load_scorer

        extras["semsim"] = load_scorer(str(semsim_checkpoint), device=dev)
    from pipeline.annotators import people_judgements

    try:
        people = people_judgements(store)
    except FlauditError as err:  # e.g. the previous audit's pairs are gone: the oracle judges alone, said so
        people = {}
        if not quiet:
            print(f"people's answers not used: {err}")
    audits = score_run(store, metrics=metrics, oracle=judge, device=dev, extra_metrics=extras, align_cost=align_cost,
                       download=download, people=people).audits
    write_tensorboard(store, audits, hparams=hparams)
    report = write_report(store, audits)
    # The audit's own outputs; a figure of an earlier audit that this one did not redraw is dropped.
    outputs = list(store.files("metrics.jsonl", "rounds.jsonl", "report.md", "figures"))
    stale = [store.root / name for name in store.manifest_files() if name.startswith("figures/") and not (store.root / name).exists()]
    store.seal(outputs, removed=stale)
    if not quiet:
        for name, reason in sorted({k: v for a in audits for k, v in a.unavailable.items()}.items()):
            print(f"{name}: {reason}")
        print(f"wrote {store.root / 'metrics.jsonl'}, {store.tensorboard_dir}, {report}")
    return audits


def write_sweep(root: Path, runs: list[tuple[Variant, RunStore]]) -> list[Path]:
    """The privacy-utility table (markdown, CSV) and plot of a sweep's variants, in the sweep's root folder."""
    from audit.sweep_table import sweep_point, write_privacy_utility

    points = [
        sweep_point(store, name=variant.name, defense=variant.axis.defense if variant.axis else None,
                    param=variant.axis.param if variant.axis else None, value=variant.value)
        for variant, store in runs
    ]
    return write_privacy_utility(points, root)


def _holds_same_scenario(store: RunStore, scenario: Scenario) -> bool:
    """Whether the run directory's scenario.yaml is `scenario`, up to settings that do not change results."""
    if not store.scenario_path.exists():
        return False
    try:
        stored = parse_scenario(store.scenario_path.read_text(encoding="utf-8"), source=str(store.scenario_path))
    except (FlauditError, OSError, UnicodeDecodeError):
        return False
    return dataclasses.replace(stored, threads=None) == dataclasses.replace(scenario, threads=None)


def _clear_run(store: RunStore) -> None:
    import shutil

    for name in ("captures", "ground_truth", "attacks", "tb"):
        shutil.rmtree(store.root / name, ignore_errors=True)
    for name in ("history.json", "metrics.jsonl", "rounds.jsonl", "report.md"):
        (store.root / name).unlink(missing_ok=True)
