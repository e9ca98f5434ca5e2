"""One FedSGD round without Flower's engine: each client's gradient of its own batch to a given
model, defended as the defense mod defends it, captured by the server and vaulted.

The metric study (`pipeline.study`) needs exactly this: fixed, pre-trained models whose every
client shares one batch. A federation's other rounds would not change what the server sees of
that round, so the engine is left out; the computation, the seeds and the files are a
federation's: `fl_sim.training.batch_gradient`, `defenses.registry.apply_defenses` seeded per
(round, client) as `fl_sim.client_app` seeds it, `CaptureStore.write_view` and `Vault.write`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from attacks.base import SharedMetadata
from defenses.registry import apply_defenses
from fl_sim.data import DatasetBundle
from fl_sim.run_store import RunStore
from fl_sim.training import batch_gradient, normalize
from fl_sim.vault import GroundTruth
from flaudit.models import ModelSpec
from flaudit.rundir import CaptureKey
from flaudit.seeds import derive_seed


@dataclass(frozen=True)
class ClientBatch:
    """A client's batch for one round.

    Args:
        client: partition id.
        images: (B, C, H, W) in [0, 1], the client's data (what the vault records).
        labels: (B,) int64.
        indices: (B,) int64 indices into the dataset's training split.
    """

    client: int
    images: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor


def fedsgd_round(
    store: RunStore,
    model: nn.Module,
    spec: ModelSpec,
    bundle: DatasetBundle,
    batches: Sequence[ClientBatch],
    *,
    learning_rate: float,
    defenses: Sequence[tuple[str, Mapping[str, float]]] = (),
    seed: int,
    round: int = 1,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> list[CaptureKey]:
    """Capture and vault one FedSGD round of `batches` against `model` (which is not modified); seal the files.

    Args:
        store: the run directory (created).
        model: the global model the server sends.
        spec: its architecture, as the capture records it.
        bundle: the dataset (shape, classes and normalisation shared with the server).
        batches: one per client.
        learning_rate: the learning rate the protocol declares.
        defenses: (name, params) applied in order to each gradient before it leaves the client.
        seed: the run's seed; each client's defense noise is seeded from (seed, "defense", round, client).
        round: the server round recorded.
        transform: what the client applies to its [0, 1] images before training on them (an
            augmentation policy); the vault keeps the untransformed batch.
    """
    sent = {k: v.detach().clone() for k, v in model.state_dict().items()}
    declared = tuple((name, tuple(sorted(params.items()))) for name, params in defenses)
    written = []
    keys = []
    for batch in batches:
        key = CaptureKey(round, batch.client)
        client_model = copy.deepcopy(model)  # the client's own copy: BatchNorm statistics stay on it
        shared = transform(batch.images) if transform is not None else batch.images
        grads, _ = batch_gradient(client_model, normalize(shared, bundle.mean, bundle.std), batch.labels)
        names = list(grads)
        generator = torch.Generator().manual_seed(derive_seed(seed, "defense", round, batch.client))
        defended = apply_defenses([grads[n] for n in names], defenses, generator=generator) if defenses else tuple(grads.values())
        meta = SharedMetadata(
            protocol="fedsgd", num_examples=int(batch.labels.shape[0]), batch_size=int(batch.labels.shape[0]), local_steps=1,
            learning_rate=learning_rate, input_shape=bundle.shape, num_classes=bundle.num_classes,
            data_mean=bundle.mean, data_std=bundle.std, defenses=declared,
        )
        written += store.captures.write_view(key, spec=spec, global_state=sent, update=dict(zip(names, defended)), buffers={}, meta=meta)
        written.append(store.vault.write(GroundTruth(round, batch.client, batch.images, batch.labels, batch.indices)))
        keys.append(key)
    store.seal(written)
    return keys
