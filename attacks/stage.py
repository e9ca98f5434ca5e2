"""The attack stage: invert every selected captured update and write the reconstructions.

`attack(captures, config, known)` reads `ServerView`s from a `CaptureStore` and writes each
update's reconstruction (tensors and `record.json`) to the attack's `ReconstructionStore`.
It is handed no ground truth: the only knowledge beyond the server's is an explicit
`KnownLabels` under the known-labels threat model. Pairing with the originals (and the
`_ori.png`/`_rec.png` files) belongs to scoring.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from attacks.config import AttackConfig
from attacks.matching import reconstruct_in_groups
from attacks.registry import create_attack
from attacks.store import CaptureStore, ReconstructionStore
from attacks.threat import KnownLabels, ThreatModel
from flaudit.device import resolve_device
from flaudit.errors import CaptureCorruptError, FlauditError
from flaudit.progress import is_quiet, progress
from flaudit.rundir import CaptureKey
from flaudit.seeds import derive_seed


@dataclass(frozen=True)
class AttackOutcome:
    """What happened to one captured update: attacked, kept from an earlier run, or not attacked because
    an input was corrupt or missing (`corrupt` says which file and how)."""

    key: CaptureKey
    directory: Path
    record: Mapping[str, Any]
    skipped: bool
    corrupt: str | None = None


@dataclass(frozen=True)
class AttackRun:
    """The attack stage's result: where the reconstructions are, and what happened to each update."""

    reconstructions: ReconstructionStore
    outcomes: tuple[AttackOutcome, ...]

    @property
    def corrupt(self) -> tuple[str, ...]:
        return tuple(o.corrupt for o in self.outcomes if o.corrupt)


def select_keys(captures: CaptureStore, config: AttackConfig) -> list[CaptureKey]:
    """The captured updates the attack's `rounds` and `clients` select."""
    return [
        k for k in captures.capture_keys()
        if (config.rounds is None or k.round in config.rounds) and (config.clients is None or k.client in config.clients)
    ]


def attack(
    captures: CaptureStore,
    config: AttackConfig,
    known: KnownLabels | None = None,
    *,
    device: str | torch.device = "auto",
    force: bool = False,
    corrupt: Mapping[CaptureKey, str] | None = None,
) -> AttackRun:
    """Attack every selected capture; finished ones are kept (resumable) unless `force`.

    The pending captures are inverted together, whatever their rounds (`Attack.reconstruct_many`:
    every update and restart as one batched computation, each row with its round's global
    weights), at most `config.updates_per_batch` at a time; each update's result is written as
    soon as its batch finishes.

    Args:
        captures: what the server received.
        config: the scenario's `attack:` section.
        known: the true labels, required exactly when `config.known_labels` (the threat model).
        device: "auto", "cpu" or "cuda".
        force: re-attack updates whose result is already there (an altered one included).
        corrupt: updates whose other inputs the caller found missing or altered (e.g. the vault's
            file, which this stage cannot see), with the message naming the path: reported, not attacked.

    Raises:
        FlauditError: `known` does not match the threat model `config` declares.
    """
    threat = ThreatModel(known_labels=config.known_labels)
    if threat.known_labels != (known is not None):
        raise FlauditError(
            "attack.known_labels is true but no labels were given" if threat.known_labels
            else "labels were given but attack.known_labels is false; the threat model must say so"
        )
    model = create_attack(config.name, **dict(config.params))
    target = resolve_device(device)
    store = captures.reconstructions(config.name)
    wanted = {"attack": config.name, "params": model.params(), "known_labels": threat.known_labels, "seed": config.seed}
    outcomes: dict[CaptureKey, AttackOutcome] = {}
    pending: list[CaptureKey] = []
    keys = select_keys(captures, config)
    settings = {k: _plain(v) for k, v in wanted.items()}
    for key in keys:
        directory = store.folder(key)
        problem = (corrupt or {}).get(key) or (None if force else store.altered(key))
        record = None if problem or force else store.current_record(key, settings)
        if record is not None:
            try:
                captures.check(key)  # a kept result stands only while its capture is the one recorded
            except CaptureCorruptError as err:
                problem = str(err)
        if problem:  # reported by path; an altered result is neither reused nor silently redone
            outcomes[key] = AttackOutcome(key, directory, {}, skipped=False, corrupt=problem)
        elif record is not None:
            outcomes[key] = AttackOutcome(key, directory, record, skipped=True)
        else:
            pending.append(key)
    bar = progress(total=len(pending), desc=f"attack {config.name}", unit="update", leave=True)
    for batch_keys in _batches(pending, config.updates_per_batch):
        views, attacked = [], []
        for key in batch_keys:
            try:
                views.append(captures.read_view(key, device=target))
                attacked.append(key)
            except CaptureCorruptError as err:  # reported by path, never attacked or scored
                outcomes[key] = AttackOutcome(key, store.folder(key), {}, skipped=False, corrupt=str(err))
                bar.update(1)
        if not attacked:
            continue
        labels = [known.labels[key].to(target) for key in attacked] if known is not None else None
        generators = [
            torch.Generator(device=target).manual_seed(derive_seed(config.seed, "attack", key.round, key.client))
            for key in attacked
        ]
        started = time.perf_counter()
        for indices, results in reconstruct_in_groups(model, views, generators=generators, labels=labels):
            elapsed = time.perf_counter() - started
            batched_with = [[attacked[i].round, attacked[i].client] for i in indices]
            for i, result in zip(indices, results, strict=True):
                key = attacked[i]
                record = {
                    **{k: _plain(v) for k, v in wanted.items()},
                    "threat_model": threat.to_dict(),
                    "round": key.round, "client": key.client, "device": str(target),
                    # CPU results depend on the thread count (the order of float reductions).
                    "threads": torch.get_num_threads() if target.type == "cpu" else None,
                    "recovered_labels": result.labels.tolist(), "labels_known": result.labels_known,
                    "restart_losses": list(result.restart_losses), "iterations": result.iterations,
                    "wall_time_s": result.wall_time_s, "step_time_s": elapsed, "batched_with": batched_with,
                    "num_images": int(result.images.shape[0]), "protocol": views[i].meta.protocol,
                }
                store.write(key, result.images, result.labels, record)
                outcomes[key] = AttackOutcome(key, store.folder(key), record, skipped=False)
            bar.update(len(indices))
            if not is_quiet():
                bar.write(f"{config.name}: {len(indices)} update(s) {_describe(batched_with)} done in {elapsed:.1f} s")
            started = time.perf_counter()
    bar.close()
    return AttackRun(store, tuple(outcomes[key] for key in keys))


def _batches(keys: Sequence[CaptureKey], size: int) -> list[list[CaptureKey]]:
    """Consecutive runs of at most `size` keys (so at most `size` views are read at once)."""
    return [list(keys[at : at + size]) for at in range(0, len(keys), size)]


def _describe(pairs: Sequence[Sequence[int]]) -> str:
    rounds = sorted({r for r, _ in pairs})
    clients = sorted({c for _, c in pairs})
    return f"(rounds {_span(rounds)}, clients {_span(clients)})"


def _span(values: Sequence[int]) -> str:
    return str(values[0]) if len(values) == 1 else f"{values[0]}-{values[-1]}" if values == list(range(values[0], values[-1] + 1)) else ",".join(map(str, values))


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, torch.Tensor):
        return value.tolist()
    return value
