"""The scorer, dashboards and report on a run directory fabricated with RunStore."""

from __future__ import annotations

import json
import math
import re

import pytest
import torch

from audit.metrics import ImageMetric
from audit.report import write_report
from audit.scorer import RoundAudit, read_round_audits, score_run
from audit.tensorboard import write_tensorboard
from fl_sim.run_store import RunStore
from fl_sim.vault import GroundTruth
from flaudit.rundir import CaptureKey
from flaudit.io import atomic_write_json, save_tensors
from tests.conftest import SESSION_HUB_CHECKPOINTS

ROUNDS, CLIENTS, BATCH = (1, 2, 3), (0, 1), 4


@pytest.fixture(scope="module")
def run_dir(digits, tmp_path_factory):
    """Round 1: near-perfect shuffled reconstructions; round 2: blurred; round 3: noise."""
    _, _, test_x, test_y = digits
    store = RunStore(tmp_path_factory.mktemp("run") / "quick")
    store.create("name: fabricated\n", seed=0)
    g = torch.Generator().manual_seed(5)
    for r in ROUNDS:
        for c in CLIENTS:
            start = (r * len(CLIENTS) + c) * BATCH
            images, labels = test_x[start : start + BATCH], test_y[start : start + BATCH]
            key = CaptureKey(r, c)
            store.vault.write(GroundTruth(r, c, images, labels, torch.arange(start, start + BATCH)))
            perm = torch.randperm(BATCH, generator=g)
            if r == 1:
                rec = (images + 0.02 * torch.randn(images.shape, generator=g)).clamp(0, 1)
            elif r == 2:
                rec = torch.nn.functional.avg_pool2d(images, 3, stride=1, padding=1)
            else:
                rec = torch.rand(images.shape, generator=g)
            folder = store.reconstructions("dlg").folder(key)
            save_tensors(folder / "reconstruction.safetensors", {"images": rec[perm], "labels": labels[perm]})
            atomic_write_json(folder / "record.json", {"attack": "dlg", "iterations": 10, "labels_known": False,
                                                       "defenses": [["gaussian", [["sigma", 0.01]]]]})
    store.write_history({"rounds": [{"round": r, "accuracy": 0.5 + 0.1 * r, "loss": 1.0 / r} for r in ROUNDS]})
    store.seal(store.files())
    return store


@pytest.fixture(scope="module")
def audits(run_dir, digits_oracle):
    brightness = ImageMetric("brightness_gap", lambda ori, rec: (ori.mean((1, 2, 3)) - rec.mean((1, 2, 3))).abs(), False)
    return score_run(run_dir, metrics=("mse", "psnr", "ssim", "lpips", "fid"), oracle=digits_oracle, device="cpu",
                     download=False, extra_metrics={"semsim_stub": lambda ori, rec: (ori - rec).abs().flatten(1).sum(1),
                                                    "brightness_gap": brightness}).audits


def test_round_audits(audits) -> None:
    assert [(a.attack, a.round) for a in audits] == [("dlg", r) for r in ROUNDS]
    first, second, third = audits
    assert first.accuracy == pytest.approx(0.6) and first.loss == pytest.approx(1.0)
    assert first.num_clients == 2 and first.num_images == 8 and len(first.clients) == 2
    assert first.metrics["psnr"].mean > second.metrics["psnr"].mean > third.metrics["psnr"].mean
    assert first.metrics["ssim"].mean > 0.9 and third.metrics["ssim"].mean < 0.2
    # worst = the best-reconstructed image
    assert first.metrics["psnr"].worst >= max(c.metrics["psnr"].mean for c in first.clients)
    assert first.metrics["mse"].worst == min(c.metrics["mse"].worst for c in first.clients)
    assert first.recognised_fraction == 1.0 and third.recognised_fraction <= 0.5
    assert first.label_accuracy == 1.0
    # alignment undid the shuffle: every original matched its own noisy copy
    assert first.metrics["mse"].worst < 1e-3 and first.metrics["mse"].mean < 1e-3
    # The hermetic TORCH_HOME (tests/conftest.py) holds no weights: both are unavailable, naming the file to provide.
    assert set(first.unavailable) == {"lpips", "fid"}
    assert f"put it at {SESSION_HUB_CHECKPOINTS / 'alexnet-owt-7be5be79.pth'}" in first.unavailable["lpips"]
    assert f"put it at {SESSION_HUB_CHECKPOINTS / 'pt_inception-2015-12-05-6726825d.pth'}" in first.unavailable["fid"]
    assert "lpips" not in first.metrics and first.fid is None
    assert "semsim_stub" in first.metrics and not first.metrics["semsim_stub"].higher_is_leakier
    assert first.defenses == {"gaussian": {"sigma": 0.01}}


