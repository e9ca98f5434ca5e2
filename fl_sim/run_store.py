"""The whole run directory, for the simulation that fills it and the orchestrator that composes the stages.

`RunStore` is the manifest (`flaudit.rundir.RunDir`) plus the run's own files (scenario.yaml,
history.json, tb/, cache/) and the typed views of its parts: `captures` (what the server
received; `attacks.store.CaptureStore`), `vault` (the true batches; `fl_sim.vault.Vault`) and
`reconstructions(attack)`. A stage is handed only the view it may use: the attack stage the
captures, scoring the reconstructions and the vault. The layout is in `flaudit.rundir`.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

from attacks.store import CaptureStore, ReconstructionStore
from flaudit.io import atomic_write_json, atomic_write_text, read_json
from flaudit.rundir import RunDir
from fl_sim.vault import Vault


class RunStore(RunDir):
    """Reads and writes one run directory (see `flaudit.rundir` for the layout)."""

    @property
    def history_path(self) -> Path:
        return self.root / "history.json"

    @property
    def tensorboard_dir(self) -> Path:
        return self.root / "tb"

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"

    @cached_property
    def captures(self) -> CaptureStore:
        """What the server received: the attack stage's only input."""
        return CaptureStore(self.root)

    @cached_property
    def vault(self) -> Vault:
        """The clients' true batches: for scoring (and, under the known-labels threat model, their labels)."""
        return Vault(self.root)

    def reconstructions(self, attack: str) -> ReconstructionStore:
        return ReconstructionStore(self.root, attack)

    def create(self, scenario_text: str, *, seed: int) -> None:
        """Start a run directory: the scenario as run and a first manifest."""
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.scenario_path, scenario_text)
        self.seal([self.scenario_path], seed=seed)

    def write_history(self, history: dict[str, Any]) -> None:
        atomic_write_json(self.history_path, history)

    def read_history(self) -> dict[str, Any]:
        return read_json(self.verified(self.history_path))
