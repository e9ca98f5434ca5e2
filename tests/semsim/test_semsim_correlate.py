"""Correlations: signed, equal to scipy's, with bootstrap CIs; the table and the CLI."""

from __future__ import annotations

import argparse
import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from flaudit.errors import FlauditError
from semsim.correlate import correlate, correlate_rows, markdown_table, read_table

RATE = [0.9, 0.1, 0.5, 0.7, 0.3, 0.2, 0.8]


def test_values_and_signs_match_scipy() -> None:
    rng = np.random.default_rng(0)
    psnr = np.array(RATE) * 20 + rng.normal(0, 2, len(RATE))  # similarity: rises with the rate
    lpips = 1 - np.array(RATE) + rng.normal(0, 0.2, len(RATE))  # distance: falls with the rate
    results = correlate({"psnr": psnr, "lpips": lpips}, RATE, dataset="digits", n_boot=500)
    by = {r.metric: r for r in results}
    for name, values in (("psnr", psnr), ("lpips", lpips)):
        rho = stats.spearmanr(values, RATE)
        tau = stats.kendalltau(values, RATE)
        assert by[name].rho == pytest.approx(rho.statistic) and by[name].rho_p == pytest.approx(rho.pvalue)
        assert by[name].tau == pytest.approx(tau.statistic) and by[name].tau_p == pytest.approx(tau.pvalue)
        low, high = by[name].rho_ci
        assert low <= high and -1 <= low and high <= 1
    assert by["psnr"].rho > 0.5 and by["lpips"].rho < -0.5
    # The CIs are a percentile bootstrap over variants: recomputed here with scipy, resample by resample,
    # from the same seeded draws (metric k of the call uses default_rng([seed, k])).
    for offset, (name, values) in enumerate((("psnr", psnr), ("lpips", lpips))):
        rho_ci, tau_ci = _bootstrap_reference(values, RATE, n_boot=500, rng=np.random.default_rng([0, offset]))
        assert by[name].rho_ci == pytest.approx(rho_ci, abs=1e-12) and by[name].tau_ci == pytest.approx(tau_ci, abs=1e-12)
    # With seed 0 both intervals exclude 0, each on its own side: psnr rises with the rate, lpips falls.
    assert by["psnr"].rho_ci == pytest.approx((0.5652173913043478, 1.0)) and by["psnr"].tau_ci == pytest.approx((0.4666666666666667, 1.0))
    assert by["lpips"].rho_ci == pytest.approx((-1.0, -0.007748868778282757)) and by["lpips"].tau_ci == pytest.approx((-1.0, -0.027941176470589572))


