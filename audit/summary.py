"""The per-round table printed at the end of `flaudit run` and `flaudit audit`."""

from __future__ import annotations

import json

from fl_sim.run_store import RunStore


def round_table(store: RunStore) -> str:
    """Accuracy and loss per round, with each attack's mean/worst leakage where the audit has run."""
    history = store.read_history() if store.history_path.exists() else {"rounds": []}
    leakage: dict[int, dict[str, float]] = {}
    rounds_file = store.root / "rounds.jsonl"
    columns: list[str] = []
    if rounds_file.exists():
        for line in rounds_file.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            row = leakage.setdefault(int(record["round"]), {})
            for name in ("psnr", "ssim", "lpips", "oracle", "semsim"):
                for stat in ("mean", "worst"):
                    value = record.get(f"{name}_{stat}", record.get("metrics", {}).get(name, {}).get(stat) if isinstance(record.get("metrics"), dict) else None)
                    if isinstance(value, (int, float)):
                        column = f"{record.get('attack', '')}:{name}_{stat}"
                        row[column] = float(value)
                        if column not in columns:
                            columns.append(column)
    header = ["round", "accuracy", "loss", *columns]
    lines = [" | ".join(header), " | ".join("---" for _ in header)]
    for record in history.get("rounds", []):
        r = int(record["round"])
        cells = [str(r), f"{record['accuracy']:.4f}", f"{record['loss']:.4f}"]
        cells += [f"{leakage.get(r, {}).get(c):.3f}" if c in leakage.get(r, {}) else "" for c in columns]
        lines.append(" | ".join(cells))
    return "\n".join(lines)
