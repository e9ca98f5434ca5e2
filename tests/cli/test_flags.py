"""Every numeric or choice flag is checked with the declaration of the config key it sets: a bad
value is argparse's one-line error naming the flag and what is allowed, exit status 2, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.cli import main

REPO = Path(__file__).resolve().parents[2]


def _error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


def test_updates_per_batch_minus_one_is_one_clean_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _error(["attack", str(tmp_path), "--updates-per-batch", "-1"], capsys) == (
        "flaudit attack: error: argument --updates-per-batch: -1 is out of range; allowed: int in [1, 4096] - "
        "at most this many captured updates (any clients and rounds) inverted as one batched computation"
    )


def test_seed_minus_three_is_one_clean_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _error(["attack", str(tmp_path), "--seed", "-3"], capsys) == (
        "flaudit attack: error: argument --seed: -3 is out of range; allowed: int in [0, inf) - seed of the attack's random initialisations"
    )


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["attack", "RUN", "--attack", "idl"],
         "flaudit attack: error: argument --attack: no attack 'idl' (did you mean 'idlg'?); known: analytic_linear, dlg, dlg_paper, gradinversion"),
        (["attack", "RUN", "--seed", "x"], "flaudit attack: error: argument --seed: expected an integer, got 'x'; allowed: int in [0, inf)"),
        (["attack", "RUN", "--rounds", "1", "0"], "flaudit attack: error: argument --rounds: 0 is out of range; allowed: int in [1, inf)"),
        (["attack", "RUN", "--clients", "-1"], "flaudit attack: error: argument --clients: -1 is out of range; allowed: int in [0, inf)"),
        (["--threads", "0", "validate", "x.yaml"], "flaudit: error: argument --threads: 0 is out of range; allowed: int in [1, inf)"),
        (["run", "x.yaml", "--threads", "0"], "flaudit run: error: argument --threads: 0 is out of range; allowed: int in [1, inf)"),
        (["audit", "RUN", "--align-by", "psnr"], "flaudit audit: error: argument --align-by: 'psnr' is not allowed; allowed: one of 'mse', 'ssim'"),
        (["audit", "RUN", "--metrics", "mse,pnsr"],
         "flaudit audit: error: argument --metrics: 'pnsr' is not allowed (did you mean 'psnr'?); allowed: one of 'mse', 'psnr'"),
        (["semsim", "train", "--epochs", "0"], "flaudit semsim train: error: argument --epochs: 0 is out of range; allowed: int in [1, inf)"),
        (["semsim", "train", "--val-fraction", "1"],
         "flaudit semsim train: error: argument --val-fraction: 1.0 is out of range; allowed: float in [0, 1)"),
        (["semsim", "train", "--lr", "nan"], "flaudit semsim train: error: argument --lr: nan is not a finite number; allowed: float in (0, inf)"),
        (["semsim", "train", "--pretrained", "yes"],
         "flaudit semsim train: error: argument --pretrained: 'yes' is not allowed; allowed: one of 'auto', 'imagenet', 'none'"),
        (["semsim", "score", "O", "R", "--checkpoint", "c", "--batch-size", "0"],
         "flaudit semsim score: error: argument --batch-size: 0 is out of range; allowed: int in [1, inf)"),
        (["semsim", "correlate", "t.csv", "--confidence", "1"],
         "flaudit semsim correlate: error: argument --confidence: 1.0 is out of range; allowed: float in (0, 1)"),
    ],
)
def test_bad_flag_values_name_the_flag_and_what_is_allowed(argv: list[str], line: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert _error(argv, capsys).startswith(line)


def test_the_process_exits_2_without_a_traceback(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "pipeline.cli", "attack", str(tmp_path), "--updates-per-batch", "-1"],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 2
    assert "error: argument --updates-per-batch: -1 is out of range" in done.stderr and "Traceback" not in done.stderr


def test_good_values_reach_the_config(tmp_path: Path) -> None:
    from pipeline.cli import build_parser

    args = build_parser().parse_args(["audit", str(tmp_path), "--metrics", "mse, ssim", "--align-by", "ssim"])
    assert args.metrics == ("mse", "ssim") and args.align_by == "ssim"
    args = build_parser().parse_args(["attack", str(tmp_path), "--rounds", "1", "50", "--updates-per-batch", "2", "--seed", "0"])
    assert (args.rounds, args.updates_per_batch, args.seed) == ([1, 50], 2, 0)
    assert build_parser().parse_args(["audit", str(tmp_path)]).metrics == ("mse", "psnr", "ssim", "lpips", "fid")
