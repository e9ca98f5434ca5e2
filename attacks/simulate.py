"""The attacker's simulation of a client: build a `ServerView` from a batch, for tests and benchmarks.

This is what a researcher does to measure an attack without a federation: play the client
(train mode, mean cross-entropy, the protocol's local steps) on a batch and keep only what
the server would receive. No real client data is involved.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from attacks.base import ServerView, SharedMetadata

UpdateTransform = Callable[[tuple[torch.Tensor, ...]], tuple[torch.Tensor, ...]]


def normalize(images01: torch.Tensor, meta: SharedMetadata) -> torch.Tensor:
    """Map [0, 1] images to the model's normalised input space."""
    channels = images01.shape[1]
    mean = torch.as_tensor(meta.data_mean, dtype=images01.dtype, device=images01.device)
    std = torch.as_tensor(meta.data_std, dtype=images01.dtype, device=images01.device)
    mean = mean.expand(channels) if mean.numel() == 1 else mean
    std = std.expand(channels) if std.numel() == 1 else std
    return (images01 - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)


def _server_copy(model: nn.Module) -> nn.Module:
    sent = copy.deepcopy(model)
    sent.eval()
    return sent


def fedsgd_view(
    model: nn.Module,
    images01: torch.Tensor,
    labels: torch.Tensor,
    meta: SharedMetadata,
    *,
    defense: UpdateTransform | None = None,
    round: int = 1,
    client: int = 0,
) -> ServerView:
    """The server's view of one FedSGD update: the mean cross-entropy gradient of the batch.

    Args:
        model: the global model (not modified; the view holds an eval-mode copy).
        images01: (B, C, H, W) batch in [0, 1] on the model's device.
        labels: (B,) class indices.
        meta: the protocol metadata (its normalisation is applied to the images).
        defense: optional transform of the gradient tuple before it leaves the client
            (e.g. `lambda u: defenses.prune(u, ratio=0.9)`).
        round: server round recorded in the view.
        client: client id recorded in the view.
    """
    client_model = copy.deepcopy(model)
    client_model.train()  # the client trains: BatchNorm uses the batch's statistics
    params = [p for _, p in client_model.named_parameters()]
    loss = F.cross_entropy(client_model(normalize(images01, meta)), labels)
    grads = tuple(g.detach() for g in torch.autograd.grad(loss, params))
    if defense is not None:
        grads = tuple(defense(grads))
    names = [name for name, _ in client_model.named_parameters()]
    return ServerView(round=round, client=client, model=_server_copy(model), update=dict(zip(names, grads)), meta=meta)


def fedavg_view(
    model: nn.Module,
    images01: torch.Tensor,
    labels: torch.Tensor,
    meta: SharedMetadata,
    *,
    round: int = 1,
    client: int = 0,
) -> ServerView:
    """The server's view of one FedAvg update: the weights after `meta.local_steps` SGD steps.

    Step k trains on mini-batch k mod ceil(B / batch_size) of the batch, in order, with
    `meta.learning_rate` (plain SGD, no momentum), the client model the FedAvg attack assumes.
    The BatchNorm buffers the client ends with are returned as `buffers`.
    """
    client_model = copy.deepcopy(model)
    client_model.train()
    inputs = normalize(images01, meta)
    count = inputs.shape[0]
    batches = max(1, -(-count // meta.batch_size))
    optimizer = torch.optim.SGD(client_model.parameters(), lr=meta.learning_rate)
    for step in range(meta.local_steps):
        index = step % batches
        sl = slice(index * meta.batch_size, (index + 1) * meta.batch_size)
        optimizer.zero_grad()
        F.cross_entropy(client_model(inputs[sl]), labels[sl]).backward()
        optimizer.step()
    update = {name: p.detach().clone() for name, p in client_model.named_parameters()}
    buffers = {name: b.detach().clone() for name, b in client_model.named_buffers()}
    return ServerView(
        round=round, client=client, model=_server_copy(model), update=update, meta=meta, buffers=buffers
    )


__all__ = ["fedavg_view", "fedsgd_view", "normalize"]
