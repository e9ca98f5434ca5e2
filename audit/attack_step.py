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
from attacks.registry import create_attack
from audit.functional.align import assignment
from flaudit.device import resolve_device
from flaudit.io import atomic_write_bytes, atomic_write_json, load_tensors, read_json, save_tensors
from flaudit.progress import is_quiet, progress
from fl_sim.run_store import CaptureKey, RunStore
from fl_sim.scenario import AttackConfig
from fl_sim.training import derive_seed

RECORD = "record.json"
TENSORS = "reconstruction.safetensors"


@dataclass(frozen=True)
class AttackOutcome:
    key: CaptureKey
    directory: Path
    record: Mapping[str, Any]
    skipped: bool


def select_keys(store: RunStore, config: AttackConfig) -> list[CaptureKey]:
    return [
        k for k in store.capture_keys()
        if (config.rounds is None or k.round in config.rounds) and (config.clients is None or k.client in config.clients)
    ]


def attack_run(store: RunStore, config: AttackConfig, *, device: str = "auto", force: bool = False) -> list[AttackOutcome]:
    """Attack every selected capture of a run; finished ones are kept (resumable) unless `force`."""
    attack = create_attack(config.name, **dict(config.params))
    target = resolve_device(device)
    outcomes = []
    keys = select_keys(store, config)
    for key in progress(keys, desc=f"attack {config.name}", unit="update", leave=True):
        directory = store.attack_dir(config.name, key)
        wanted = {"attack": config.name, "params": attack.params(), "known_labels": config.known_labels, "seed": config.seed}
        if not force and (directory / RECORD).exists() and (directory / TENSORS).exists():
            record = read_json(directory / RECORD)
            if all(record.get(k) == _plain(v) for k, v in wanted.items()):
                outcomes.append(AttackOutcome(key, directory, record, skipped=True))
                continue
        view = store.read_view(key, device=target)
        truth = store.read_ground_truth(key)
        labels = truth.labels.to(target) if config.known_labels else None
        generator = torch.Generator(device=target).manual_seed(derive_seed(config.seed, "attack", key.round, key.client))
        started = time.perf_counter()
        result = attack.reconstruct(view, generator=generator, labels=labels)
        elapsed = time.perf_counter() - started
        record = {
            **{k: _plain(v) for k, v in wanted.items()},
            "round": key.round, "client": key.client, "device": str(target),
            "recovered_labels": result.labels.tolist(), "labels_known": result.labels_known,
            "restart_losses": list(result.restart_losses), "iterations": result.iterations,
            "wall_time_s": result.wall_time_s, "step_time_s": elapsed,
            "num_images": int(result.images.shape[0]), "protocol": view.meta.protocol,
        }
        write_reconstruction(directory, result, truth.images, truth.labels)
        atomic_write_json(directory / RECORD, record)
        outcomes.append(AttackOutcome(key, directory, record, skipped=False))
        if not is_quiet():
            progress().write(f"round {key.round} client {key.client}: {config.name} done in {elapsed:.1f} s, labels {result.labels.tolist()}")
    store.seal()
    return outcomes


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
