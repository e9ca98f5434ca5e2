"""The attack stage: a round's clients inverted as one batch, results per client, resumable; the
known-labels threat model given as an explicit object; corrupt inputs reported, never scored."""

from __future__ import annotations

import pytest
import torch

from attacks.base import SharedMetadata
from attacks.simulate import fedsgd_view
from attacks.stage import attack
from pipeline.stages import attack_run
from flaudit.models import ModelSpec, build_model
from fl_sim.run_store import RunStore
from fl_sim.vault import GroundTruth
from flaudit.rundir import CaptureKey
from attacks.config import AttackConfig
from flaudit.errors import FlauditError
from pipeline.stages import read_vault
from audit.scorer import read_round_audits

META = SharedMetadata("fedsgd", 1, 1, 1, 0.1, (1, 8, 8), 10, (0.5,), (0.5,))
SPEC = ModelSpec("lenet", 10, 1, 8)


def _store(tmp_path) -> RunStore:
    """Two rounds (two global models) of two clients, each client one 8x8 image."""
    store = RunStore(tmp_path / "run")
    store.create("name: x\n", seed=0)
    g = torch.Generator().manual_seed(0)
    for round_ in (1, 2):
        model = build_model(SPEC, seed=round_)
        for client in (0, 1):
            images = torch.rand(1, 1, 8, 8, generator=g)
            labels = torch.tensor([3 * client + round_])
            view = fedsgd_view(model, images, labels, META, round=round_, client=client)
            key = CaptureKey(round_, client)
            store.captures.write_view(key, spec=SPEC, global_state=model.state_dict(), update=dict(view.update), buffers={}, meta=META)
            store.vault.write(GroundTruth(round_, client, images, labels, torch.tensor([client])))
    store.seal(store.files())
    return store


def test_rounds_batched_equal_one_by_one_and_resume(tmp_path) -> None:
    store = _store(tmp_path)
    # Few Adam steps: long L-BFGS runs amplify float rounding (nested vs single vmap) into visible differences.
    config = AttackConfig("inverting_gradients", {"iterations": 4, "restarts": 2, "tv": 1e-3})
    batched = attack(store.captures, config, device="cpu").outcomes
    assert [(o.key.round, o.key.client) for o in batched] == [(1, 0), (1, 1), (2, 0), (2, 1)]
    # Updates of both rounds (different global weights) are rows of one batched computation.
    assert all(o.record["batched_with"] == [[1, 0], [1, 1], [2, 0], [2, 1]] for o in batched)
    assert [o.record["recovered_labels"] for o in batched] == [[1], [4], [2], [5]]
    results = store.reconstructions(config.name)
    first = {o.key: results.read(o.key).images for o in batched}
    # The attack writes its reconstruction and record only: pairing with the originals is scoring's.
    assert all(sorted(p.name for p in o.directory.iterdir()) == ["reconstruction.safetensors", "record.json"] for o in batched)

    again = attack(store.captures, config, device="cpu").outcomes
    assert all(o.skipped for o in again)

    single = attack(store.captures, AttackConfig(config.name, dict(config.params), updates_per_batch=1), device="cpu", force=True)
    for outcome in single.outcomes:
        assert outcome.record["batched_with"] == [[outcome.key.round, outcome.key.client]]
        assert torch.allclose(results.read(outcome.key).images, first[outcome.key], atol=1e-4)


def test_known_labels_are_an_explicit_object_and_recorded(tmp_path) -> None:
    store = _store(tmp_path)
    config = AttackConfig("idlg", {"iterations": 2}, known_labels=True)
    with pytest.raises(FlauditError, match="known_labels is true but no labels were given"):
        attack(store.captures, config, device="cpu")
    with pytest.raises(FlauditError, match="the threat model must say so"):
        attack(store.captures, AttackConfig("idlg", {"iterations": 2}), read_vault(store, config)[0], device="cpu")
    run = attack_run(store, config, device="cpu")
    assert [o.record["recovered_labels"] for o in run.outcomes] == [[1], [4], [2], [5]]  # the true labels, given
    assert all(o.record["threat_model"] == {"known_labels": True} for o in run.outcomes)


def _flip(path, offset: int = -3) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x40  # inside the last tensor's float data: the file still parses
    path.write_bytes(bytes(data))


