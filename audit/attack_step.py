"""The attack step of a run: invert every captured update, write reconstructions next to the originals.

The attack receives the `ServerView` alone (and, only under the explicit known-labels threat
model, the true labels). The ground truth is read afterwards, by this step, to name and pair
the PNG files in the SemSim release convention: `{index}_{label}_ori.png` next to
`{index}_{label}_rec.png`, the reconstruction matched one-to-one to its original.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from attacks.base import Reconstruction
from attacks.matching import reconstruct_in_groups
from attacks.registry import create_attack
from audit.functional.align import assignment
from flaudit.device import resolve_device
from flaudit.errors import CaptureCorruptError
from flaudit.io import atomic_write_bytes, atomic_write_json, load_tensors, read_json, save_tensors
from flaudit.progress import is_quiet, progress
from fl_sim.run_store import CaptureKey, RunStore
from fl_sim.scenario import AttackConfig
from fl_sim.training import derive_seed

RECORD = "record.json"
TENSORS = "reconstruction.safetensors"


@dataclass(frozen=True)
class AttackOutcome:
    """What happened to one captured update: attacked, kept from an earlier run, or not attacked because
    an input was corrupt or missing (`corrupt` says which file and how)."""

    key: CaptureKey
    directory: Path
    record: Mapping[str, Any]
    skipped: bool
    corrupt: str | None = None


def select_keys(store: RunStore, config: AttackConfig) -> list[CaptureKey]:
    return [
        k for k in store.capture_keys()
        if (config.rounds is None or k.round in config.rounds) and (config.clients is None or k.client in config.clients)
    ]


def attack_run(store: RunStore, config: AttackConfig, *, device: str = "auto", force: bool = False) -> list[AttackOutcome]:
    """Attack every selected capture of a run; finished ones are kept (resumable) unless `force`.

    The pending captures of one round are inverted together (`Attack.reconstruct_many`: every
    client and restart as one batched computation), at most `config.clients_per_batch` at a
    time; each client's result is written as soon as its batch finishes.
    """
    attack = create_attack(config.name, **dict(config.params))
    target = resolve_device(device)
    wanted = {"attack": config.name, "params": attack.params(), "known_labels": config.known_labels, "seed": config.seed}
    outcomes: dict[CaptureKey, AttackOutcome] = {}
    pending: list[CaptureKey] = []
    keys = select_keys(store, config)
    for key in keys:
        directory = store.attack_dir(config.name, key)
        if not force and (directory / RECORD).exists() and (directory / TENSORS).exists():
            try:
                record = read_json(store.verified(directory / RECORD))
                store.verified(directory / TENSORS)
            except CaptureCorruptError:
                record = {}  # an altered earlier result is redone, not reused
            if record and all(record.get(k) == _plain(v) for k, v in wanted.items()):
                outcomes[key] = AttackOutcome(key, directory, record, skipped=True)
                continue
        pending.append(key)
    bar = progress(total=len(pending), desc=f"attack {config.name}", unit="update", leave=True)
    for all_keys in _by_round(pending):
        views, truths, round_keys = [], [], []
        for key in all_keys:
            try:
                views.append(store.read_view(key, device=target))
                truths.append(store.read_ground_truth(key))
                round_keys.append(key)
            except CaptureCorruptError as err:  # reported by path, never attacked or scored
                outcomes[key] = AttackOutcome(key, store.attack_dir(config.name, key), {}, skipped=False, corrupt=str(err))
                bar.update(1)
        if not round_keys:
            continue
        labels = [t.labels.to(target) for t in truths] if config.known_labels else None
        generators = [
            torch.Generator(device=target).manual_seed(derive_seed(config.seed, "attack", key.round, key.client))
            for key in round_keys
        ]
        started = time.perf_counter()
        groups = reconstruct_in_groups(
            attack, views, generators=generators, labels=labels, max_clients=config.clients_per_batch
        )
        for indices, results in groups:
            elapsed = time.perf_counter() - started
            batched_with = [round_keys[i].client for i in indices]
            for i, result in zip(indices, results, strict=True):
                key, truth = round_keys[i], truths[i]
                directory = store.attack_dir(config.name, key)
                record = {
                    **{k: _plain(v) for k, v in wanted.items()},
                    "round": key.round, "client": key.client, "device": str(target),
                    # CPU results depend on the thread count (the order of float reductions).
                    "threads": torch.get_num_threads() if target.type == "cpu" else None,
                    "recovered_labels": result.labels.tolist(), "labels_known": result.labels_known,
                    "restart_losses": list(result.restart_losses), "iterations": result.iterations,
                    "wall_time_s": result.wall_time_s, "step_time_s": elapsed, "batched_with": batched_with,
                    "num_images": int(result.images.shape[0]), "protocol": views[i].meta.protocol,
                }
                # A re-attack replaces every output of the update: no file of an earlier setting stays.
                removed = _clear(directory)
                write_reconstruction(directory, result, truth.images, truth.labels)
                atomic_write_json(directory / RECORD, record)
                store.seal(sorted(directory.iterdir()), removed=removed)
                outcomes[key] = AttackOutcome(key, directory, record, skipped=False)
            bar.update(len(indices))
            if not is_quiet():
                bar.write(f"round {round_keys[0].round} clients {batched_with}: {config.name} done in {elapsed:.1f} s")
            started = time.perf_counter()
    bar.close()
    return [outcomes[key] for key in keys]


def _clear(directory: Path) -> list[Path]:
    """Delete the files of an update's output folder; returns them (to drop from the manifest)."""
    removed = sorted(path for path in directory.iterdir() if path.is_file()) if directory.is_dir() else []
    for path in removed:
        path.unlink()
    return removed


def _by_round(keys: list[CaptureKey]) -> list[list[CaptureKey]]:
    by_round: dict[int, list[CaptureKey]] = {}
    for key in keys:
        by_round.setdefault(key.round, []).append(key)
    return list(by_round.values())


def write_reconstruction(directory: Path, result: Reconstruction, originals: torch.Tensor, true_labels: torch.Tensor) -> None:
    """Save the raw reconstruction tensors and the PNG pairs, matched one-to-one to the originals."""
    images = result.images.detach().float().cpu().clamp(0, 1)
    save_tensors(directory / TENSORS, {"images": images, "labels": result.labels.detach().cpu().to(torch.int64)})
    perm = assignment(originals.float(), images) if len(images) else torch.empty(0, dtype=torch.int64)
    for index, (original, label) in enumerate(zip(originals, true_labels.tolist())):
        atomic_write_bytes(directory / f"{index}_{label}_ori.png", png_bytes(original))
        if index < len(perm) and perm[index] >= 0:
            atomic_write_bytes(directory / f"{index}_{label}_rec.png", png_bytes(images[int(perm[index])]))


def load_reconstruction(directory: Path) -> dict[str, torch.Tensor]:
    return load_tensors(directory / TENSORS)


def png_bytes(image: torch.Tensor) -> bytes:
    """An 8-bit PNG of a (C, H, W) [0, 1] image (grey for one channel)."""
    import io

    array = (image.detach().cpu().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    if array.shape[2] == 1:
        array = array[:, :, 0]
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, format="PNG")
    return buffer.getvalue()


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, torch.Tensor):
        return value.tolist()
    return value
