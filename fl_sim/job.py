"""What both Flower apps need to know about a run, resolved once per process from Flower's run_config.

Flower hands each app a `Context` whose `run_config` holds `scenario` (a scenario file) and
`run-dir` (the run directory). They are converted here, at the boundary, into typed objects.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from attacks.base import SharedMetadata
from flaudit.errors import ScenarioError
from fl_sim.data import DatasetBundle, load_dataset, partition_indices
from flaudit.models import ModelSpec
from fl_sim.run_store import RunStore
from fl_sim.scenario import Scenario, load_scenario


@dataclass(frozen=True)
class AppSettings:
    """The two run_config keys of the flaudit Flower apps."""

    scenario: str
    run_dir: str

    @classmethod
    def from_run_config(cls, run_config: Mapping[str, object]) -> "AppSettings":
        scenario = str(run_config.get("scenario", "") or "")
        if not scenario:
            raise ScenarioError("Flower run_config: 'scenario' is not set; pass --run-config \"scenario='PATH.yaml' run-dir='PATH'\"")
        run_dir = str(run_config.get("run-dir", "") or "")
        if not run_dir:
            run_dir = str(Path(load_scenario(scenario).output_dir) / Path(scenario).stem)
        return cls(str(Path(scenario).resolve()), str(Path(run_dir).resolve()))


@dataclass(frozen=True)
class Job:
    """A loaded run: the scenario, its data, the client partitions and the model architecture."""

    scenario: Scenario
    bundle: DatasetBundle
    partitions: tuple[np.ndarray, ...]
    spec: ModelSpec
    store: RunStore

    def shared_metadata(self, *, num_examples: int, batch_size: int, local_steps: int, learning_rate: float) -> SharedMetadata:
        """The metadata the protocol shares with the server for one update."""
        return SharedMetadata(
            protocol=self.scenario.federation.protocol,
            num_examples=num_examples,
            batch_size=batch_size,
            local_steps=local_steps,
            learning_rate=learning_rate,
            input_shape=self.bundle.shape,
            num_classes=self.bundle.num_classes,
            data_mean=self.bundle.mean,
            data_std=self.bundle.std,
            defenses=tuple((d.name, tuple(sorted(d.params.items()))) for d in self.scenario.defenses),
        )


@functools.lru_cache(maxsize=4)
def load_job(settings: AppSettings) -> Job:
    """Load (once per process) everything a client or the server needs for this run."""
    scenario = load_scenario(settings.scenario)
    bundle = load_dataset(scenario.data)
    fed = scenario.federation
    partitions = partition_indices(
        bundle.train_labels, clients=fed.clients, scheme=scenario.data.partition, alpha=scenario.data.alpha, seed=fed.seed
    )
    spec = ModelSpec(
        name=scenario.model.name, num_classes=bundle.num_classes, in_channels=bundle.shape[0],
        image_size=bundle.shape[1], width=scenario.model.width, bn=scenario.model.bn,
    )
    return Job(scenario, bundle, tuple(partitions), spec, RunStore(settings.run_dir))