def test_a_flipped_byte_in_a_capture_is_reported_never_scored_never_sealed(tmp_path, capsys) -> None:
    import json

    from pipeline.cli import main

    store = _store(tmp_path)
    bad = store.captures.capture_path(CaptureKey(1, 1))
    original = store.manifest_files()["captures/round_001/client_001.safetensors"]
    _flip(bad)
    args = ["-q", "attack", str(store.root), "--attack", "idlg", "--param", "iterations=2"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert f"round 1 client 1: {bad}: SHA-256 differs from manifest.json" in err
    assert not store.reconstructions("idlg").folder(CaptureKey(1, 1)).exists()
    assert all(store.reconstructions("idlg").folder(CaptureKey(r, c)).is_dir() for r, c in ((1, 0), (2, 0), (2, 1)))
    assert store.manifest_files()["captures/round_001/client_001.safetensors"] == original

    assert main(["-q", "audit", str(store.root), "--no-oracle", "--metrics", "mse,psnr"]) == 1
    assert f"round 1 (idlg): {bad}: SHA-256 differs" in capsys.readouterr().err
    rounds = [json.loads(line) for line in (store.root / "rounds.jsonl").read_text().splitlines()]
    assert [r["corrupt"] for r in rounds] == [[f"{bad}: SHA-256 differs from manifest.json (altered or corrupt)"], []]
    assert [c["client"] for c in rounds[0]["clients"]] == [0]  # the corrupt update contributes nothing
    records = [json.loads(line) for line in (store.root / "metrics.jsonl").read_text().splitlines()]
    assert sorted({(r["round"], r["client"]) for r in records}) == [(1, 0), (2, 0), (2, 1)]
    report = (store.root / "report.md").read_text()
    assert "## Corrupt or missing inputs (not scored)" in report and str(bad) in report

    assert main(["verify", str(store.root)]) == 1
    assert capsys.readouterr().out.splitlines() == [f"{bad}: SHA-256 differs from manifest.json (altered or corrupt)"]
    assert store.manifest_files()["captures/round_001/client_001.safetensors"] == original


def test_altered_reconstruction_or_ground_truth_is_reported_by_the_audit(tmp_path, capsys) -> None:
    from pipeline.cli import main

    store = _store(tmp_path)
    assert main(["-q", "attack", str(store.root), "--attack", "idlg", "--param", "iterations=2"]) == 0
    rec = store.reconstructions("idlg").folder(CaptureKey(2, 0)) / "reconstruction.safetensors"
    truth = store.vault.path(CaptureKey(1, 1))
    _flip(rec)
    _flip(truth)
    capsys.readouterr()
    assert main(["-q", "audit", str(store.root), "--no-oracle", "--metrics", "mse"]) == 1
    err = capsys.readouterr().err
    assert f"{rec}: SHA-256 differs" in err and f"{truth}: SHA-256 differs" in err
    assert main(["verify", str(store.root)]) == 1
    assert sorted(capsys.readouterr().out.splitlines()) == sorted(
        f"{p}: SHA-256 differs from manifest.json (altered or corrupt)" for p in (rec, truth)
    )


def test_a_reattack_replaces_every_output_of_the_update(tmp_path) -> None:
    store = _store(tmp_path)
    key = CaptureKey(1, 0)
    attack_run(store, AttackConfig("idlg", {"iterations": 2}), device="cpu")
    stale = store.reconstructions("idlg").folder(key) / "7_7_rec.png"
    stale.write_bytes(b"left over from another setting")
    attack_run(store, AttackConfig("idlg", {"iterations": 3}), device="cpu")
    assert not stale.exists()
    assert store.verify() == []


@pytest.mark.parametrize("which", ["capture", "capture_json", "ground_truth", "reconstruction", "record"])
def test_one_flipped_byte_in_any_input_is_named_by_verify_attack_and_audit(tmp_path, capsys, which) -> None:
    """Fault injection after a finished attack: the file is named, the update scores nothing, every command exits 1,
    and manifest.json keeps the original hash."""
    import json

    from pipeline.cli import main

    store = _store(tmp_path)
    attack_args = ["-q", "attack", str(store.root), "--attack", "idlg", "--param", "iterations=2"]
    assert main(attack_args) == 0
    key = CaptureKey(2, 1)
    folder = store.reconstructions("idlg").folder(key)
    path = {
        "capture": store.captures.capture_path(key), "capture_json": store.captures.info_path(key),
        "ground_truth": store.vault.path(key), "reconstruction": folder / "reconstruction.safetensors",
        "record": folder / "record.json",
    }[which]
    name = store.relative(path)
    original = store.manifest_files()[name]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    capsys.readouterr()

    assert main(["verify", str(store.root)]) == 1
    assert capsys.readouterr().out.splitlines() == [f"{path}: SHA-256 differs from manifest.json (altered or corrupt)"]
    assert main(attack_args) == 1
    assert f"round 2 client 1: {path}: SHA-256 differs" in capsys.readouterr().err
    assert main(["-q", "audit", str(store.root), "--no-oracle", "--metrics", "mse,psnr"]) == 1
    assert f"round 2 (idlg): {path}: SHA-256 differs" in capsys.readouterr().err
    records = [json.loads(line) for line in (store.root / "metrics.jsonl").read_text().splitlines()]
    assert (2, 1) not in {(r["round"], r["client"]) for r in records}
    assert {(r["round"], r["client"]) for r in records} == {(1, 0), (1, 1), (2, 0)}
    assert store.manifest_files()[name] == original


def test_a_report_says_when_the_labels_were_given(tmp_path) -> None:
    from pipeline.cli import main

    store = _store(tmp_path)
    assert main(["-q", "attack", str(store.root), "--attack", "idlg", "--param", "iterations=2", "--known-labels"]) == 0
    assert main(["-q", "audit", str(store.root), "--no-oracle", "--metrics", "mse,psnr"]) == 0
    report = (store.root / "report.md").read_text()
    assert "idlg: labels given to the attacker" in report
    header, *rows = [line for line in report.splitlines() if line.startswith("| ")]
    column = header.split(" | ").index("labels recovered")
    assert [row.split(" | ")[column] for row in rows] == ["given", "given"]
    audits = read_round_audits(store)
    assert all(a.threat_model.known_labels and a.label_accuracy is None for a in audits)
