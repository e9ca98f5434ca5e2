"""Rank correlation between per-variant leakage under each metric and the annotation recognition rate.

The paper's question: across model variants, does a metric order the variants the way people
do? For each metric it reports Spearman's rho and Kendall's tau between the metric's
per-variant leakage and the share of that variant's reconstructions annotators recognised.
Signs are kept: a distance (MSE, LPIPS, FID, SemSim) that agrees with people correlates
negatively with the recognition rate, a similarity (PSNR, SSIM) positively; compare |rho|.
"""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from flaudit.errors import DatasetUnavailableError, FlauditError

ID_COLUMNS = ("dataset", "variant", "model", "attack", "architecture", "defense")


@dataclass(frozen=True)
class Correlation:
    """Signed rank correlations of one metric with the recognition rate, over `n` variants.

    Args:
        dataset: the group the variants belong to.
        metric: metric name.
        n: variants with a finite value of both.
        rho, rho_p, rho_ci: Spearman's rho, its two-sided p-value, bootstrap CI (low, high).
        tau, tau_p, tau_ci: Kendall's tau-b, its two-sided p-value, bootstrap CI.
    """

    dataset: str
    metric: str
    n: int
    rho: float
    rho_p: float
    rho_ci: tuple[float, float]
    tau: float
    tau_p: float
    tau_ci: tuple[float, float]

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "metric": self.metric,
            "n": self.n,
            "rho": self.rho,
            "rho_p": self.rho_p,
            "rho_ci": list(self.rho_ci),
            "tau": self.tau,
            "tau_p": self.tau_p,
            "tau_ci": list(self.tau_ci),
        }


