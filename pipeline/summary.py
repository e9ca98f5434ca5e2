"""The per-round table printed at the end of `flaudit run`."""

from __future__ import annotations

from audit.report import format_value, round_table
from audit.scorer import read_round_audits
from fl_sim.run_store import RunStore


def print_summary(store: RunStore) -> None:
    """Print the audit's per-round table per attack, or the accuracy per round when nothing was attacked."""
    audits = read_round_audits(store) if (store.root / "rounds.jsonl").exists() else []
    if audits:
        for attack in sorted({a.attack for a in audits}):
            print(f"\n{store.root} — {attack}\n" + round_table([a for a in audits if a.attack == attack]))
        return
    history = store.read_history() if store.history_path.exists() else {"rounds": []}
    lines = ["| round | accuracy | loss |", "|---|---|---|"]
    lines += [f"| {r['round']} | {format_value(r['accuracy'], 4)} | {format_value(r['loss'], 4)} |" for r in history["rounds"]]
    print(f"\n{store.root}\n" + "\n".join(lines))
