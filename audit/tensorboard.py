"""TensorBoard dashboards of a run's leakage, next to its training curves.

Layout (one event file under RUN_DIR/tb/, so `tensorboard --logdir runs/` lists every run):

- `train/accuracy`, `train/loss`: from history.json, step = round.
- `leakage/<attack>/<metric>/mean` and `leakage/<attack>/<metric>/worst`: step = round; worst is
  the best-reconstructed image.
- `leakage/<attack>/recognised`: the oracle's recognised fraction; `leakage/<attack>/labels`:
  labels recovered (not logged when the threat model gave the labels); `leakage/<attack>/fid`: the round's FID (its n and dims in the text summary).
- images `reconstructions/<attack>`: per round, the leakiest originals (top) over their
  reconstructions (bottom).
- HParams: the defense parameters (`defense/<name>/<param>`), the threat model
  (`threat/<attack>/known_labels`) plus any given hyperparameters,
  against the final accuracy and final-round leakage, so runs of a sweep compare in the
  HParams view.
- text `summary`: the threat model and the per-round markdown table of the report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams as hparams_summary

from audit.report import leakiest_pairs, pair_grid, round_table, threat_model_line
from audit.scorer import RoundAudit, read_round_history
from fl_sim.run_store import RunStore

EVENT_SUFFIX = ".flaudit_audit"

HParamValue = float | int | str | bool


def leakage_tag(attack: str, metric: str, stat: str | None = None) -> str:
    return f"leakage/{attack}/{metric}" + (f"/{stat}" if stat else "")


def defense_hparams(audits: Sequence[RoundAudit]) -> dict[str, HParamValue]:
    """`defense/<name>/<param>` -> value, and `defenses` -> the names, from the audits."""
    defenses = next((a.defenses for a in audits if a.defenses), {})
    out: dict[str, HParamValue] = {"defenses": ",".join(sorted(defenses)) or "none"}
    for name, params in defenses.items():
        for key, value in params.items():
            out[f"defense/{name}/{key}"] = float(value)
    return out


def threat_hparams(audits: Sequence[RoundAudit]) -> dict[str, HParamValue]:
    """`threat/<attack>/known_labels`: the threat model of each attack, so the HParams view separates them."""
    return {f"threat/{a.attack}/known_labels": a.threat_model.known_labels for a in audits if a.num_clients}


def write_tensorboard(
    store: RunStore,
    audits: Sequence[RoundAudit],
    *,
    hparams: Mapping[str, HParamValue] | None = None,
    max_images: int = 8,
    log_dir: str | Path | None = None,
) -> Path:
    """Write the audit's TensorBoard events (replacing those of a previous audit of this run).

    Args:
        store: the run directory.
        audits: the scorer's RoundAudits.
        hparams: extra hyperparameters for the HParams view (e.g. {"sweep/value": 0.01}); the
            defense parameters are added from the audits.
        max_images: images per round grid.
        log_dir: where to write (default RUN_DIR/tb).

    Returns:
        The log directory.
    """
    folder = Path(log_dir) if log_dir is not None else store.tensorboard_dir
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob(f"events.out.tfevents.*{EVENT_SUFFIX}"):
        old.unlink()  # a re-audit replaces its own dashboards, never the training's
    writer = SummaryWriter(log_dir=str(folder), filename_suffix=EVENT_SUFFIX)
    try:
        history = read_round_history(store)
        for rnd, entry in sorted(history.items()):
            for name in ("accuracy", "loss"):
                if entry.get(name) is not None:
                    writer.add_scalar(f"train/{name}", float(entry[name]), rnd)
        for a in sorted(audits, key=lambda x: (x.attack, x.round)):
            for metric, summary in a.metrics.items():
                if summary.mean is not None:
                    writer.add_scalar(leakage_tag(a.attack, metric, "mean"), summary.mean, a.round)
                if summary.worst is not None:
                    writer.add_scalar(leakage_tag(a.attack, metric, "worst"), summary.worst, a.round)
            if a.recognised_fraction is not None:
                writer.add_scalar(leakage_tag(a.attack, "recognised"), a.recognised_fraction, a.round)
            if a.label_accuracy is not None:
                writer.add_scalar(leakage_tag(a.attack, "labels"), a.label_accuracy, a.round)
            if a.fid is not None:
                writer.add_scalar(leakage_tag(a.attack, "fid"), a.fid.value, a.round)
            ori, rec, _ = leakiest_pairs(store, a, max_images=max_images)
            if ori.numel():
                writer.add_image(f"reconstructions/{a.attack}", pair_grid(ori, rec), a.round)

        # HParams: one session for this run, its metrics the tags logged above (final values).
        params = {**defense_hparams(audits), **threat_hparams(audits), **dict(hparams or {})}
        metric_tags: dict[str, float] = {}
        if history:
            final = history[max(history)]
            if final.get("accuracy") is not None:
                metric_tags["train/accuracy"] = float(final["accuracy"])
        for a in audits:
            for metric, summary in a.metrics.items():
                if summary.mean is not None:
                    metric_tags[leakage_tag(a.attack, metric, "mean")] = summary.mean
            if a.recognised_fraction is not None:
                metric_tags[leakage_tag(a.attack, "recognised")] = a.recognised_fraction
        exp, ssi, sei = hparams_summary(params, metric_tags)
        for summary in (exp, ssi, sei):
            writer.file_writer.add_summary(summary)

        writer.add_text("summary", summary_text(store, audits))
    finally:
        writer.close()
    return folder


def summary_text(store: RunStore, audits: Sequence[RoundAudit]) -> str:
    parts = [f"**Run** `{store.root.name}`", "", threat_model_line(audits), ""]
    for attack in sorted({a.attack for a in audits}):
        parts += [f"**Attack** {attack}", "", round_table([a for a in audits if a.attack == attack]), ""]
    corrupt = [f"- round {a.round} ({a.attack}): {message}" for a in audits for message in a.corrupt]
    if corrupt:
        parts += ["**Corrupt or missing inputs, not scored:**", ""] + corrupt + [""]
    unavailable = {k: v for a in audits for k, v in a.unavailable.items()}
    if unavailable:
        parts += ["**Unavailable:**", ""] + [f"- {k}: {v}" for k, v in sorted(unavailable.items())]
    return "\n".join(parts)
