"""report.md per run: a per-round table of accuracy and leakage, and the leakiest reconstructions as images."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torchvision.utils import make_grid, save_image

from audit.pairs import read_pair
from audit.scorer import RoundAudit
from fl_sim.run_store import RunStore
from flaudit.io import atomic_write_text
from flaudit.rundir import CaptureKey

FIGURES_DIR = "figures"
REPORT_FILE = "report.md"


def leakiest_pairs(store: RunStore, audit: RoundAudit, *, max_images: int = 8) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The round's best-reconstructed images (highest PSNR first) over all its clients, as the scorer
    recorded them (`RoundAudit.leakiest`), read from their verified PNG pairs.

    Returns:
        (originals, reconstructions, psnr) of at most `max_images` matched pairs.
    """
    chosen = audit.leakiest(max_images)
    if not chosen:
        empty = torch.zeros(0)
        return empty, empty, empty
    reconstructions = store.reconstructions(audit.attack)
    pairs = [read_pair(reconstructions, CaptureKey(audit.round, client), p.position, p.label) for client, p in chosen]
    return (torch.stack([o for o, _ in pairs]), torch.stack([r for _, r in pairs]),
            torch.tensor([p.psnr for _, p in chosen], dtype=torch.float64))


def pair_grid(originals: torch.Tensor, reconstructions: torch.Tensor, *, min_side: int = 64) -> torch.Tensor:
    """(3, H, W) grid: originals in the top row, their reconstructions below; tiny images enlarged (nearest)."""
    images = torch.cat([originals, reconstructions]).to(torch.float32).clamp(0, 1)
    side = min(images.shape[-2:])
    if side < min_side:
        factor = math.ceil(min_side / side)
        images = F.interpolate(images, scale_factor=factor, mode="nearest")
    return make_grid(images, nrow=max(1, originals.shape[0]), padding=2, pad_value=1.0)


def format_value(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    if value != 0 and abs(value) < 10 ** (-digits):
        return f"{value:.{max(1, digits - 1)}e}"  # tiny MSEs of near-perfect reconstructions
    return f"{value:.{digits}f}"


def round_table(audits: Sequence[RoundAudit]) -> str:
    """Markdown table: one row per round; accuracy, each metric's mean and worst, oracle, FID."""
    metric_names = sorted({name for a in audits for name in a.metrics})
    header = ["round", "accuracy", "loss"]
    for name in metric_names:
        arrow = "↑" if any(a.metrics[name].higher_is_leakier for a in audits if name in a.metrics) else "↓"
        header += [f"{name} mean", f"{name} worst ({arrow} leakier)"]
    people = any("people" in a.recognised_by for a in audits)
    header += ["recognised (people, else oracle)" if people else "recognised (oracle)", "labels recovered", "FID (n, dims)"]
    with_corrupt = any(a.corrupt for a in audits)
    if with_corrupt:
        header.append("corrupt inputs (not scored)")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for a in sorted(audits, key=lambda x: x.round):
        row = [str(a.round), format_value(a.accuracy), format_value(a.loss)]
        for name in metric_names:
            summary = a.metrics.get(name)
            row += [format_value(summary.mean if summary else None), format_value(summary.worst if summary else None)]
        judged = f" ({a.recognised_by.get('people', 0)} by people)" if people and a.recognised_fraction is not None else ""
        row.append(format_value(a.recognised_fraction, 2) + judged)
        row.append("given" if a.threat_model.known_labels else format_value(a.label_accuracy, 2))
        row.append(f"{a.fid.value:.1f} (n={a.fid.num_real}, d={a.fid.dims})" if a.fid else "–")
        if with_corrupt:
            row.append(str(len(a.corrupt)))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def threat_model_line(audits: Sequence[RoundAudit]) -> str:
    """One line per report on what each attack was given beyond the server's view."""
    by_attack = {a.attack: a.threat_model for a in audits if a.num_clients}
    if not by_attack:
        return "Threat model: the server's view only (nothing scored)."
    described = "; ".join(f"{attack}: {threat.describe()}" for attack, threat in sorted(by_attack.items()))
    return f"Threat model (beyond what the server receives): {described}."


def write_report(store: RunStore, audits: Sequence[RoundAudit], *, title: str | None = None, max_images: int = 8) -> Path:
    """Write RUN_DIR/report.md and RUN_DIR/figures/round_RRR_ATTACK.png (the leakiest reconstructions).

    Args:
        store: the run directory.
        audits: the scorer's RoundAudits.
        title: the report's heading (default: the run directory's name).
        max_images: images per round figure.

    Returns:
        The report's path.
    """
    figures = store.root / FIGURES_DIR
    figures.mkdir(parents=True, exist_ok=True)
    lines = [f"# Privacy audit: {title or store.root.name}", ""]
    defenses = next((a.defenses for a in audits if a.defenses), {})
    if defenses:
        described = "; ".join(f"{name}(" + ", ".join(f"{k}={v:g}" for k, v in params.items()) + ")" for name, params in defenses.items())
        lines += [f"Defenses: {described}", ""]
    else:
        lines += ["Defenses: none", ""]
    lines += [threat_model_line(audits), ""]
    unavailable: dict[str, str] = {}
    for a in audits:
        unavailable.update({k: v for k, v in a.unavailable.items() if not v.startswith("fid needs")})
    if unavailable:
        lines += ["## Unavailable metrics", ""]
        lines += [f"- **{name}**: {reason}" for name, reason in sorted(unavailable.items())]
        lines.append("")
    corrupt = [f"- round {a.round} ({a.attack}): {message}" for a in audits for message in a.corrupt]
    if corrupt:
        lines += ["## Corrupt or missing inputs (not scored)", "",
                  "**These updates could not be read as recorded in manifest.json: nothing of them is scored, so the "
                  "figures below do not cover them.** `flaudit verify` lists every problem of the run directory.", ""]
        lines += corrupt + [""]
    if not audits:
        lines += ["No reconstructions found: run `flaudit attack` on this run first.", ""]
    lines += [
        "Metrics compare each reconstruction with the original it was matched to (Hungarian assignment). "
        "*mean* is over a round's images; *worst* is the best-reconstructed image (max PSNR/SSIM, min MSE/LPIPS), "
        "since one recognisable image is already a leak. *recognised* is the machine annotator's judgement "
        "(true label predicted among the candidates a person would be shown), or, for the images people judged "
        "with `flaudit annotate`, the majority of their answers (the count says how many).",
        "",
    ]
    for attack in sorted({a.attack for a in audits}):
        attack_audits = sorted((a for a in audits if a.attack == attack), key=lambda x: x.round)
        lines += [f"## Attack: {attack}", "", round_table(attack_audits), ""]
        lines += ["### Best reconstructions per round (originals above, reconstructions below)", ""]
        for a in attack_audits:
            ori, rec, scores = leakiest_pairs(store, a, max_images=max_images)
            if ori.numel() == 0:
                continue
            name = f"round_{a.round:03d}_{attack}.png"
            save_image(pair_grid(ori, rec), figures / name)
            psnrs = ", ".join(format_value(float(s), 1) for s in scores)
            lines += [f"Round {a.round} (PSNR dB: {psnrs}):", "", f"![round {a.round}]({FIGURES_DIR}/{name})", ""]
    path = store.root / REPORT_FILE
    atomic_write_text(path, "\n".join(lines))
    return path
