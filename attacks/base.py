"""The attacker's side of the boundary: what an honest-but-curious server sees, and what an attack returns.

`ServerView` is built only from what crosses the wire in the federation (the global model the
server sent, the update the client returned, and the metadata the protocol shares). It has
no field for images or labels; the client's true batch lives in `fl_sim`'s ground-truth vault
and is read only by the audit.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch
from torch import nn

Protocol = Literal["fedsgd", "fedavg"]


@dataclass(frozen=True)
class SharedMetadata:
    """What the federated protocol tells the server besides the update.

    The input shape, class count and the dataset normalisation define the task and the model
    the server itself built, so the server knows them; nothing here is derived from the
    client's data except the counts the client reports.

    Args:
        protocol: `fedsgd` (the update is one batch's gradient) or `fedavg` (new weights after
            `local_steps` SGD steps).
        num_examples: examples the client reports having used this round.
        batch_size: the client's batch size.
        local_steps: SGD steps the client ran (1 for FedSGD).
        learning_rate: the client's learning rate.
        input_shape: (channels, height, width) of one model input.
        num_classes: model outputs.
        data_mean: per-channel mean of the public input normalisation.
        data_std: per-channel std of the public input normalisation.
        defenses: names and parameters of the defenses the protocol declares (public).
    """

    protocol: Protocol
    num_examples: int
    batch_size: int
    local_steps: int
    learning_rate: float
    input_shape: tuple[int, int, int]
    num_classes: int
    data_mean: tuple[float, ...]
    data_std: tuple[float, ...]
    defenses: tuple[tuple[str, tuple[tuple[str, float], ...]], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol,
            "num_examples": self.num_examples,
            "batch_size": self.batch_size,
            "local_steps": self.local_steps,
            "learning_rate": self.learning_rate,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "data_mean": list(self.data_mean),
            "data_std": list(self.data_std),
            "defenses": [[name, [list(kv) for kv in params]] for name, params in self.defenses],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SharedMetadata":
        return cls(
            protocol=data["protocol"],
            num_examples=int(data["num_examples"]),
            batch_size=int(data["batch_size"]),
            local_steps=int(data["local_steps"]),
            learning_rate=float(data["learning_rate"]),
            input_shape=tuple(int(v) for v in data["input_shape"]),  # type: ignore[arg-type]
            num_classes=int(data["num_classes"]),
            data_mean=tuple(float(v) for v in data["data_mean"]),
            data_std=tuple(float(v) for v in data["data_std"]),
            defenses=tuple(
                (str(name), tuple((str(k), float(v)) for k, v in params)) for name, params in data.get("defenses", [])
            ),
        )


@dataclass(frozen=True)
class ServerView:
    """One client's update in one round, as the server received it.

    Args:
        round: server round (1-based).
        client: the client's partition id.
        model: the global model as the server sent it (architecture and weights, buffers such
            as BatchNorm running statistics included), in eval mode. Attacks must not modify it.
        update: per parameter name (in `model.named_parameters()` order), the gradient the
            client returned (FedSGD) or its new weights (FedAvg), after the client's defenses.
        meta: the metadata the protocol shares.
        buffers: non-trainable state the client returned with a FedAvg update (BatchNorm
            running statistics); empty for FedSGD.
    """

    round: int
    client: int
    model: nn.Module
    update: Mapping[str, torch.Tensor]
    meta: SharedMetadata
    buffers: Mapping[str, torch.Tensor] = field(default_factory=dict)

    def gradient(self) -> tuple[torch.Tensor, ...]:
        """The update as a gradient: FedSGD's directly, FedAvg's as (w_sent - w_returned) / (lr * steps).

        For FedAvg this is the average of the client's local gradients only when the local
        steps saw the same batch; attacks that model the local steps use `update` directly.
        """
        if self.meta.protocol == "fedsgd":
            return tuple(self.update.values())
        sent = dict(self.model.named_parameters())
        scale = self.meta.learning_rate * self.meta.local_steps
        return tuple((sent[name].detach() - value) / scale for name, value in self.update.items())


@dataclass(frozen=True)
class Reconstruction:
    """What an attack recovered from one `ServerView`.

    Args:
        images: (B, C, H, W) in [0, 1], the dataset's shape (normalisation undone, clamped).
        labels: (B,) recovered (or, under the known-labels threat model, given) labels.
        restart_losses: final objective value of each restart; the returned images are the best.
        wall_time_s: seconds the reconstruction took.
        iterations: optimiser iterations run (per restart).
        labels_known: whether the labels were given by the threat model instead of recovered.
    """

    images: torch.Tensor
    labels: torch.Tensor
    restart_losses: tuple[float, ...]
    wall_time_s: float
    iterations: int
    labels_known: bool = False


class Attack(abc.ABC):
    """A gradient-inversion attack: `reconstruct(view, generator=...)` and nothing else as input.

    Subclasses are frozen configuration (hyperparameters) plus `reconstruct`.
    `labels`, when given, is the explicit known-labels threat model of the scenario.
    """

    name: ClassVar[str]

    @abc.abstractmethod
    def reconstruct(
        self,
        view: ServerView,
        *,
        generator: torch.Generator,
        labels: torch.Tensor | None = None,
    ) -> Reconstruction:
        """Reconstruct the client's batch from what the server saw."""

    def reconstruct_many(
        self,
        views: Sequence[ServerView],
        *,
        generators: Sequence[torch.Generator],
        labels: Sequence[torch.Tensor | None] | None = None,
    ) -> list[Reconstruction]:
        """Reconstruct several captured updates' batches (any clients and rounds), one `Reconstruction` per view.

        The default inverts them one after another; the optimisation attacks override it to
        run every client and restart as one batched computation. Each view's generator draws
        its own initialisation, so a client's result does not depend on which others share
        its batch.
        """
        given = [None] * len(views) if labels is None else list(labels)
        if len(generators) != len(views) or len(given) != len(views):
            raise ValueError(f"{len(views)} views need as many generators and labels")
        return [
            self.reconstruct(view, generator=generator, labels=known)
            for view, generator, known in zip(views, generators, given, strict=True)
        ]

    def params(self) -> dict[str, Any]:
        """The hyperparameters, for records and reports."""
        return {key: value for key, value in vars(self).items() if not key.startswith("_")}


class BatchedAttack(Attack):
    """An attack whose unit of work is a round: `reconstruct` is `reconstruct_many` of one view.

    Subclasses implement `reconstruct_many`, running every client and restart as one batched
    computation.
    """

    def reconstruct(
        self,
        view: ServerView,
        *,
        generator: torch.Generator,
        labels: torch.Tensor | None = None,
    ) -> Reconstruction:
        """Reconstruct the client's batch; `labels` is the explicit known-labels threat model."""
        return self.reconstruct_many([view], generators=[generator], labels=[labels])[0]

    @abc.abstractmethod
    def reconstruct_many(
        self,
        views: Sequence[ServerView],
        *,
        generators: Sequence[torch.Generator],
        labels: Sequence[torch.Tensor | None] | None = None,
    ) -> list[Reconstruction]:
        """One batched computation over the views (that `attacks.matching.batch_groups` puts together)."""


__all__ = ["Attack", "BatchedAttack", "Protocol", "Reconstruction", "ServerView", "SharedMetadata"]
