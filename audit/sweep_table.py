"""The privacy–utility view of a sweep: final accuracy against leakage, per defense setting.

Each variant of a sweep (a defense parameter value) is one run directory; `sweep_point`
summarises one, `write_privacy_utility` writes the table (markdown and CSV) and the plot
(final accuracy vs mean leakage, one panel per metric) for all of them.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from audit.report import format_value
from audit.scorer import read_round_audits, read_round_history
from audit.summary import combine
from fl_sim.run_store import RunStore
from flaudit.io import atomic_write_bytes, atomic_write_text


@dataclass(frozen=True)
class SweepPoint:
    """One variant of a sweep, summarised.

    Args:
        name: the variant's name (e.g. "prune-ratio-0.9").
        defense: the swept defense ("none" for the baseline).
        param: the swept parameter.
        value: its value.
        final_accuracy: the global model's accuracy after the last round (None if not recorded).
        leakage: per metric, the mean over the audited rounds of the round mean.
        worst: per metric, the most leaky image over all rounds.
        higher_is_leakier: per metric, its direction.
        recognised: mean over rounds of the oracle's recognised fraction.
        attack: the attack the leakage is measured under.
        run_dir: the variant's run directory.
    """

    name: str
    defense: str | None
    param: str | None
    value: float | None
    final_accuracy: float | None
    leakage: Mapping[str, float] = field(default_factory=dict)
    worst: Mapping[str, float] = field(default_factory=dict)
    higher_is_leakier: Mapping[str, bool] = field(default_factory=dict)
    recognised: float | None = None
    attack: str | None = None
    run_dir: str = ""


def sweep_point(
    store: RunStore, *, name: str, defense: str | None = None, param: str | None = None, value: float | None = None,
    attack: str | None = None,
) -> SweepPoint:
    """Summarise one audited run (its rounds.jsonl and history.json) as a point of the sweep."""
    audits = read_round_audits(store)
    attacks = sorted({a.attack for a in audits})
    chosen = attack or (attacks[0] if attacks else None)
    audits = [a for a in audits if a.attack == chosen]
    history = read_round_history(store)
    accuracies = [(r, e.get("accuracy")) for r, e in sorted(history.items()) if e.get("accuracy") is not None]
    final_accuracy = float(accuracies[-1][1]) if accuracies else None
    leakage: dict[str, float] = {}
    worst: dict[str, float] = {}
    direction: dict[str, bool] = {}
    for metric in sorted({m for a in audits for m in a.metrics}):
        summary = combine(a.metrics[metric] for a in audits if metric in a.metrics)
        if summary is None:
            continue
        direction[metric] = summary.higher_is_leakier
        leakage[metric] = summary.mean  # type: ignore[assignment]
        if summary.worst is not None:
            worst[metric] = summary.worst
    recognised = [a.recognised_fraction for a in audits if a.recognised_fraction is not None]
    return SweepPoint(
        name=name, defense=defense, param=param, value=value, final_accuracy=final_accuracy, leakage=leakage, worst=worst,
        higher_is_leakier=direction, recognised=sum(recognised) / len(recognised) if recognised else None, attack=chosen,
        run_dir=str(store.root),
    )


def _metric_columns(points: Sequence[SweepPoint]) -> list[str]:
    return sorted({m for p in points for m in p.leakage})


def privacy_utility_rows(points: Sequence[SweepPoint]) -> tuple[list[str], list[list[str]]]:
    metrics = _metric_columns(points)
    header = ["variant", "defense", "param", "value", "final accuracy"]
    header += [f"{m} mean" for m in metrics] + [f"{m} worst" for m in metrics] + ["recognised (oracle)"]
    rows = []
    for p in points:
        row = [p.name, p.defense or "none", p.param or "", "" if p.value is None else f"{p.value:g}", format_value(p.final_accuracy, 4)]
        row += [format_value(p.leakage.get(m)) for m in metrics] + [format_value(p.worst.get(m)) for m in metrics]
        row.append(format_value(p.recognised, 3))
        rows.append(row)
    return header, rows


def privacy_utility_markdown(points: Sequence[SweepPoint]) -> str:
    header, rows = privacy_utility_rows(points)
    attacks = sorted({p.attack for p in points if p.attack})
    lines = [f"Leakage under attack {', '.join(attacks) or '–'}: mean over audited rounds of each round's mean; "
             "worst = the best-reconstructed image of any round.", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def privacy_utility_csv(points: Sequence[SweepPoint]) -> str:
    metrics = _metric_columns(points)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["variant", "defense", "param", "value", "final_accuracy", *[f"{m}_mean" for m in metrics],
                     *[f"{m}_worst" for m in metrics], "recognised", "attack", "run_dir"])
    for p in points:
        writer.writerow([p.name, p.defense or "none", p.param or "", "" if p.value is None else p.value,
                         "" if p.final_accuracy is None else p.final_accuracy,
                         *["" if p.leakage.get(m) is None else p.leakage[m] for m in metrics],
                         *["" if p.worst.get(m) is None else p.worst[m] for m in metrics],
                         "" if p.recognised is None else p.recognised, p.attack or "", p.run_dir])
    return out.getvalue()


def privacy_utility_plot(points: Sequence[SweepPoint], path: str | Path) -> Path:
    """Final accuracy (y) against mean leakage (x), one panel per metric plus oracle recognition."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = _metric_columns(points) + (["recognised"] if any(p.recognised is not None for p in points) else [])
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(3.6 * max(1, len(panels)), 3.4), squeeze=False)
    groups: dict[tuple[str, str], list[SweepPoint]] = {}
    for p in points:
        groups.setdefault((p.defense or "none", p.param or ""), []).append(p)
    for ax, panel in zip(axes[0], panels):
        for (defense, param), members in sorted(groups.items()):
            members = sorted(members, key=lambda p: (p.value is None, p.value if p.value is not None else 0.0))
            xs, ys, labels = [], [], []
            for p in members:
                x = p.recognised if panel == "recognised" else p.leakage.get(panel)
                if x is None or p.final_accuracy is None or (isinstance(x, float) and not math.isfinite(x)):
                    continue
                xs.append(x)
                ys.append(p.final_accuracy)
                labels.append("" if p.value is None else f"{p.value:g}")
            if not xs:
                continue
            ax.plot(xs, ys, marker="o", label=f"{defense} {param}".strip())
            if min(xs) > 0 and max(xs) / min(xs) > 1e3:
                ax.set_xscale("log")  # MSE spans orders of magnitude between weak and strong defenses
            for x, y, label in zip(xs, ys, labels):
                ax.annotate(label, (x, y), textcoords="offset points", xytext=(3, 3), fontsize=7)
        higher = next((p.higher_is_leakier.get(panel) for p in points if panel in p.higher_is_leakier), True)
        arrow = "→ more leakage" if higher or panel == "recognised" else "← more leakage"
        ax.set_xlabel(f"{'oracle recognised' if panel == 'recognised' else panel + ' mean'} ({arrow})")
        ax.set_ylabel("final accuracy")
        ax.grid(alpha=0.3)
    if panels:
        axes[0][0].legend(fontsize=7)
    fig.suptitle("privacy–utility trade-off")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    plt.close(fig)
    return atomic_write_bytes(path, buffer.getvalue())


def write_privacy_utility(points: Sequence[SweepPoint], out_dir: str | Path, *, stem: str = "privacy_utility") -> list[Path]:
    """Write OUT_DIR/{stem}.md, {stem}.csv and {stem}.png for the sweep's points.

    Returns:
        The paths written.
    """
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    md = atomic_write_text(folder / f"{stem}.md", f"# Privacy–utility: {folder.name}\n\n" + privacy_utility_markdown(points)
                           + f"\n![privacy-utility]({stem}.png)\n")
    table = atomic_write_text(folder / f"{stem}.csv", privacy_utility_csv(points))
    plot = privacy_utility_plot(points, folder / f"{stem}.png")
    return [md, table, plot]
