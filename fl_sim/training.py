"""The client's and server's local computations, as plain functions (no Flower in here)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from fl_sim.data import DatasetBundle


def normalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Standardise [0, 1] images per channel with the public dataset statistics."""
    m = torch.tensor(mean, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    return (images - m) / s


def sample_batch(partition: np.ndarray, *, batch_size: int, generator: torch.Generator) -> np.ndarray:
    """`batch_size` distinct indices of the partition (all of it if smaller), in drawn order."""
    take = min(batch_size, len(partition))
    order = torch.randperm(len(partition), generator=generator)[:take].numpy()
    return partition[order]


def batch_gradient(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> tuple[dict[str, torch.Tensor], float]:
    """FedSGD: the gradient of the mean cross-entropy of one batch, per parameter name.

    The model is in train mode (BatchNorm uses the batch's statistics), as a client training on
    this batch would be; its running statistics are updated as a side effect, on this copy only.
    """
    model.train()
    model.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(inputs), labels)
    names = [name for name, p in model.named_parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, [p for _, p in model.named_parameters() if p.requires_grad])
    return {name: g.detach() for name, g in zip(names, grads)}, float(loss.detach())


def local_train(
    model: nn.Module,
    bundle: DatasetBundle,
    partition: np.ndarray,
    *,
    epochs: int,
    steps: int | None,
    batch_size: int,
    learning_rate: float,
    momentum: float,
    generator: torch.Generator,
    transform: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
) -> tuple[float, np.ndarray, int]:
    """FedAvg: local SGD over the partition (`steps` steps if given, else `epochs` epochs).

    `transform(images, step)`, when given, maps each [0, 1] batch before normalisation (the
    metric study's augmentation policies).

    Returns:
        The mean training loss, the distinct indices used, and the number of steps run.
    """
    model.train()
    optimiser = torch.optim.SGD(model.parameters(), lr=learning_rate, momentum=momentum)
    batches: list[np.ndarray] = []
    while True:
        order = partition[torch.randperm(len(partition), generator=generator).numpy()]
        batches += [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        if steps is None and len(batches) >= epochs * -(-len(partition) // batch_size):
            break
        if steps is not None and len(batches) >= steps:
            batches = batches[:steps]
            break
    losses = []
    for step, index in enumerate(batches):
        images, labels = bundle.images(index)
        if transform is not None:
            images = transform(images, step)
        optimiser.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(normalize(images, bundle.mean, bundle.std)), labels)
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
    used = np.unique(np.concatenate(batches))
    return float(np.mean(losses)), used, len(batches)


@torch.no_grad()
def evaluate(model: nn.Module, bundle: DatasetBundle, *, batch_size: int = 512) -> tuple[float, float]:
    """Accuracy and mean cross-entropy of `model` on the bundle's test split."""
    model.eval()
    loader = torch.utils.data.DataLoader(bundle.test, batch_size=batch_size, shuffle=False)
    correct, total, loss = 0, 0, 0.0
    for images, labels in loader:
        logits = model(normalize(images, bundle.mean, bundle.std))
        loss += float(F.cross_entropy(logits, labels, reduction="sum"))
        correct += int((logits.argmax(1) == labels).sum())
        total += len(labels)
    return correct / total, loss / total
