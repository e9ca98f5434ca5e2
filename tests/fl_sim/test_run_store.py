"""The run directory: atomic safetensors files, a manifest of hashes, corrupt files reported."""

from __future__ import annotations

import pytest
import torch

from attacks.base import SharedMetadata
from flaudit.errors import CaptureCorruptError
from flaudit.io import atomic_write_text
from flaudit.models import ModelSpec, build_model
from fl_sim.run_store import RunStore
from fl_sim.vault import GroundTruth
from flaudit.rundir import CaptureKey

META = SharedMetadata("fedsgd", 2, 2, 1, 0.1, (1, 8, 8), 10, (0.3,), (0.4,))


def _store(tmp_path):
    store = RunStore(tmp_path / "run")
    store.create("name: x\n", seed=3)
    spec = ModelSpec("lenet", 10, 1, 8)
    model = build_model(spec, seed=0)
    update = {n: torch.randn_like(p) for n, p in model.named_parameters()}
    key = CaptureKey(2, 1)
    store.captures.write_view(key, spec=spec, global_state=model.state_dict(), update=update, buffers={}, meta=META)
    store.vault.write(GroundTruth(2, 1, torch.rand(2, 1, 8, 8), torch.tensor([3, 4]), torch.tensor([10, 11])))
    store.seal(store.files())
    return store, model, update, key


def test_round_trip_and_manifest(tmp_path):
    store, model, update, key = _store(tmp_path)
    assert store.captures.capture_keys() == [key]
    view = store.captures.read_view(key)
    assert view.meta == META and not view.model.training
    assert all(torch.equal(view.update[n], update[n]) for n in update)
    assert all(torch.equal(a, b) for a, b in zip(view.model.parameters(), model.parameters()))
    manifest = store.seal()
    assert manifest["seed"] == 3 and "captures/round_002/client_001.safetensors" in manifest["files"]
    assert "ground_truth/round_002/client_001.safetensors" in manifest["files"] and manifest["versions"]["torch"]
    assert store.verify() == []
    truth = store.vault.read(key)
    assert truth.labels.tolist() == [3, 4] and truth.indices.tolist() == [10, 11]


def test_tampering_and_truncation_are_reported(tmp_path):
    store, _, _, key = _store(tmp_path)
    path = store.captures.capture_path(key)
    path.write_bytes(path.read_bytes()[:50])
    assert store.verify() == [f"{path}: SHA-256 differs from manifest.json (altered or corrupt)"]
    with pytest.raises(CaptureCorruptError, match="SHA-256 differs"):
        store.captures.read_view(key)
    with pytest.raises(CaptureCorruptError, match="missing"):
        store.vault.read(CaptureKey(9, 9))


def test_one_flipped_bit_is_caught_and_never_sealed_over(tmp_path):
    store, _, _, key = _store(tmp_path)
    path = store.captures.capture_path(key)
    recorded = store.manifest_files()["captures/round_002/client_001.safetensors"]
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x40  # inside the last tensor's float data: still a valid safetensors file
    path.write_bytes(bytes(data))
    with pytest.raises(CaptureCorruptError, match=f"{path}: SHA-256 differs"):
        store.captures.read_view(key)
    # Another step seals only what it wrote: the altered capture keeps its original hash.
    other = store.root / "report.md"
    other.write_text("x")
    store.seal([other])
    assert store.manifest_files()["captures/round_002/client_001.safetensors"] == recorded
    assert store.verify() == [f"{path}: SHA-256 differs from manifest.json (altered or corrupt)"]


def test_missing_unexpected_and_unsealed_files(tmp_path):
    store, _, _, key = _store(tmp_path)
    store.vault.path(key).unlink()
    stray = store.root / "captures" / "round_002" / "client_009.safetensors"
    stray.write_bytes(b"junk")
    assert store.verify() == [f"{store.vault.path(key)}: missing", f"{stray}: unexpected (not in manifest.json)"]
    with pytest.raises(CaptureCorruptError, match="missing \\(manifest.json lists it\\)"):
        store.vault.read(key)
    stray.with_suffix(".json").write_text(store.captures.capture_path(key).with_suffix(".json").read_text())
    with pytest.raises(CaptureCorruptError, match=f"{stray.with_suffix('.json')}: not in manifest.json"):
        store.captures.read_view(CaptureKey(2, 9))
    # A capture the manifest lists stays a key after its file is gone, so that it is reported.
    store.captures.capture_path(key).unlink()
    assert CaptureKey(2, 1) in store.captures.capture_keys()


def test_atomic_write_leaves_no_partial_file(tmp_path):
    target = tmp_path / "a.txt"
    atomic_write_text(target, "one")
    assert target.read_text() == "one" and not list(tmp_path.glob(".a.txt.*"))


def test_a_manifest_sealed_by_another_process_is_read_again(tmp_path):
    store, _, _, key = _store(tmp_path)
    assert store.vault.read(key).labels.tolist() == [3, 4]  # manifest now cached
    other = RunStore(store.root)  # e.g. the server process sealing a new file
    extra = store.root / "history.json"
    extra.write_text("{}")
    other.seal([extra])
    assert store.manifest_files()["history.json"] == other.manifest_files()["history.json"]
    assert store.read_history() == {}