def _spearman_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman's rho of each row pair (ties get average ranks); NaN for a constant row."""
    rx = stats.rankdata(x, axis=1)
    ry = stats.rankdata(y, axis=1)
    rx = rx - rx.mean(axis=1, keepdims=True)
    ry = ry - ry.mean(axis=1, keepdims=True)
    denom = np.sqrt((rx**2).sum(axis=1) * (ry**2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (rx * ry).sum(axis=1) / np.where(denom > 0, denom, 1), np.nan)


def bootstrap_ci(
    x: np.ndarray, y: np.ndarray, *, n_boot: int, confidence: float, rng: np.random.Generator
) -> tuple[tuple[float, float], tuple[float, float]]:
    """Percentile bootstrap CIs of Spearman's rho and Kendall's tau (resampling variants).

    Resamples where a side is constant (rank correlation undefined) are dropped.
    """
    n = x.shape[0]
    idx = rng.integers(0, n, size=(n_boot, n))
    rhos = _spearman_rows(x[idx], y[idx])
    taus = np.array([stats.kendalltau(x[row], y[row]).statistic for row in idx], dtype=float)
    alpha = (1 - confidence) / 2

    def interval(values: np.ndarray) -> tuple[float, float]:
        values = values[np.isfinite(values)]
        if values.size == 0:
            return (math.nan, math.nan)
        return (float(np.quantile(values, alpha)), float(np.quantile(values, 1 - alpha)))

    return interval(rhos), interval(taus)


def correlate(
    metrics: Mapping[str, Sequence[float]],
    recognition: Sequence[float],
    *,
    dataset: str = "",
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> list[Correlation]:
    """Spearman's rho and Kendall's tau (scipy) of each metric against the recognition rate.

    Args:
        metrics: per metric, its per-variant leakage, aligned with `recognition`.
        recognition: per-variant share of reconstructions the annotators recognised.
        dataset: label for the rows.
        n_boot: bootstrap resamples for the confidence intervals (0: no CI).
        confidence: CI level.
        seed: bootstrap randomness.

    Returns:
        One Correlation per metric, in the order given. Variants where the metric or the
        rate is not finite (an unavailable metric) are left out of that metric's row; with
        fewer than 3 variants, or a constant side, the values are NaN.
    """
    target = np.asarray(recognition, dtype=float)
    results = []
    for offset, (name, values) in enumerate(metrics.items()):
        x = np.asarray(values, dtype=float)
        if x.shape != target.shape:
            raise FlauditError(f"metric {name!r} has {x.shape[0]} values but there are {target.shape[0]} recognition rates")
        keep = np.isfinite(x) & np.isfinite(target)
        xs, ys = x[keep], target[keep]
        n = int(keep.sum())
        nan2 = (math.nan, math.nan)
        if n < 3 or np.ptp(xs) == 0 or np.ptp(ys) == 0:
            results.append(Correlation(dataset, name, n, math.nan, math.nan, nan2, math.nan, math.nan, nan2))
            continue
        rho = stats.spearmanr(xs, ys)
        tau = stats.kendalltau(xs, ys)
        rho_ci, tau_ci = (nan2, nan2)
        if n_boot > 0:
            rng = np.random.default_rng([seed, offset])
            rho_ci, tau_ci = bootstrap_ci(xs, ys, n_boot=n_boot, confidence=confidence, rng=rng)
        results.append(
            Correlation(dataset, name, n, float(rho.statistic), float(rho.pvalue), rho_ci, float(tau.statistic), float(tau.pvalue), tau_ci)
        )
    return results


def read_table(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a per-variant table, CSV (header row) or JSON Lines; numbers parsed, blanks -> NaN.

    Raises:
        DatasetUnavailableError: the file does not exist.
        FlauditError: a JSON line is malformed (the message names the line).
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetUnavailableError(f"{path}: table not found; write one row per variant with its metric values and recognition rate")
    rows: list[dict[str, Any]] = []
    if path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append(dict(json.loads(line)))
            except (json.JSONDecodeError, TypeError, ValueError) as err:
                raise FlauditError(f"{path}:{number}: not a JSON object ({err}); fix or remove the line") from None
    else:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = [dict(row) for row in csv.DictReader(handle)]
    return [{k: _number(v) if k not in ID_COLUMNS else v for k, v in row.items()} for row in rows]


def _number(value: Any) -> Any:
    if value is None or value == "":
        return math.nan
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


def correlate_rows(
    rows: Sequence[Mapping[str, Any]],
    *,
    target: str = "recognition_rate",
    metrics: Sequence[str] | None = None,
    group: str = "dataset",
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, list[Correlation]]:
    """Correlations per dataset from per-variant rows (one row = one variant).

    Args:
        rows: dicts with `group`, `target` and the metric columns.
        target: the recognition-rate column.
        metrics: metric columns (None: every numeric column but the target).
        group: the column that splits the table (a table per dataset); rows without it form one group.

    Raises:
        FlauditError: the target or a named metric column is missing.
    """
    if not rows:
        raise FlauditError("the table has no rows; give one row per model variant")
    if any(target not in row for row in rows):
        raise FlauditError(f"column {target!r} missing; columns are {sorted(rows[0])}; name the recognition-rate column with --target")
    if metrics is None:
        metrics = [k for k, v in rows[0].items() if k != target and k not in ID_COLUMNS and isinstance(v, float)]
    missing = sorted({m for m in metrics for row in rows if m not in row})
    if missing:
        raise FlauditError(f"metric column(s) {missing} missing; columns are {sorted(rows[0])}")
    groups: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[str(row.get(group, "all"))].append(row)
    out: dict[str, list[Correlation]] = {}
    for name, members in sorted(groups.items()):
        values = {m: [_as_float(r[m]) for r in members] for m in metrics}
        out[name] = correlate(values, [_as_float(r[target]) for r in members], dataset=name, n_boot=n_boot, confidence=confidence, seed=seed)
    return out


def _as_float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _fmt(value: float, digits: int = 3) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:+.{digits}f}"


def _fmt_p(value: float) -> str:
    return "n/a" if not math.isfinite(value) else (f"{value:.3f}" if value >= 1e-3 else f"{value:.1e}")


def markdown_table(results: Sequence[Correlation], *, confidence: float = 0.95, title: str | None = None) -> str:
    """A table like the paper's: one row per metric, signed rho and tau with p-values and CIs."""
    level = f"{round(confidence * 100)}% CI"
    lines = []
    if title:
        lines += [f"**{title}**", ""]
    lines += [
        f"| metric | Spearman ρ | p | {level} | Kendall τ | p | {level} | \\|ρ\\| | n |",
        "|---|---:|---:|---|---:|---:|---|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.metric} | {_fmt(r.rho)} | {_fmt_p(r.rho_p)} | [{_fmt(r.rho_ci[0], 2)}, {_fmt(r.rho_ci[1], 2)}] "
            f"| {_fmt(r.tau)} | {_fmt_p(r.tau_p)} | [{_fmt(r.tau_ci[0], 2)}, {_fmt(r.tau_ci[1], 2)}] "
            f"| {('n/a' if not math.isfinite(r.rho) else f'{abs(r.rho):.3f}')} | {r.n} |"
        )
    return "\n".join(lines) + "\n"