def test_records_written(run_dir, audits) -> None:
    lines = (run_dir.root / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == len(ROUNDS) * len(CLIENTS) * BATCH
    rec = json.loads(lines[0])
    assert {"round", "client", "attack", "defenses", "metrics", "recognised", "label", "index", "unavailable"} <= set(rec)
    assert set(rec["metrics"]) == {"mse", "psnr", "ssim", "semsim_stub", "brightness_gap"}  # no lpips value
    assert rec["unavailable"] == ["fid", "lpips"] and math.isfinite(rec["metrics"]["psnr"])
    again = read_round_audits(run_dir)
    assert again == list(audits)
    assert isinstance(again[0], RoundAudit)


def test_tensorboard_has_leakage_scalars_for_every_round(run_dir, audits) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    folder = write_tensorboard(run_dir, audits, hparams={"sweep/value": 0.01})
    write_tensorboard(run_dir, audits)  # re-audit replaces, does not duplicate
    events = list(folder.glob("events.out.tfevents.*"))
    assert len(events) == 1
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0, "tensors": 0}).Reload()
    tags = acc.Tags()
    for metric in ("psnr", "ssim", "mse"):
        for stat in ("mean", "worst"):
            steps = [e.step for e in acc.Scalars(f"leakage/dlg/{metric}/{stat}")]
            assert steps == list(ROUNDS)
    assert [e.step for e in acc.Scalars("leakage/dlg/recognised")] == list(ROUNDS)
    assert [round(e.value, 3) for e in acc.Scalars("train/accuracy")] == [0.6, 0.7, 0.8]
    assert "reconstructions/dlg" in tags["images"] and len(acc.Images("reconstructions/dlg")) == len(ROUNDS)
    assert any("summary" in t for t in tags["tensors"])
    from tensorboard.plugins.hparams import plugin_data_pb2

    hp = acc.PluginTagToContent("hparams")
    assert {"_hparams_/experiment", "_hparams_/session_start_info"} <= set(hp)
    start = plugin_data_pb2.HParamsPluginData.FromString(hp["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["defense/gaussian/sigma"].number_value == pytest.approx(0.01)
    assert start.hparams["defenses"].string_value == "gaussian"


def test_report_written(run_dir, audits) -> None:
    path = write_report(run_dir, audits)
    text = path.read_text()
    assert "| round | accuracy" in text and "psnr worst" in text
    assert text.count("\n| 1 |") == 1 and "| 3 |" in text
    assert "lpips" in text and "put it at" in text  # unavailable, with the path
    for r in ROUNDS:
        assert (run_dir.root / "figures" / f"round_{r:03d}_dlg.png").is_file()


def test_privacy_utility_table_and_plot(run_dir, audits, tmp_path) -> None:
    from audit.sweep_table import sweep_point, write_privacy_utility

    point = sweep_point(run_dir, name="gaussian-sigma-0.01", defense="gaussian", param="sigma", value=0.01)
    assert point.final_accuracy == pytest.approx(0.8)
    expected = sum(a.metrics["psnr"].mean for a in audits) / len(audits)
    assert point.leakage["psnr"] == pytest.approx(expected)
    assert point.worst["psnr"] == max(a.metrics["psnr"].worst for a in audits)
    weaker = type(point)(**{**point.__dict__, "name": "gaussian-sigma-0", "value": 0.0, "final_accuracy": 0.9,
                            "leakage": {**point.leakage, "psnr": point.leakage["psnr"] + 5}})
    paths = write_privacy_utility([weaker, point], tmp_path)
    md, table, plot = paths
    assert "| gaussian-sigma-0.01 | gaussian | sigma | 0.01 | 0.8000 |" in md.read_text()
    assert table.read_text().splitlines()[0].startswith("variant,defense,param,value,final_accuracy")
    assert plot.read_bytes()[:4] == b"\x89PNG"


def test_flaudit_audit_and_doctor_commands(run_dir, capsys) -> None:
    from pipeline.cli import main

    assert main(["-q", "audit", str(run_dir.root), "--metrics", "psnr,ssim,lpips", "--no-oracle", "--no-download"]) == 0
    audits = read_round_audits(run_dir)
    assert set(audits[0].metrics) == {"psnr", "ssim"} and "lpips" in audits[0].unavailable
    assert (run_dir.root / "report.md").is_file()
    with pytest.raises(SystemExit) as exit_info:  # checked by argparse, with AuditConfig.metrics' declaration
        main(["audit", str(run_dir.root), "--metrics", "psnr,bogus", "--no-oracle"])
    assert exit_info.value.code == 2
    assert "error: argument --metrics: 'bogus' is not allowed; allowed: one of 'mse', 'psnr', 'ssim', 'lpips', 'fid'" in capsys.readouterr().err
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    # Hermetic: the weights are not there and nothing will be downloaded; the embedded datasets load.
    assert re.search(r"^\s*--\s+lpips\b.*" + re.escape(str(SESSION_HUB_CHECKPOINTS / "alexnet-owt-7be5be79.pth")), out, re.M)
    assert re.search(r"^\s*--\s+fid\b", out, re.M) and re.search(r"^\s*ok\s+digits\b", out, re.M)
    assert re.search(r"^\s*ok\s+cpu\b", out, re.M) and "FLAUDIT_OFFLINE is set" in out
