"""The shared machinery of optimisation-based gradient inversion.

`MatchingProblem` turns a `ServerView` into a per-restart objective
`(candidate images, labels) -> distance(simulated update, observed update) + priors` and its
batched value-and-gradient over restarts (`torch.func.vmap` of `grad_and_value`), so every
restart runs in one computation. The attacks (DLG, iDLG, Inverting Gradients,
GradInversion) differ only in the objective's terms, the optimiser and the label handling.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.func import grad_and_value, vmap

import time

from attacks.base import Reconstruction, ServerView
from attacks.functional import (
    ClientModel,
    last_layer_gradient,
    model_device,
    normalization,
    num_images,
    observed_target,
    to_unit_range,
)
from attacks.labels import batch_labels, idlg_label
from attacks.objectives import (
    bn_statistics_loss,
    element_weights,
    flat_cosine_distance,
    flat_l2_distance,
    flatten_gradients,
    layer_weights,
    total_variation,
)
from flaudit.errors import FlauditError


@dataclass(frozen=True)
class ObjectiveTerms:
    """The terms of a matching objective.

    Args:
        distance: `l2` (DLG) or `cosine` (Inverting Gradients).
        layer_weighting: `equal`, `linear` or `exp` per-tensor weights of the distance.
        tv: total-variation weight.
        bn: BN-statistics prior weight (GradInversion); 0 disables.
        bn_first_multiplier: extra weight of the first BN layer.
        soft_labels: labels are per-image logits optimised jointly (DLG); softmax is applied.
    """

    distance: str = "cosine"
    layer_weighting: str = "equal"
    tv: float = 0.0
    bn: float = 0.0
    bn_first_multiplier: float = 10.0
    soft_labels: bool = False


def estimated_mean_probs(view: ServerView, *, samples: int = 32, seed: int = 0) -> torch.Tensor:
    """The model's mean softmax output on dummy inputs (uniform noise in the valid range), in train mode.

    The attacker's own estimate of the batch's mean prediction, for the count rule; a fixed
    seed keeps label recovery deterministic.
    """
    device = model_device(view.model)
    generator = torch.Generator().manual_seed(seed)
    mean, std = normalization(view)
    dummy = torch.rand((samples, *view.meta.input_shape), generator=generator).to(device)
    client = ClientModel(view.model, ())
    with torch.no_grad():
        logits = client.logits(client.params, (dummy - mean) / std)
    return torch.softmax(logits.float(), dim=-1).mean(dim=0)


def recover_labels(view: ServerView, count: int) -> torch.Tensor:
    """Labels from the last layer's gradient: iDLG's rule for one image, the count rule for a batch."""
    weight, bias = last_layer_gradient(view)
    device = model_device(view.model)
    if count == 1:
        return idlg_label(weight).to(device)
    probs = estimated_mean_probs(view) if bias is not None else None
    return batch_labels(num_images=count, bias_grad=bias, weight_grad=weight, mean_probs=probs).to(device)


class MatchingProblem:
    """The objective of one view, in functional form, for a batch of restarts.

    Args:
        view: what the server saw.
        terms: the objective's terms.
    """

    def __init__(self, view: ServerView, terms: ObjectiveTerms) -> None:
        self.view = view
        self.terms = terms
        self.device = model_device(view.model)
        names, target = observed_target(view)
        self.target = target
        self.client = ClientModel(view.model, names)
        if terms.bn > 0 and not self.client.running_stats:
            raise FlauditError(
                "the BN-statistics prior needs a model with BatchNorm running statistics; "
                "use inverting_gradients for models without BatchNorm"
            )
        self.weights = layer_weights(len(target), scheme=terms.layer_weighting)
        # Flattened once: the distance is then a handful of ops per evaluation, not a few per tensor.
        self.flat_target = flatten_gradients(target)
        self.flat_weights = None if terms.layer_weighting == "equal" else element_weights(target, self.weights)
        mean, std = normalization(view)
        # The box: the normalised images of [0, 1] pixels.
        self.low = (0.0 - mean) / std
        self.high = (1.0 - mean) / std

    def image_shape(self, count: int) -> tuple[int, ...]:
        return (count, *self.view.meta.input_shape)

    def objective(self, images: torch.Tensor, labels: torch.Tensor, *, autograd: bool = False) -> torch.Tensor:
        """The loss of one candidate batch (B, C, H, W) with labels (B,) or label logits (B, K).

        `autograd=True` builds the client's gradient with plain autograd (for one restart
        outside any torch.func transform); the value is the same.
        """
        meta = self.view.meta
        if self.terms.soft_labels:
            labels = torch.softmax(labels, dim=-1)
        if meta.protocol == "fedsgd":
            simulated, stats = self.client.gradient(images, labels, autograd=autograd)
        else:
            simulated, stats = self.client.fedavg_delta(
                images,
                labels,
                local_steps=meta.local_steps,
                learning_rate=meta.learning_rate,
                batch_size=meta.batch_size,
                autograd=autograd,
            )
        flat = flatten_gradients(simulated)
        if self.terms.distance == "l2":
            loss = flat_l2_distance(flat, self.flat_target, weights=self.flat_weights)
        else:
            loss = flat_cosine_distance(flat, self.flat_target, weights=self.flat_weights)
        if self.terms.tv > 0:
            loss = loss + self.terms.tv * total_variation(images)
        if self.terms.bn > 0:
            loss = loss + self.terms.bn * bn_statistics_loss(
                stats, self.client.running_stats, first_multiplier=self.terms.bn_first_multiplier
            )
        return loss

    def batched_value_and_grad(
        self, labels: torch.Tensor | None
    ) -> Callable[..., tuple[torch.Tensor, torch.Tensor | tuple[torch.Tensor, torch.Tensor]]]:
        """vmap over restarts of grad_and_value of the objective.

        With fixed `labels` (B,): x (R, B, C, H, W) -> (loss (R,), grad (R, B, C, H, W)).
        With `labels=None` (joint labels): (x, label_logits (R, B, K)) -> (loss, (grad_x, grad_labels)).
        """
        if labels is None:
            joint_batched = vmap(grad_and_value(self.objective, argnums=(0, 1)), in_dims=(0, 0))

            def step_joint(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, object]:
                if x.shape[0] == 1:  # one restart: vmap is pure overhead, plain autograd is leaner
                    xi = x[0].detach().requires_grad_(True)
                    yi = y[0].detach().requires_grad_(True)
                    value = self.objective(xi, yi, autograd=True)
                    gx, gy = torch.autograd.grad(value, [xi, yi])
                    return value.detach().unsqueeze(0), (gx.unsqueeze(0), gy.unsqueeze(0))
                return _swap(joint_batched(x, y))

            return step_joint
        fixed_batched = vmap(grad_and_value(self.objective, argnums=0), in_dims=(0, None))

        def step_fixed(x: torch.Tensor) -> tuple[torch.Tensor, object]:
            if x.shape[0] == 1:
                xi = x[0].detach().requires_grad_(True)
                value = self.objective(xi, labels, autograd=True)
                (gx,) = torch.autograd.grad(value, [xi])
                return value.detach().unsqueeze(0), gx.unsqueeze(0)
            return _swap(fixed_batched(x, labels))

        return step_fixed


def _swap(pair: tuple[object, torch.Tensor]) -> tuple[torch.Tensor, object]:
    grads, value = pair
    return value, grads  # type: ignore[return-value]


def initial_images(
    shape: tuple[int, ...], *, init: str, generator: torch.Generator, device: torch.device
) -> torch.Tensor:
    """Starting candidates in the normalised space, drawn from `generator` (deterministic under its seed)."""
    gen_device = generator.device
    if init == "randn":
        x = torch.randn(shape, generator=generator, device=gen_device)
    elif init == "rand":
        # Uniform on [-1, 1]: the spread of normalised natural images.
        x = torch.rand(shape, generator=generator, device=gen_device) * 2 - 1
    elif init == "zeros":
        x = torch.zeros(shape, device=gen_device)
    else:
        raise ValueError(f"unknown init {init!r}")
    return x.to(device)


def resolve_labels(view: ServerView, labels: torch.Tensor | None) -> tuple[torch.Tensor, bool]:
    """(labels, labels_known): given labels are the explicit known-labels threat model."""
    device = model_device(view.model)
    if labels is not None:
        return torch.as_tensor(labels, dtype=torch.long).reshape(-1).to(device), True
    return recover_labels(view, num_images(view)), False


def reconstruction(
    view: ServerView,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    restart_losses: torch.Tensor,
    iterations: int,
    started: float,
    labels_known: bool,
) -> Reconstruction:
    """The Reconstruction of the best restart: normalised candidates back to [0, 1], on the CPU."""
    return Reconstruction(
        images=to_unit_range(view, images).detach().cpu(),
        labels=labels.detach().cpu(),
        restart_losses=tuple(float(v) for v in restart_losses.tolist()),
        wall_time_s=time.perf_counter() - started,
        iterations=iterations,
        labels_known=labels_known,
    )


__all__ = ["MatchingProblem", "reconstruction", "ObjectiveTerms", "initial_images", "recover_labels", "resolve_labels"]
