"""End to end through Flower's real simulation engine (Ray backend)."""

from __future__ import annotations

import json

import pytest

from fl_sim.run_store import RunStore
from flaudit.rundir import CaptureKey
from fl_sim.scenario import load_scenario
from fl_sim.simulate import run_federation
from tests.conftest import REPO

pytestmark = pytest.mark.e2e


def test_fedsgd_run_captures_every_selected_round_and_client(tmp_path, write_scenario):
    path = write_scenario(
        "name: e2e\nfederation: {clients: 3, rounds: 2, protocol: fedsgd, batch_size: 2, seed: 5}\n"
        "data: {dataset: digits}\nmodel: {name: lenet}\ndefenses: [{name: clip_noise, params: {clip_norm: 1.0, noise_multiplier: 1.0}}]\n"
        "capture: {rounds: [2], clients: null}\n"
    )
    history = run_federation(load_scenario(path), tmp_path / "run")
    store = RunStore(tmp_path / "run")
    assert store.captures.capture_keys() == [CaptureKey(2, c) for c in range(3)]
    for key in store.captures.capture_keys():
        view = store.captures.read_view(key)
        truth = store.vault.read(key)
        assert view.meta.num_examples == 2 and truth.images.shape == (2, 1, 8, 8)
    assert [r["round"] for r in history["rounds"]] == [1, 2]
    # clip_noise is accounted each round: epsilon grows with the rounds.
    assert 0 < history["rounds"][0]["epsilon_total"] < history["rounds"][1]["epsilon_total"]
    manifest = json.loads((store.root / "manifest.json").read_text())
    assert "captures/round_002/client_001.safetensors" in manifest["files"] and store.verify() == []


def test_fedavg_on_digits_reaches_80_percent(tmp_path):
    scenario = load_scenario(REPO / "scenarios" / "fedavg_digits.yaml")
    history = run_federation(scenario, tmp_path / "run")
    final = history["rounds"][-1]["accuracy"]
    assert final >= 0.80, f"final accuracy {final:.3f}"