def _bootstrap_reference(x, y, *, n_boot: int, rng: np.random.Generator, confidence: float = 0.95):  # type: ignore[no-untyped-def]
    """Percentile CIs of scipy's Spearman rho and Kendall tau over `n_boot` resamples (undefined ones dropped)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    idx = rng.integers(0, len(x), size=(n_boot, len(x)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant resamples: scipy warns and returns NaN
        rhos = np.array([stats.spearmanr(x[i], y[i]).statistic for i in idx])
        taus = np.array([stats.kendalltau(x[i], y[i]).statistic for i in idx])
    low, high = (1 - confidence) / 2, 1 - (1 - confidence) / 2

    def interval(values: np.ndarray) -> tuple[float, float]:
        values = values[np.isfinite(values)]
        return float(np.quantile(values, low)), float(np.quantile(values, high))

    return interval(rhos), interval(taus)


def test_perfect_orders_and_degenerate_cases() -> None:
    results = correlate({"up": [1, 2, 3, 4], "down": [4, 3, 2, 1], "flat": [1, 1, 1, 1], "gap": [1, math.nan, 3, 4]}, [0.1, 0.2, 0.3, 0.4], n_boot=200)
    by = {r.metric: r for r in results}
    assert by["up"].rho == pytest.approx(1) and by["up"].tau == pytest.approx(1)
    assert by["down"].rho == pytest.approx(-1) and by["down"].tau == pytest.approx(-1)
    assert math.isnan(by["flat"].rho)
    assert by["gap"].n == 3 and by["gap"].rho == pytest.approx(1)
    with pytest.raises(FlauditError):
        correlate({"short": [1, 2]}, [0.1, 0.2, 0.3])


def test_bootstrap_ci_is_reproducible_and_narrows_with_agreement() -> None:
    a = correlate({"m": RATE}, RATE, n_boot=300, seed=1)[0]
    b = correlate({"m": RATE}, RATE, n_boot=300, seed=1)[0]
    assert a.rho_ci == b.rho_ci == (pytest.approx(1.0), pytest.approx(1.0))
    noisy = correlate({"m": [0.5, 0.2, 0.9, 0.1, 0.4, 0.6, 0.3]}, RATE, n_boot=300)[0]
    assert noisy.rho_ci[1] - noisy.rho_ci[0] > 0.3


def _table(path: Path) -> Path:
    rows = []
    for ds, sign in (("digits", 1), ("lfw-faces", -1)):
        for i, rate in enumerate(RATE):
            rows.append({"dataset": ds, "variant": f"v{i}", "recognition_rate": rate, "psnr": sign * rate * 10, "mse": 1 - rate})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_rows_grouped_per_dataset_and_table(tmp_path: Path) -> None:
    rows = read_table(_table(tmp_path / "t.jsonl"))
    results = correlate_rows(rows, n_boot=100)
    assert list(results) == ["digits", "lfw-faces"]
    assert [r.metric for r in results["digits"]] == ["psnr", "mse"]
    assert results["digits"][0].rho == pytest.approx(1) and results["lfw-faces"][0].rho == pytest.approx(-1)
    text = markdown_table(results["digits"], title="digits")
    assert "| psnr | +1.000 |" in text and "| mse | -1.000 |" in text
    with pytest.raises(FlauditError, match="recognition"):
        correlate_rows(rows, target="recognition")
    # CSV reads the same.
    csv_path = tmp_path / "t.csv"
    csv_path.write_text("dataset,variant,recognition_rate,psnr\n" + "".join(f"d,v{i},{r},{r * 3}\n" for i, r in enumerate(RATE)))
    assert correlate_rows(read_table(csv_path), n_boot=0)["d"][0].rho == pytest.approx(1)


def _parser() -> argparse.ArgumentParser:
    # The real `flaudit` parser: the top level holds options the sub-commands rely on (--threads).
    from pipeline.cli import build_parser

    return build_parser()


def test_cli_correlate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = _parser().parse_args(["semsim", "correlate", str(_table(tmp_path / "t.jsonl")), "--n-boot", "50", "--out", str(tmp_path / "o.md")])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "digits" in out and "lfw-faces" in out and "Spearman" in out
    assert (tmp_path / "o.md").read_text().strip() == out.strip()


def test_cli_train_and_score(tmp_path: Path, synthetic_factory, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    from semsim.data import write_annotations

    annotations = synthetic_factory(tmp_path / "data", originals=6)
    write_annotations(tmp_path / "a.jsonl", annotations)
    parser = _parser()
    args = parser.parse_args(
        ["semsim", "train", "--annotations", str(tmp_path / "a.jsonl"), "--out", str(tmp_path / "s.pt"), "--backbone", "lenet", "--width", "4",
         "--input-size", "16", "--epochs", "2", "--batch-size", "8", "--pretrained", "none", "--device", "cpu", "--exclude", "variant=v1"]
    )
    assert args.func(args) == 0
    assert "scratch init" in capsys.readouterr().out
    import torch

    info = torch.load(tmp_path / "s.pt", weights_only=True)["info"]
    assert "v1" not in info["variants"]
    args = parser.parse_args(["semsim", "score", str(tmp_path / "data"), str(tmp_path / "data" / "rec" / "v0"), "--checkpoint", str(tmp_path / "s.pt"), "--out", str(tmp_path / "d.csv")])
    assert args.func(args) == 0
    lines = (tmp_path / "d.csv").read_text().splitlines()
    assert lines[0] == "key,original,reconstruction,semsim" and len(lines) == 7
    bad = parser.parse_args(["semsim", "train", "--annotations", str(tmp_path / "a.jsonl"), "--exclude", "colour=red"])
    with pytest.raises(FlauditError, match="FIELD=VALUE"):
        bad.func(bad)
