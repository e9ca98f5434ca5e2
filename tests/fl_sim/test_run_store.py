"""The run directory: atomic safetensors files, a manifest of hashes, corrupt files reported."""

from __future__ import annotations

import pytest
import torch

from attacks.base import SharedMetadata
from flaudit.errors import CaptureCorruptError
from flaudit.io import atomic_write_text
from fl_sim.models import ModelSpec, build_model
from fl_sim.run_store import CaptureKey, GroundTruth, RunStore

META = SharedMetadata("fedsgd", 2, 2, 1, 0.1, (1, 8, 8), 10, (0.3,), (0.4,))


def _store(tmp_path):
    store = RunStore(tmp_path / "run")
    store.create("name: x\n", seed=3)
    spec = ModelSpec("lenet", 10, 1, 8)
    model = build_model(spec, seed=0)
    update = {n: torch.randn_like(p) for n, p in model.named_parameters()}
    key = CaptureKey(2, 1)
    store.write_view(key, spec=spec, global_state=model.state_dict(), update=update, buffers={}, meta=META)
    store.write_ground_truth(GroundTruth(2, 1, torch.rand(2, 1, 8, 8), torch.tensor([3, 4]), torch.tensor([10, 11])))
    return store, model, update, key


def test_round_trip_and_manifest(tmp_path):
    store, model, update, key = _store(tmp_path)
    assert store.capture_keys() == [key]
    view = store.read_view(key)
    assert view.meta == META and not view.model.training
    assert all(torch.equal(view.update[n], update[n]) for n in update)
    assert all(torch.equal(a, b) for a, b in zip(view.model.parameters(), model.parameters()))
    manifest = store.seal()
    assert manifest["seed"] == 3 and "captures/round_002/client_001.safetensors" in manifest["files"]
    assert "ground_truth/round_002/client_001.safetensors" in manifest["files"] and manifest["versions"]["torch"]
    assert store.verify() == []
    truth = store.read_ground_truth(key)
    assert truth.labels.tolist() == [3, 4] and truth.indices.tolist() == [10, 11]


def test_tampering_and_truncation_are_reported(tmp_path):
    store, _, _, key = _store(tmp_path)
    store.seal()
    path = store.capture_path(key)
    path.write_bytes(path.read_bytes()[:50])
    assert any("SHA-256 differs" in p for p in store.verify())
    with pytest.raises(CaptureCorruptError, match="unreadable safetensors"):
        store.read_view(key)
    with pytest.raises(CaptureCorruptError, match="missing"):
        store.read_ground_truth(CaptureKey(9, 9))


def test_atomic_write_leaves_no_partial_file(tmp_path):
    target = tmp_path / "a.txt"
    atomic_write_text(target, "one")
    assert target.read_text() == "one" and not list(tmp_path.glob(".a.txt.*"))
