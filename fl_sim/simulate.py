"""Run a scenario's federation through Flower's simulation engine (Ray backend)."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

from flaudit.errors import FlauditError
from flaudit.threads import resolve_threads
from fl_sim.client_app import build_client_app
from fl_sim.job import AppSettings
from fl_sim.ray_session import ray_session
from fl_sim.run_store import RunStore
from fl_sim.scenario import Scenario, dump_scenario
from fl_sim.server_app import build_server_app


def run_federation(scenario: Scenario, run_dir: str | Path, *, verbose: bool = False, threads: int | None = None) -> dict[str, Any]:
    """Simulate the federation of `scenario` into `run_dir` and return the per-round history.

    The run directory receives scenario.yaml (the scenario as run), the captures, the
    ground-truth vault, history.json and a sealed manifest.json.

    Args:
        scenario: the scenario.
        run_dir: where the run goes.
        verbose: show Flower's and Ray's logs.
        threads: CPUs Ray may use (default: `flaudit.threads.resolve_threads(scenario.threads)`);
            each client takes `federation.client_cpus` of them and trains on as many torch threads.
    """
    cpus = resolve_threads(threads if threads is not None else scenario.threads)
    client_cpus = scenario.federation.client_cpus
    if client_cpus > cpus:
        raise FlauditError(
            f"federation.client_cpus is {client_cpus} but this run may use {cpus} CPU(s): no client could be scheduled; "
            f"lower client_cpus or raise --threads / threads:"
        )
    store = RunStore(Path(run_dir).resolve())
    store.create(dump_scenario(scenario), seed=scenario.federation.seed)
    settings = AppSettings(scenario=str(store.scenario_path), run_dir=str(store.root))
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    from flwr.simulation import run_simulation

    # Each simulated client gets client_cpus CPUs and trains on as many torch threads (client_app). Ray
    # itself is started by `ray_session`, which Flower then uses as it is.
    backend_config = {"client_resources": {"num_cpus": client_cpus, "num_gpus": 0.0}}
    finished: dict[str, Any] = {}
    flwr_logger = logging.getLogger("flwr")
    previous = flwr_logger.level
    if not verbose:
        flwr_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with ray_session(cpus=cpus, verbose=verbose):
                run_simulation(
                    server_app=build_server_app(settings, on_done=finished.update),
                    client_app=build_client_app(settings),
                    num_supernodes=scenario.federation.clients,
                    backend_config=backend_config,  # type: ignore[arg-type]
                    verbose_logging=verbose,
                )
    except FlauditError:
        raise
    except Exception as err:
        cause = err.__cause__ or err
        if isinstance(cause, FlauditError):
            raise cause from None
        raise FlauditError(f"the Flower simulation failed: {type(cause).__name__}: {cause} (re-run with -v for Flower's logs)") from err
    finally:
        flwr_logger.setLevel(previous)
    if not finished:
        raise FlauditError("the Flower simulation ended without finishing its rounds (re-run with -v for Flower's logs)")
    return finished
