"""Per-round scoring of a run directory: align, score every image, aggregate, write records.

For every attack and every captured (round, client) with a reconstruction
(`attacks/ATTACK/round_RRR/client_CCC/reconstruction.safetensors`), the scorer reads the
client's true batch from the ground-truth vault, matches reconstructions to originals
one-to-one (Hungarian), scores each pair with every available metric, asks the oracle whether
it recognises each reconstruction, and aggregates per client and per round: the mean, and the
worst case, i.e. the best-reconstructed image, since one recognisable image is already a leak.

Outputs (written whole and atomically): `metrics.jsonl`, one record per image, and
`rounds.jsonl`, one `RoundAudit` per (attack, round).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from audit import functional as AF
from audit.metrics import DEFAULT_METRICS, IMAGE_METRICS, SET_METRICS, ImageMetric, MetricFn, as_image_metric, known_metrics
from audit.oracle import Oracle
from fl_sim.run_store import CaptureKey, RunStore
from flaudit.device import resolve_device
from flaudit.errors import CaptureCorruptError, UnknownNameError, WeightsUnavailableError
from flaudit.io import atomic_write_text, load_tensors, read_json
from flaudit.progress import progress

RECONSTRUCTION_FILE = "reconstruction.safetensors"
RECORD_FILE = "record.json"
METRICS_FILE = "metrics.jsonl"
ROUNDS_FILE = "rounds.jsonl"


@dataclass(frozen=True)
class MetricSummary:
    """One metric over a set of images.

    Args:
        mean: mean over the images (None when no finite value).
        worst: the most leaky image's value: max for PSNR/SSIM, min for MSE/LPIPS/SemSim.
        count: images scored.
        higher_is_leakier: the metric's direction.
    """

    mean: float | None
    worst: float | None
    count: int
    higher_is_leakier: bool

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "worst": self.worst, "count": self.count, "higher_is_leakier": self.higher_is_leakier}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "MetricSummary":
        return cls(data["mean"], data["worst"], int(data["count"]), bool(data["higher_is_leakier"]))


@dataclass(frozen=True)
class ClientAudit:
    """One client's reconstruction in one round.

    Args:
        client: partition id.
        num_images: originals in the client's batch.
        num_reconstructed: reconstructions matched to an original.
        metrics: per metric, mean and worst case over the client's images.
        recognised_fraction: fraction the oracle recognised (None without an oracle).
        label_accuracy: fraction of true labels recovered (as a multiset; None without labels).
        matches: for each original (in batch order), the index of the reconstruction matched to
            it in the attack's own order, -1 where none was.
    """

    client: int
    num_images: int
    num_reconstructed: int
    metrics: Mapping[str, MetricSummary]
    recognised_fraction: float | None
    label_accuracy: float | None
    matches: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "client": self.client, "num_images": self.num_images, "num_reconstructed": self.num_reconstructed,
            "metrics": {k: v.to_dict() for k, v in self.metrics.items()},
            "recognised_fraction": self.recognised_fraction, "label_accuracy": self.label_accuracy,
            "matches": list(self.matches),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ClientAudit":
        return cls(
            int(data["client"]), int(data["num_images"]), int(data["num_reconstructed"]),
            {k: MetricSummary.from_dict(v) for k, v in data["metrics"].items()},
            data["recognised_fraction"], data["label_accuracy"], tuple(int(v) for v in data["matches"]),
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
        label_accuracy: fraction of true labels the attack recovered.
        fid: the round's FID, with its sample size and feature dimension (None if not scored).
        unavailable: metrics that could not be scored, with the reason (what file to provide).
        defenses: per defense name, its parameters, as the protocol declared them.
        clients: the per-client breakdown.
        corrupt: inputs of this round that are missing or differ from manifest.json, one message
            each naming the path; they contribute no score.
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

    def to_dict(self) -> dict[str, Any]:
        return {
            "round": self.round, "attack": self.attack, "accuracy": self.accuracy, "loss": self.loss,
            "num_clients": self.num_clients, "num_images": self.num_images,
            "metrics": {k: v.to_dict() for k, v in self.metrics.items()},
            "recognised_fraction": self.recognised_fraction, "label_accuracy": self.label_accuracy,
            "fid": self.fid.to_dict() if self.fid else None, "unavailable": dict(self.unavailable),
            "defenses": {k: dict(v) for k, v in self.defenses.items()}, "clients": [c.to_dict() for c in self.clients],
            "corrupt": list(self.corrupt),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "RoundAudit":
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
        )


# --- discovery -------------------------------------------------------------------------------
def reconstruction_keys(store: RunStore, *, attacks: Sequence[str] | None = None) -> list[tuple[str, CaptureKey]]:
    """Every (attack, capture) with a reconstruction file, sorted by attack, round, client."""
    found = []
    for path in (store.root / "attacks").glob(f"*/round_*/client_*/{RECONSTRUCTION_FILE}"):
        client_dir = path.parent
        attack = client_dir.parent.parent.name
        if attacks is not None and attack not in attacks:
            continue
        try:
            key = CaptureKey(int(client_dir.parent.name.split("_")[1]), int(client_dir.name.split("_")[1]))
        except (IndexError, ValueError):
            continue
        found.append((attack, key))
    return sorted(found, key=lambda item: (item[0], item[1].round, item[1].client))


def corrupt_captures(store: RunStore, keys: Sequence[tuple[str, CaptureKey]]) -> defaultdict[tuple[str, int], list[str]]:
    """(attack, round) -> messages, for captures that no attack could reconstruct because they are
    missing or altered: every attack of the run reports them in that round."""
    attacked = {key for _, key in keys}
    corrupt: defaultdict[tuple[str, int], list[str]] = defaultdict(list)
    for key in store.capture_keys():
        if key in attacked:
            continue
        try:
            store.verified(store.capture_path(key))
            store.verified(store.capture_path(key).with_suffix(".json"))
        except CaptureCorruptError as err:
            for attack in _attack_names(store, keys):
                corrupt[(attack, key.round)].append(str(err))
    return corrupt


def _attack_names(store: RunStore, keys: Sequence[tuple[str, CaptureKey]]) -> list[str]:
    folders = [path.name for path in (store.root / "attacks").iterdir() if path.is_dir()] if (store.root / "attacks").is_dir() else []
    return sorted({attack for attack, _ in keys} | set(folders))


def read_reconstruction(store: RunStore, attack: str, key: CaptureKey) -> tuple[torch.Tensor, torch.Tensor | None, dict[str, Any]]:
    """(images, labels or None, record.json contents or {}) of one reconstruction."""
    folder = store.attack_dir(attack, key)
    tensors = load_tensors(store.verified(folder / RECONSTRUCTION_FILE))
    if "images" not in tensors:
        raise CaptureCorruptError(f"{folder / RECONSTRUCTION_FILE}: no 'images' tensor; re-run `flaudit attack`")
    record = read_json(store.verified(folder / RECORD_FILE))
    return tensors["images"].to(torch.float32).clamp(0, 1), tensors.get("labels"), record


def read_defenses(store: RunStore, key: CaptureKey, record: Mapping[str, Any] | None = None) -> dict[str, dict[str, float]]:
    """The defenses the protocol declared for this capture (its JSON's metadata), else the attack record's."""
    info = store.capture_path(key).with_suffix(".json")
    recorded = info.relative_to(store.root).as_posix() in store.manifest_files()
    # A run whose captures were never recorded (reconstructions imported from elsewhere) falls
    # back on the attack record; a capture the manifest lists is read, and verified.
    raw: Any = store.read_capture_info(key).get("meta", {}).get("defenses") if recorded or info.exists() else None
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


def summarise(values: torch.Tensor, *, higher_is_leakier: bool) -> MetricSummary:
    """Mean and worst case (most leaky image) of the finite values; +inf PSNR counts as the worst case."""
    values = values.to(torch.float64).flatten()
    not_nan = values[~torch.isnan(values)]
    if not_nan.numel() == 0:
        return MetricSummary(None, None, 0, higher_is_leakier)
    worst = float(not_nan.max() if higher_is_leakier else not_nan.min())
    return MetricSummary(float(not_nan.mean()), worst, int(not_nan.numel()), higher_is_leakier)


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
) -> list[RoundAudit]:
    """Score every reconstruction of a run directory and write metrics.jsonl and rounds.jsonl.

    Args:
        store: the run directory.
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
        write: write metrics.jsonl and rounds.jsonl into the run directory.

    Returns:
        One `RoundAudit` per (attack, round), sorted by attack then round.
    """
    dev = resolve_device(device)
    built, unavailable = build_metrics(metrics, device=dev, download=download)
    for name, extra in (extra_metrics or {}).items():
        built[name] = as_image_metric(name, extra)
    inception = None
    want_fid = "fid" in metrics
    if want_fid:
        try:
            inception = AF.load_inception(dims=fid_dims, device=dev, download=download)
        except WeightsUnavailableError as err:
            unavailable["fid"] = str(err)
    if oracle is not None:
        oracle.to(dev)
    history = read_round_history(store)

    image_records: list[dict[str, Any]] = []
    per_round: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    keys = reconstruction_keys(store, attacks=attacks)
    corrupt = corrupt_captures(store, keys)
    for attack, key in progress(keys, desc="scoring", unit="capture"):
        try:
            truth = store.read_ground_truth(key)
            rec_images, rec_labels, record = read_reconstruction(store, attack, key)
            defenses = read_defenses(store, key, record)
            if rec_images.shape[1:] != truth.images.shape[1:]:
                raise CaptureCorruptError(
                    f"{store.attack_dir(attack, key)}: reconstruction shape {tuple(rec_images.shape[1:])} differs from the "
                    f"ground truth's {tuple(truth.images.shape[1:])}; re-run `flaudit attack`"
                )
        except CaptureCorruptError as err:  # reported by path; contributes no score
            corrupt[(attack, key.round)].append(str(err))
            continue
        originals = truth.images.to(torch.float32).clamp(0, 1)
        aligned, perm = AF.align(originals, rec_images, cost=align_cost)
        matched = perm >= 0
        ori = originals[matched]
        labels = truth.labels[matched]
        values = {name: metric.fn(ori.to(dev), aligned.to(dev)).detach().to(torch.float64).cpu() for name, metric in built.items()}
        recognised = (
            oracle.recognised(aligned, labels, originals01=ori, keys=truth.indices[matched]).cpu() if oracle is not None else None
        )
        recovered = rec_labels[perm[matched]] if rec_labels is not None and rec_labels.numel() == rec_images.shape[0] else None
        positions = torch.nonzero(matched).flatten().tolist()
        for row, position in enumerate(positions):
            image_records.append({
                "round": key.round, "client": key.client, "attack": attack, "defenses": defenses,
                "position": position, "index": int(truth.indices[position]), "label": int(truth.labels[position]),
                "recovered_label": int(recovered[row]) if recovered is not None else None,
                "reconstruction_index": int(perm[position]),
                "metrics": {name: _finite_or_none(values[name][row]) for name in values},
                "unavailable": sorted(unavailable),
                "recognised": bool(recognised[row]) if recognised is not None else None,
            })
        per_round[(attack, key.round)].append({
            "key": key, "values": values, "recognised": recognised, "perm": perm, "num_images": originals.shape[0],
            "labels_acc": label_recovery(truth.labels, rec_labels),
            "true_labels": truth.labels, "rec_labels": rec_labels, "defenses": defenses,
            "ori": ori, "rec": aligned,
        })

    audits: list[RoundAudit] = []
    for attack, rnd in sorted(set(per_round) | set(corrupt)):
        parts = per_round.get((attack, rnd), [])
        if not parts:
            entry = history.get(rnd, {})
            audits.append(RoundAudit(
                round=rnd, attack=attack, accuracy=_opt_float(entry.get("accuracy")), loss=_opt_float(entry.get("loss")),
                num_clients=0, num_images=0, metrics={}, recognised_fraction=None, label_accuracy=None, fid=None,
                unavailable=dict(unavailable), corrupt=tuple(corrupt[(attack, rnd)]),
            ))
            continue
        clients = []
        for part in parts:
            rec_frac = float(part["recognised"].float().mean()) if part["recognised"] is not None and part["recognised"].numel() else None
            clients.append(ClientAudit(
                client=part["key"].client, num_images=part["num_images"], num_reconstructed=int((part["perm"] >= 0).sum()),
                metrics={n: summarise(v, higher_is_leakier=built[n].higher_is_leakier) for n, v in part["values"].items()},
                recognised_fraction=rec_frac, label_accuracy=part["labels_acc"], matches=tuple(part["perm"].tolist()),
            ))
        values_all = {n: torch.cat([p["values"][n] for p in parts]) for n in built}
        recog = [p["recognised"] for p in parts if p["recognised"] is not None]
        recog_all = torch.cat(recog) if recog else None
        true_all = torch.cat([p["true_labels"] for p in parts])
        label_acc = None
        if all(p["rec_labels"] is not None for p in parts):
            label_acc = label_recovery(true_all, torch.cat([p["rec_labels"].to(torch.int64).cpu() for p in parts]))
        round_unavailable = dict(unavailable)
        fid_result = None
        if inception is not None:
            ori_all = torch.cat([p["ori"] for p in parts])
            rec_all = torch.cat([p["rec"] for p in parts])
            if ori_all.shape[0] >= 2:
                fid_result = AF.fid(ori_all, rec_all, model=inception)
            else:
                round_unavailable["fid"] = f"fid needs at least 2 images in a round, round {rnd} has {ori_all.shape[0]}"
        entry = history.get(rnd, {})
        audits.append(RoundAudit(
            round=rnd, attack=attack, accuracy=_opt_float(entry.get("accuracy")), loss=_opt_float(entry.get("loss")),
            num_clients=len(parts), num_images=int(sum(c.num_reconstructed for c in clients)),
            metrics={n: summarise(v, higher_is_leakier=built[n].higher_is_leakier) for n, v in values_all.items()},
            recognised_fraction=float(recog_all.float().mean()) if recog_all is not None and recog_all.numel() else None,
            label_accuracy=label_acc, fid=fid_result, unavailable=round_unavailable,
            defenses=parts[0]["defenses"], clients=tuple(clients), corrupt=tuple(corrupt.get((attack, rnd), ())),
        ))

    if write:
        write_jsonl(store.root / METRICS_FILE, image_records)
        write_jsonl(store.root / ROUNDS_FILE, [a.to_dict() for a in audits])
    return audits


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


def aligned_pair(store: RunStore, audit: RoundAudit, client: ClientAudit) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(originals, reconstructions, labels) of one client's matched images, as the scorer paired them."""
    key = CaptureKey(audit.round, client.client)
    truth = store.read_ground_truth(key)
    rec, _, _ = read_reconstruction(store, audit.attack, key)
    perm = torch.tensor(client.matches, dtype=torch.int64)
    matched = perm >= 0
    return truth.images[matched].to(torch.float32).clamp(0, 1), rec[perm[matched]], truth.labels[matched]


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
