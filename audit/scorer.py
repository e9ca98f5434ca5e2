"""Per-round scoring of a run directory: align, score every image, aggregate, write records.

The score stage. For every attack and every update it reconstructed
(`attacks.store.ReconstructionStore`), the scorer reads the client's true batch from the vault
(`fl_sim.vault.Vault`), matches reconstructions to originals one-to-one (Hungarian), scores each
pair with every available metric, asks the annotator (the oracle) whether it recognises each
reconstruction, and aggregates per client and per round with `audit.summary.summarise`: the
mean, and the worst case, i.e. the best-reconstructed image, since one recognisable image is
already a leak. Scores are computed here once: the leakiest pairs of each client are recorded
with its audit, and report.md and TensorBoard read them (and the PNG pairs written here) instead
of scoring again.

Outputs (written whole and atomically): `metrics.jsonl`, one record per image; `rounds.jsonl`,
one `RoundAudit` per (attack, round); `{i}_{label}_ori.png` / `{i}_{label}_rec.png` beside each
reconstruction, the pair as matched (SemSim release naming).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from audit import functional as AF
from attacks.store import StoredReconstruction, attack_names
from attacks.threat import ThreatModel
from audit.metrics import DEFAULT_METRICS, IMAGE_METRICS, SET_METRICS, ImageMetric, MetricFn, as_image_metric, known_metrics
from audit.pairs import write_pairs
from audit.summary import MetricSummary, summarise
from fl_sim.run_store import RunStore
from fl_sim.vault import GroundTruth
from flaudit.rundir import CaptureKey
from semsim.oracle import Oracle
from flaudit.device import resolve_device
from flaudit.errors import CaptureCorruptError, UnknownNameError, WeightsUnavailableError
from flaudit.io import atomic_write_text
from flaudit.progress import progress

METRICS_FILE = "metrics.jsonl"
ROUNDS_FILE = "rounds.jsonl"
#: Pairs recorded per client as its leakiest (report.md and TensorBoard show a round's best of them).
LEAKIEST_PER_CLIENT = 8


@dataclass(frozen=True)
class LeakyPair:
    """One of a client's best-reconstructed images, by PSNR (the ranking report.md and TensorBoard show).

    Args:
        position: the original's index in the client's batch (its PNG pair is `{position}_{label}_*.png`).
        label: the original's true label.
        psnr: the pair's PSNR in dB.
    """

    position: int
    label: int
    psnr: float

    def to_dict(self) -> dict[str, Any]:
        return {"position": self.position, "label": self.label, "psnr": self.psnr}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LeakyPair:
        return cls(int(data["position"]), int(data["label"]), float(data["psnr"]))


@dataclass(frozen=True)
class ClientAudit:
    """One client's reconstruction in one round.

    Args:
        client: partition id.
        num_images: originals in the client's batch.
        num_reconstructed: reconstructions matched to an original.
        metrics: per metric, mean and worst case over the client's images.
        recognised_fraction: fraction the oracle recognised (None without an oracle).
        label_accuracy: fraction of true labels recovered (as a multiset; None without labels or
            when the labels were given to the attacker).
        matches: for each original (in batch order), the index of the reconstruction matched to
            it in the attack's own order, -1 where none was.
        leakiest: the client's best-reconstructed pairs, highest PSNR first.
    """

    client: int
    num_images: int
    num_reconstructed: int
    metrics: Mapping[str, MetricSummary]
    recognised_fraction: float | None
    label_accuracy: float | None
    matches: tuple[int, ...]
    leakiest: tuple[LeakyPair, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "client": self.client, "num_images": self.num_images, "num_reconstructed": self.num_reconstructed,
            "metrics": {k: v.to_dict() for k, v in self.metrics.items()},
            "recognised_fraction": self.recognised_fraction, "label_accuracy": self.label_accuracy,
            "matches": list(self.matches), "leakiest": [p.to_dict() for p in self.leakiest],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClientAudit:
        return cls(
            int(data["client"]), int(data["num_images"]), int(data["num_reconstructed"]),
            {k: MetricSummary.from_dict(v) for k, v in data["metrics"].items()},
            data["recognised_fraction"], data["label_accuracy"], tuple(int(v) for v in data["matches"]),
            tuple(LeakyPair.from_dict(p) for p in data.get("leakiest", [])),
        )


@dataclass(frozen=True)
class RoundAudit:
    """The leakage of one round under one attack, next to what the round's training achieved.

    Args:
        round: server round.
        attack: attack name.
        accuracy: the global model's accuracy after the round (history.json), if recorded.
        loss: its loss, if recorded.
        num_clients: attacked clients.
        num_images: images scored (matched reconstructions).
        metrics: per metric, mean and worst case over all of the round's images.
        recognised_fraction: fraction of images the oracle recognised (None without an oracle).
        label_accuracy: fraction of true labels the attack recovered (None when they were given).
        fid: the round's FID, with its sample size and feature dimension (None if not scored).
        unavailable: metrics that could not be scored, with the reason (what file to provide).
        defenses: per defense name, its parameters, as the protocol declared them.
        clients: the per-client breakdown.
        corrupt: inputs of this round that are missing or differ from manifest.json, one message
            each naming the path; they contribute no score.
        threat_model: what the attacker was given beyond the server's view (e.g. the labels).
        recognised_by: whose judgement `recognised_fraction` rests on: images judged by `people`
            (the majority of their answers, `flaudit annotate`) and by the `oracle`.
    """

    round: int
    attack: str
    accuracy: float | None
    loss: float | None
    num_clients: int
    num_images: int
    metrics: Mapping[str, MetricSummary]
    recognised_fraction: float | None
    label_accuracy: float | None
    fid: AF.FidResult | None
    unavailable: Mapping[str, str] = field(default_factory=dict)
    defenses: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    clients: tuple[ClientAudit, ...] = ()
    corrupt: tuple[str, ...] = ()
    threat_model: ThreatModel = ThreatModel()
    recognised_by: Mapping[str, int] = field(default_factory=dict)

    def leakiest(self, max_images: int = 8) -> list[tuple[int, LeakyPair]]:
        """The round's best-reconstructed pairs over all its clients, as (client, pair), highest PSNR first."""
        pairs = [(c.client, p) for c in self.clients for p in c.leakiest]
        pairs.sort(key=lambda item: -item[1].psnr if not math.isnan(item[1].psnr) else math.inf)
        return pairs[:max_images]

    def to_dict(self) -> dict[str, Any]:
        return {
            "round": self.round, "attack": self.attack, "accuracy": self.accuracy, "loss": self.loss,
            "num_clients": self.num_clients, "num_images": self.num_images,
            "metrics": {k: v.to_dict() for k, v in self.metrics.items()},
            "recognised_fraction": self.recognised_fraction, "label_accuracy": self.label_accuracy,
            "fid": self.fid.to_dict() if self.fid else None, "unavailable": dict(self.unavailable),
            "defenses": {k: dict(v) for k, v in self.defenses.items()}, "clients": [c.to_dict() for c in self.clients],
            "corrupt": list(self.corrupt), "threat_model": self.threat_model.to_dict(),
            "recognised_by": dict(self.recognised_by),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RoundAudit:
        fid = data.get("fid")
        return cls(
            round=int(data["round"]), attack=str(data["attack"]), accuracy=data.get("accuracy"), loss=data.get("loss"),
            num_clients=int(data["num_clients"]), num_images=int(data["num_images"]),
            metrics={k: MetricSummary.from_dict(v) for k, v in data["metrics"].items()},
            recognised_fraction=data.get("recognised_fraction"), label_accuracy=data.get("label_accuracy"),
            fid=AF.FidResult(**fid) if fid else None, unavailable=dict(data.get("unavailable", {})),
            defenses={k: dict(v) for k, v in data.get("defenses", {}).items()},
            clients=tuple(ClientAudit.from_dict(c) for c in data.get("clients", [])),
            corrupt=tuple(str(c) for c in data.get("corrupt", [])),
            threat_model=ThreatModel.from_dict(data.get("threat_model")),
            recognised_by={str(k): int(v) for k, v in data.get("recognised_by", {}).items()},
        )


@dataclass(frozen=True)
class ScoredUpdate:
    """One update's scores, before they are aggregated into its client's and its round's audits.

    Args:
        key: the update.
        truth: the client's true batch.
        values: per metric, (M,) values of the M matched pairs (in batch order).
        recognised: (M,) the oracle's judgement, or None without an oracle.
        perm: (B,) for each original, the matched reconstruction's index, -1 where none.
        labels: (N,) the labels the attack used, or None.
        defenses: the defenses the protocol declared.
        threat_model: what the attacker was given.
        originals: (M, C, H, W) the matched originals; `reconstructions` the same for their matches.
        by_people: (M,) which `recognised` values are people's (None: none is).
    """

    key: CaptureKey
    truth: GroundTruth
    values: Mapping[str, torch.Tensor]
    recognised: torch.Tensor | None
    perm: torch.Tensor
    labels: torch.Tensor | None
    defenses: Mapping[str, Mapping[str, float]]
    threat_model: ThreatModel
    originals: torch.Tensor
    reconstructions: torch.Tensor
    by_people: torch.Tensor | None = None

    @property
    def label_accuracy(self) -> float | None:
        return None if self.threat_model.known_labels else label_recovery(self.truth.labels, self.labels)


@dataclass(frozen=True)
class ScoredRun:
    """The score stage's result.

    Args:
        audits: one `RoundAudit` per (attack, round), sorted by attack then round.
        updates: (attack, scored update) for every update scored, in scoring order: the per-image
            values the audits summarise, for callers that aggregate differently (the metric study).
    """

    audits: tuple[RoundAudit, ...]
    updates: tuple[tuple[str, ScoredUpdate], ...]


# --- reading what the stages wrote -------------------------------------------------------------
def corrupt_captures(store: RunStore, attacked: set[CaptureKey], attacks: Sequence[str]) -> defaultdict[tuple[str, int], list[str]]:
    """(attack, round) -> messages, for captures that no attack could reconstruct because they are
    missing or altered: every attack of the run reports them in that round."""
    corrupt: defaultdict[tuple[str, int], list[str]] = defaultdict(list)
    captures = store.captures
    for key in captures.capture_keys():
        if key in attacked:
            continue
        try:
            captures.check(key)
        except CaptureCorruptError as err:
            for attack in attacks:
                corrupt[(attack, key.round)].append(str(err))
    return corrupt


def read_defenses(store: RunStore, key: CaptureKey, record: Mapping[str, Any] | None = None) -> dict[str, dict[str, float]]:
    """The defenses the protocol declared for this capture (its JSON's metadata), else the attack record's."""
    captures = store.captures
    info = captures.info_path(key)
    recorded = captures.relative(info) in captures.manifest_files()
    # A run whose captures were never recorded (reconstructions imported from elsewhere) falls
    # back on the attack record; a capture the manifest lists is read, and verified.
    raw: Any = captures.read_capture_info(key).get("meta", {}).get("defenses") if recorded or info.exists() else None
    if raw is None and record:
        raw = record.get("defenses")
    if isinstance(raw, Mapping):
        return {str(k): {str(p): float(v) for p, v in dict(params).items()} for k, params in raw.items()}
    return {str(name): {str(k): float(v) for k, v in params} for name, params in (raw or [])}


def read_round_history(store: RunStore) -> dict[int, dict[str, Any]]:
    """history.json's per-round entries by round number ({} when the run has no history yet)."""
    if not store.history_path.exists():
        return {}
    history = store.read_history()
    return {int(entry["round"]): dict(entry) for entry in history.get("rounds", []) if "round" in entry}


def threat_model_of(record: Mapping[str, Any]) -> ThreatModel:
    """The threat model an attack record states (records before it was recorded say `known_labels`)."""
    return ThreatModel.from_dict(record.get("threat_model") or {"known_labels": record.get("known_labels", False)})


# --- scoring ----------------------------------------------------------------------------------
def build_metrics(
    names: Sequence[str], *, device: torch.device, download: bool = True
) -> tuple[dict[str, ImageMetric], dict[str, str]]:
    """Build the per-image metrics named; those whose weights are missing go to `unavailable`."""
    built: dict[str, ImageMetric] = {}
    unavailable: dict[str, str] = {}
    for name in names:
        if name in SET_METRICS:
            continue
        if name not in IMAGE_METRICS:
            raise UnknownNameError(f"no metric {name!r}; known: {', '.join(known_metrics())}")
        try:
            built[name] = IMAGE_METRICS.get(name)(device=device, download=download)
        except WeightsUnavailableError as err:
            unavailable[name] = str(err)
    return built, unavailable


def label_recovery(true_labels: torch.Tensor, recovered: torch.Tensor | None, *, num_classes: int | None = None) -> float | None:
    """Fraction of the true labels recovered, counted as multisets (order-free, as label attacks are)."""
    if recovered is None or true_labels.numel() == 0:
        return None
    size = int(max(int(true_labels.max()), int(recovered.max()) if recovered.numel() else 0) + 1)
    if num_classes:
        size = max(size, num_classes)
    overlap = torch.minimum(torch.bincount(true_labels.to(torch.int64), minlength=size),
                            torch.bincount(recovered.to(torch.int64).cpu(), minlength=size)).sum()
    return float(overlap) / true_labels.numel()


def score_update(
    truth: GroundTruth,
    reconstruction: StoredReconstruction,
    *,
    metrics: Mapping[str, ImageMetric],
    oracle: Oracle | None,
    device: torch.device,
    align_cost: str,
    defenses: Mapping[str, Mapping[str, float]],
) -> ScoredUpdate:
    """Match one update's reconstructions to its originals and score every matched pair."""
    rec_images = reconstruction.images
    if rec_images.shape[1:] != truth.images.shape[1:]:
        raise CaptureCorruptError(
            f"reconstruction of round {truth.round} client {truth.client}: shape {tuple(rec_images.shape[1:])} differs from "
            f"the ground truth's {tuple(truth.images.shape[1:])}; re-run `flaudit attack`"
        )
    originals = truth.images.to(torch.float32).clamp(0, 1)
    aligned, perm = AF.align(originals, rec_images, cost=align_cost)
    matched = perm >= 0
    ori = originals[matched]
    values = {name: metric.fn(ori.to(device), aligned.to(device)).detach().to(torch.float64).cpu() for name, metric in metrics.items()}
    recognised = (
        oracle.recognised(aligned, truth.labels[matched], originals01=ori, keys=truth.indices[matched]).cpu()
        if oracle is not None else None
    )
    labels = reconstruction.labels
    return ScoredUpdate(
        key=reconstruction.key, truth=truth, values=values, recognised=recognised, perm=perm,
        labels=labels if labels is not None and labels.numel() == rec_images.shape[0] else None,
        defenses=defenses, threat_model=threat_model_of(reconstruction.record), originals=ori, reconstructions=aligned,
    )


def image_records(attack: str, scored: ScoredUpdate, unavailable: Sequence[str]) -> list[dict[str, Any]]:
    """metrics.jsonl's records of one update: one per matched image."""
    truth, perm = scored.truth, scored.perm
    positions = torch.nonzero(perm >= 0).flatten().tolist()
    recovered = scored.labels[perm[perm >= 0]] if scored.labels is not None else None
    return [{
        "round": truth.round, "client": truth.client, "attack": attack, "defenses": scored.defenses,
        "position": position, "index": int(truth.indices[position]), "label": int(truth.labels[position]),
        "recovered_label": int(recovered[row]) if recovered is not None else None,
        "reconstruction_index": int(perm[position]),
        "metrics": {name: _finite_or_none(values[row]) for name, values in scored.values.items()},
        "unavailable": sorted(unavailable),
        "recognised": bool(scored.recognised[row]) if scored.recognised is not None else None,
        # Only in runs people judged (`flaudit annotate`): whose judgement `recognised` is.
        **({"recognised_by": "people" if bool(scored.by_people[row]) else "oracle"} if scored.by_people is not None else {}),
    } for row, position in enumerate(positions)]


def client_audit(scored: ScoredUpdate, metrics: Mapping[str, ImageMetric]) -> ClientAudit:
    """One client's summary, with its leakiest pairs by PSNR (computed here, once)."""
    recognised = scored.recognised
    positions = torch.nonzero(scored.perm >= 0).flatten()
    psnrs = scored.values["psnr"] if "psnr" in scored.values else AF.psnr(scored.reconstructions, scored.originals).to(torch.float64)
    order = torch.argsort(torch.nan_to_num(psnrs, nan=-math.inf), descending=True, stable=True)[:LEAKIEST_PER_CLIENT]
    leakiest = tuple(
        LeakyPair(int(positions[row]), int(scored.truth.labels[positions[row]]), float(psnrs[row])) for row in order.tolist()
    )
    return ClientAudit(
        client=scored.key.client, num_images=int(scored.truth.images.shape[0]), num_reconstructed=int((scored.perm >= 0).sum()),
        metrics={n: summarise(v, higher_is_leakier=metrics[n].higher_is_leakier) for n, v in scored.values.items()},
        recognised_fraction=float(recognised.float().mean()) if recognised is not None and recognised.numel() else None,
        label_accuracy=scored.label_accuracy, matches=tuple(scored.perm.tolist()), leakiest=leakiest,
    )


def round_audit(
    attack: str,
    rnd: int,
    parts: Sequence[ScoredUpdate],
    *,
    metrics: Mapping[str, ImageMetric],
    inception: Any,
    unavailable: Mapping[str, str],
    history: Mapping[int, Mapping[str, Any]],
    corrupt: Sequence[str],
) -> RoundAudit:
    """The round's audit from its scored updates (none when every update was corrupt)."""
    entry = history.get(rnd, {})
    base = dict(round=rnd, attack=attack, accuracy=_opt_float(entry.get("accuracy")), loss=_opt_float(entry.get("loss")),
                corrupt=tuple(corrupt))
    if not parts:
        return RoundAudit(**base, num_clients=0, num_images=0, metrics={}, recognised_fraction=None, label_accuracy=None,
                          fid=None, unavailable=dict(unavailable))
    clients = tuple(client_audit(p, metrics) for p in parts)
    recognised = [p.recognised for p in parts if p.recognised is not None]
    recognised_all = torch.cat(recognised) if recognised else None
    threat = parts[0].threat_model
    label_acc = None
    if not threat.known_labels and all(p.labels is not None for p in parts):
        label_acc = label_recovery(torch.cat([p.truth.labels for p in parts]),
                                   torch.cat([p.labels.to(torch.int64).cpu() for p in parts]))  # type: ignore[union-attr]
    round_unavailable = dict(unavailable)
    fid_result = None
    if inception is not None:
        ori_all = torch.cat([p.originals for p in parts])
        if ori_all.shape[0] >= 2:
            fid_result = AF.fid(ori_all, torch.cat([p.reconstructions for p in parts]), model=inception)
        else:
            round_unavailable["fid"] = f"fid needs at least 2 images in a round, round {rnd} has {ori_all.shape[0]}"
    return RoundAudit(
        **base, num_clients=len(parts), num_images=int(sum(c.num_reconstructed for c in clients)),
        metrics={n: summarise(torch.cat([p.values[n] for p in parts]), higher_is_leakier=metrics[n].higher_is_leakier) for n in metrics},
        recognised_fraction=float(recognised_all.float().mean()) if recognised_all is not None and recognised_all.numel() else None,
        label_accuracy=label_acc, fid=fid_result, unavailable=round_unavailable,
        defenses=parts[0].defenses, clients=clients, threat_model=threat, recognised_by=_recognised_by(parts),
    )


def _recognised_by(parts: Sequence[ScoredUpdate]) -> dict[str, int]:
    """How many of the round's recognised judgements are people's and how many the oracle's."""
    people = sum(int(p.by_people.sum()) for p in parts if p.by_people is not None)
    judged = sum(int(p.recognised.numel()) for p in parts if p.recognised is not None)
    return {name: count for name, count in (("people", people), ("oracle", judged - people)) if count}


def with_people(scored: ScoredUpdate, attack: str, people: Mapping[tuple[str, CaptureKey, int], bool]) -> ScoredUpdate:
    """The update with people's judgements in place of the oracle's where people judged an image.

    Without an oracle, people's judgements count only when they cover every matched image (a
    fraction over part of a batch would be a different figure).
    """
    positions = torch.nonzero(scored.perm >= 0).flatten().tolist()
    given = [people.get((attack, scored.key, position)) for position in positions]
    if all(g is None for g in given) or (scored.recognised is None and any(g is None for g in given)):
        return scored
    by_people = torch.tensor([g is not None for g in given], dtype=torch.bool)
    base = scored.recognised if scored.recognised is not None else torch.zeros(len(given), dtype=torch.bool)
    recognised = torch.where(by_people, torch.tensor([bool(g) for g in given]), base.cpu())
    return dataclasses.replace(scored, recognised=recognised, by_people=by_people)


def score_run(
    store: RunStore,
    *,
    metrics: Sequence[str] = DEFAULT_METRICS,
    oracle: Oracle | None = None,
    device: str | torch.device | None = None,
    extra_metrics: Mapping[str, ImageMetric | MetricFn] | None = None,
    attacks: Sequence[str] | None = None,
    align_cost: str = "mse",
    fid_dims: int = 2048,
    download: bool = True,
    write: bool = True,
    people: Mapping[tuple[str, CaptureKey, int], bool] | None = None,
) -> ScoredRun:
    """The score stage: score every reconstruction of a run against the vault; write metrics.jsonl,
    rounds.jsonl and the PNG pairs.

    Args:
        store: the run directory (its reconstructions and its vault are read, verified).
        metrics: names from `audit.metrics.known_metrics()` ("mse", "psnr", "ssim", "lpips", "fid").
        oracle: the machine annotator; without it, recognition is not scored (None in the records).
        device: "auto"/None (cuda when present), "cpu", "cuda".
        extra_metrics: more per-image metrics by name, e.g. {"semsim": semsim_distance}; a plain
            callable f(originals, reconstructions) -> (B,) is taken as a distance (lower = more
            leakage), an `ImageMetric` states its direction.
        attacks: only these attacks (default: every attack folder in the run).
        align_cost: the matching cost ("mse" or "neg_ssim").
        fid_dims: Inception feature dimension for FID (64, 192, 768 or 2048).
        download: let LPIPS/FID download missing weights (they are unavailable otherwise).
        write: write metrics.jsonl, rounds.jsonl and the PNG pairs into the run directory.
        people: people's judgements, (attack, update, position in the batch) -> recognised (the
            majority of their answers; `pipeline.annotators.people_judgements`); they replace the
            oracle's for the images they cover, and each RoundAudit says whose judgement it rests on.

    Returns:
        One `RoundAudit` per (attack, round), sorted by attack then round, and the scored updates
        they aggregate. An update whose capture, ground truth or reconstruction is missing or
        altered is in its round's `corrupt`, by path, and contributes no score.
    """
    dev = resolve_device(device)
    built, unavailable = build_metrics(metrics, device=dev, download=download)
    for name, extra in (extra_metrics or {}).items():
        built[name] = as_image_metric(name, extra)
    inception = None
    if "fid" in metrics:
        try:
            inception = AF.load_inception(dims=fid_dims, device=dev, download=download)
        except WeightsUnavailableError as err:
            unavailable["fid"] = str(err)
    if oracle is not None:
        oracle.to(dev)
    history = read_round_history(store)
    vault = store.vault
    names = attack_names(store, attacks)
    stores = {attack: store.reconstructions(attack) for attack in names}
    keys = [(attack, key) for attack in names for key in stores[attack].keys()]
    corrupt = corrupt_captures(store, {key for _, key in keys}, names)

    records: list[dict[str, Any]] = []
    per_round: dict[tuple[str, int], list[ScoredUpdate]] = defaultdict(list)
    pairs: list[tuple[str, ScoredUpdate]] = []
    for attack, key in progress(keys, desc="scoring", unit="capture"):
        try:
            if store.relative(store.captures.capture_path(key)) in store.manifest_files():
                store.captures.check(key)  # the update the reconstruction came from is still the one recorded
            truth = vault.read(key)
            reconstruction = stores[attack].read(key)
            defenses = read_defenses(store, key, reconstruction.record)
            scored = score_update(truth, reconstruction, metrics=built, oracle=oracle, device=dev, align_cost=align_cost,
                                  defenses=defenses)
        except CaptureCorruptError as err:  # reported by path; contributes no score
            corrupt[(attack, key.round)].append(str(err))
            continue
        if people:
            scored = with_people(scored, attack, people)
        records += image_records(attack, scored, list(unavailable))
        per_round[(attack, key.round)].append(scored)
        pairs.append((attack, scored))

    audits = [
        round_audit(attack, rnd, per_round.get((attack, rnd), []), metrics=built, inception=inception,
                    unavailable=unavailable, history=history, corrupt=corrupt.get((attack, rnd), ()))
        for attack, rnd in sorted(set(per_round) | set(corrupt))
    ]
    if write:
        written: list[Path] = []
        removed: list[Path] = []
        for attack, scored in pairs:
            new, old = write_pairs(stores[attack], scored.key, scored.truth.images, scored.truth.labels,
                                   scored.reconstructions, scored.perm)
            written += new
            removed += old
        written.append(write_jsonl(store.root / METRICS_FILE, records))
        written.append(write_jsonl(store.root / ROUNDS_FILE, [a.to_dict() for a in audits]))
        store.seal(written, removed=removed)  # once: a seal rewrites the whole manifest
    return ScoredRun(tuple(audits), tuple(pairs))


def write_jsonl(path: Path, records: Sequence[Mapping[str, Any]]) -> Path:
    """Write a whole JSON Lines file atomically (NaN becomes null)."""
    text = "".join(json.dumps(_clean(r), sort_keys=True) + "\n" for r in records)
    return atomic_write_text(path, text)


def read_round_audits(store: RunStore) -> list[RoundAudit]:
    """The RoundAudits a previous `score_run` wrote to rounds.jsonl."""
    path = store.root / ROUNDS_FILE
    if not path.exists():
        raise CaptureCorruptError(f"{path}: missing; score the run first (`flaudit audit {store.root}`)")
    return [RoundAudit.from_dict(json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def read_image_records(store: RunStore) -> list[dict[str, Any]]:
    """The per-image records of metrics.jsonl."""
    path = store.root / METRICS_FILE
    if not path.exists():
        raise CaptureCorruptError(f"{path}: missing; score the run first (`flaudit audit {store.root}`)")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _finite_or_none(value: torch.Tensor) -> float | None:
    v = float(value)
    return None if math.isnan(v) else v


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _clean(obj: Any) -> Any:
    # NaN (nothing to score) becomes null; +inf (PSNR of a perfect reconstruction) stays
    # Infinity, which Python's and pandas' JSON readers accept, rather than a made-up cap.
    if isinstance(obj, float):
        return None if math.isnan(obj) else obj
    if isinstance(obj, Mapping):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj
