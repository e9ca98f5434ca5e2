"""`flaudit run` end to end: federation -> attack -> audit -> dashboards, and a sweep's privacy-utility table."""

from __future__ import annotations

import json

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from pipeline.cli import main
from tests.conftest import SESSION_HUB_CHECKPOINTS

pytestmark = pytest.mark.e2e

SCENARIO = """
name: cli-e2e
federation: {clients: 2, rounds: 2, protocol: fedsgd, batch_size: 1, learning_rate: 0.5, seed: 1}
data: {dataset: digits}
model: {name: lenet}
capture: {rounds: [1, 2], clients: [0]}
attack: {name: idlg, params: {iterations: 3}}
audit: {metrics: [mse, psnr, ssim, lpips, fid], oracle: true}
"""


def test_run_writes_leakage_scalars_for_every_captured_round(tmp_path, write_scenario, capsys):
    path = write_scenario(SCENARIO)
    run_dir = tmp_path / "run"
    assert main(["run", str(path), "--run-dir", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "| round | accuracy |" in out
    events = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0}).Reload()
    tags = events.Tags()["scalars"]
    assert "leakage/idlg/psnr/mean" in tags and "train/accuracy" in tags
    assert [e.step for e in events.Scalars("leakage/idlg/psnr/mean")] == [1, 2]
    rounds = [json.loads(line) for line in (run_dir / "rounds.jsonl").read_text().splitlines()]
    assert sorted(r["round"] for r in rounds) == [1, 2]
    report = (run_dir / "report.md").read_text()
    # LPIPS and FID: unavailable on every machine, because tests/conftest.py gives the run (and its Ray
    # workers) an empty TORCH_HOME and FLAUDIT_OFFLINE=1; the report names the file to provide and where.
    assert "## Unavailable metrics" in report and "FLAUDIT_OFFLINE is set" in report
    assert f"put it at {SESSION_HUB_CHECKPOINTS / 'alexnet-owt-7be5be79.pth'}" in report
    assert f"put it at {SESSION_HUB_CHECKPOINTS / 'pt_inception-2015-12-05-6726825d.pth'}" in report
    pairs = sorted(p.name for p in (run_dir / "attacks" / "idlg" / "round_001" / "client_000").glob("*.png"))
    assert len(pairs) == 2 and pairs[0].endswith("_ori.png") and pairs[1].endswith("_rec.png")
    assert pairs[0].split("_")[:2] == pairs[1].split("_")[:2]

    # Resumable: a second run reuses the federation and the attack, and only re-audits.
    record = run_dir / "attacks" / "idlg" / "round_001" / "client_000" / "record.json"
    before = record.stat().st_mtime_ns
    assert main(["-q", "run", str(path), "--run-dir", str(run_dir)]) == 0
    assert record.stat().st_mtime_ns == before
    # Every file the federation, the attack and the audit wrote is sealed; nothing else is there.
    assert main(["verify", str(run_dir)]) == 0


def test_sweep_writes_privacy_utility_table(tmp_path, write_scenario):
    text = SCENARIO.replace("rounds: 2,", "rounds: 1,").replace("capture: {rounds: [1, 2]", "capture: {rounds: [1]")
    text += "sweep: [{defense: prune, param: ratio, values: [0, 0.99]}]\n"
    path = write_scenario(text)
    assert main(["-q", "run", str(path), "--run-dir", str(tmp_path / "sweep")]) == 0
    table = (tmp_path / "sweep" / "privacy_utility.md").read_text()
    assert "prune-ratio-0 " in table and "prune-ratio-0.99" in table
    assert (tmp_path / "sweep" / "privacy_utility.png").stat().st_size > 1000
    assert (tmp_path / "sweep" / "prune-ratio-0.99" / "report.md").exists()
