"""The attacker's differentiable model of a client's local computation, in `torch.func` form.

`ClientModel` wraps a private copy of the server's global model so that the client's loss,
its gradient (FedSGD) and its unrolled local SGD steps (FedAvg) are pure functions of the
input batch; attacks take `grad` of a distance between those and the observed update and
`vmap` the whole thing over restarts, so R restarts are one batched computation.

The client computed its update with the model in train mode, so BatchNorm normalises with
the batch's own statistics: the copy's BN layers are switched to batch statistics only
(`torch.func.replace_all_batch_norm_modules_`, which also keeps vmap from writing running
statistics in place). The running statistics the server sent are kept apart, for
GradInversion's prior.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad

from attacks.base import ServerView
from attacks.objectives import batch_norm_statistics
from attacks.rows import row_network
from flaudit.errors import FlauditError

_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's parameters (the caller moves the view; attacks follow it)."""
    for param in model.parameters():
        return param.device
    return torch.device("cpu")


def soft_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy against class indices (B,) or probability vectors (B, K)."""
    if labels.is_floating_point():
        return -(labels * F.log_softmax(logits, dim=-1)).sum(dim=-1).mean()
    return F.cross_entropy(logits, labels)


class ClientModel:
    """A functional copy of `model` simulating the client's train-mode computation.

    Args:
        model: the global model (not modified).
        names: parameter names the update covers, in update order.
    """

    def __init__(self, model: nn.Module, names: Sequence[str]) -> None:
        self.device = model_device(model)
        # Running statistics the server sent (used only as GradInversion's prior).
        self.running_stats = running_statistics(model)
        net = copy.deepcopy(model)
        torch.func.replace_all_batch_norm_modules_(net)
        net.train()
        # The module's own parameters serve the plain-autograd path (no functional_call
        # re-parametrisation per call); the torch.func path substitutes `self.params`.
        for name, param in net.named_parameters():
            param.requires_grad_(name in names)
        self.net = net
        self.module_params = dict(net.named_parameters())
        # The plain-autograd path (one row) on the CPU: small convolutions as im2col + matmul,
        # sharing the parameters and every other module (see `Im2ColConv2d`).
        self.row_net = im2col_convolutions(net) if self.device.type == "cpu" else net
        # Several rows on the CPU: the row-aware copy (`attacks.rows`), when the model allows one.
        self.rows = row_network(net) if self.device.type == "cpu" else None
        self.bn_modules = [m for m in net.modules() if isinstance(m, _BN)]
        all_params = {name: p.detach() for name, p in net.named_parameters()}
        missing = [name for name in names if name not in all_params]
        if missing:
            raise FlauditError(
                f"the update names parameters the model does not have: {missing[:5]}; "
                "the update must be keyed by model.named_parameters() names"
            )
        self.names = tuple(names)
        self.params = all_params
        self._capture: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        for module in self.bn_modules:
            module.register_forward_hook(self._hook)

    def _hook(self, module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        if self._capture is not None:
            self._capture.append(batch_norm_statistics(inputs[0]))

    def logits(self, params: Mapping[str, torch.Tensor], images: torch.Tensor) -> torch.Tensor:
        return functional_call(self.net, dict(params), (images,))

    def _loss_and_stats(
        self, params: Mapping[str, torch.Tensor], images: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        self._capture = []
        try:
            loss = soft_cross_entropy(self.logits(params, images), labels)
            stats = self._capture
        finally:
            self._capture = None
        return loss, stats

    def gradient(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        params: Mapping[str, torch.Tensor] | None = None,
        autograd: bool = False,
    ) -> tuple[tuple[torch.Tensor, ...], list[tuple[torch.Tensor, torch.Tensor]]]:
        """The client's FedSGD gradient of the mean cross-entropy, and the BN input statistics.

        Differentiable w.r.t. `images` and `labels` (soft labels), under any outer transform
        (`autograd=False`, torch.func) or under plain autograd (`autograd=True`, create_graph).
        `params` are the global weights to differentiate at (default: the model's own); another
        round's, so that updates of different rounds are rows of one vmapped computation.
        """
        if autograd and params is None:
            self._capture = []
            try:
                loss = soft_cross_entropy(self.row_net(images), labels)
                stats = self._capture
            finally:
                self._capture = None
            grads = torch.autograd.grad(loss, [self.module_params[name] for name in self.names], create_graph=True)
            return tuple(grads), stats
        weights = self.params if params is None else params
        trainable = {name: weights[name] for name in self.names}
        frozen = {name: p for name, p in weights.items() if name not in trainable}

        def loss_fn(
            p: dict[str, torch.Tensor],
        ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
            return self._loss_and_stats({**frozen, **p}, images, labels)

        grads, stats = self._grad(loss_fn, trainable, autograd=autograd)
        return tuple(grads[name] for name in self.names), stats

    @staticmethod
    def _grad(
        loss_fn: Callable[..., tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]],
        params: dict[str, torch.Tensor],
        *,
        autograd: bool,
    ) -> tuple[dict[str, torch.Tensor], list[tuple[torch.Tensor, torch.Tensor]]]:
        if not autograd:
            return grad(loss_fn, has_aux=True)(params)
        # Plain autograd (one restart, no transform): fewer layers of dispatch than torch.func.
        leaves = {name: p if p.requires_grad else p.detach().requires_grad_(True) for name, p in params.items()}
        loss, stats = loss_fn(leaves)
        grads = torch.autograd.grad(loss, list(leaves.values()), create_graph=True)
        return dict(zip(leaves, grads, strict=True)), stats

    def row_gradients(
        self, images: torch.Tensor, labels: torch.Tensor, params: Mapping[str, torch.Tensor]
    ) -> tuple[tuple[torch.Tensor, ...], list[tuple[torch.Tensor, torch.Tensor]]]:
        """Per row, the FedSGD gradient at the row's weights: images (R, B, C, H, W), labels (R, B)
        or probabilities (R, B, K), `params` (R, ...) per name (in the autograd graph: each row's
        gradient is the gradient with respect to its slice). Returns (R, ...) gradients and the
        rows' BN input statistics ((R, C) means and variances). Needs `self.rows`."""
        net, state = self.rows  # type: ignore[misc]
        rows, count = images.shape[:2]
        state.rows, state.params, state.statistics = rows, params, []
        try:
            logits = net(images.flatten(0, 1))
            stats = state.statistics
        finally:
            state.params, state.statistics = {}, None
        flat = labels.flatten(0, 1)
        if flat.is_floating_point():
            per_image = -(flat * F.log_softmax(logits, dim=-1)).sum(dim=-1)
        else:
            per_image = F.cross_entropy(logits, flat, reduction="none")
        loss = per_image.view(rows, count).mean(dim=1).sum()  # each row's mean; rows do not interact
        grads = torch.autograd.grad(loss, [params[name] for name in self.names], create_graph=True)
        return tuple(grads), stats

    def row_fedavg_deltas(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        params: Mapping[str, torch.Tensor],
        *,
        local_steps: int,
        learning_rate: float,
        batch_size: int,
    ) -> tuple[tuple[torch.Tensor, ...], list[tuple[torch.Tensor, torch.Tensor]]]:
        """`fedavg_delta` per row (shapes as `row_gradients`)."""
        count = images.shape[1]
        batches = max(1, -(-count // batch_size))
        current = dict(params)
        first_stats: list[tuple[torch.Tensor, torch.Tensor]] = []
        for step in range(local_steps):
            index = step % batches
            window = slice(index * batch_size, (index + 1) * batch_size)
            grads, stats = self.row_gradients(images[:, window], labels[:, window], current)
            if step == 0:
                first_stats = stats
            current = {**current, **{name: current[name] - learning_rate * g for name, g in zip(self.names, grads, strict=True)}}
        return tuple(params[name] - current[name] for name in self.names), first_stats

    def fedavg_delta(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        local_steps: int,
        learning_rate: float,
        batch_size: int,
        params: Mapping[str, torch.Tensor] | None = None,
        autograd: bool = False,
    ) -> tuple[tuple[torch.Tensor, ...], list[tuple[torch.Tensor, torch.Tensor]]]:
        """`w_sent - w_after` for `local_steps` SGD steps over consecutive mini-batches of `images`.

        Step k uses mini-batch k mod ceil(B / batch_size) (one pass per epoch in a fixed order),
        the model of Geiping et al.'s FedAvg attack and breaching's multi-step objective.
        Returns the BN statistics of the first step's batch. `params` as in `gradient`.
        """
        count = images.shape[0]
        batches = max(1, -(-count // batch_size))
        weights = self.params if params is None else params
        start = {name: weights[name] for name in self.names}
        current = dict(start)
        frozen = {name: p for name, p in weights.items() if name not in start}
        first_stats: list[tuple[torch.Tensor, torch.Tensor]] = []
        for step in range(local_steps):
            index = step % batches
            xb = images[index * batch_size : (index + 1) * batch_size]
            yb = labels[index * batch_size : (index + 1) * batch_size]

            def loss_fn(
                p: dict[str, torch.Tensor], xb: torch.Tensor = xb, yb: torch.Tensor = yb
            ) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
                return self._loss_and_stats({**frozen, **p}, xb, yb)

            grads, stats = self._grad(loss_fn, current, autograd=autograd)
            if step == 0:
                first_stats = stats
            current = {name: current[name] - learning_rate * grads[name] for name in self.names}
        return tuple(start[name] - current[name] for name in self.names), first_stats


class Im2ColConv2d(nn.Module):
    """`conv` computed as unfold (im2col) and a matrix product when the unfolded input is small.

    On the CPU, a convolution of a few small images costs mostly oneDNN's per-call overhead,
    and gradient inversion runs about twenty of them per objective evaluation (forward,
    backward and the backward of the backward). As a product the same convolution is a handful
    of cheap ops: the sigmoid LeNet objective at one restart measured 1.8 against 3.5 ms per
    evaluation (`benchmarks/attack_speed.py`). Larger inputs keep oneDNN, which wins once there
    is arithmetic to do; under vmap (several rows) oneDNN's grouped kernels win too, so only the
    one-row path uses this. Equal to `conv` up to float rounding.
    """

    #: Above this many unfolded elements per call, oneDNN's convolution is used.
    max_unfolded = 1 << 17

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.conv = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = self.conv
        (kh, kw), (sh, sw), (ph, pw) = conv.kernel_size, conv.stride, conv.padding
        n, c, h, w = x.shape
        oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
        if n * c * kh * kw * oh * ow > self.max_unfolded:
            return conv(x)
        columns = F.unfold(x, (kh, kw), padding=(ph, pw), stride=(sh, sw))  # (N, C*kh*kw, L)
        out = (conv.weight.flatten(1) @ columns).view(n, -1, oh, ow)
        return out if conv.bias is None else out + conv.bias[:, None, None]


def im2col_convolutions(module: nn.Module) -> nn.Module:
    """`module` with its plain zero-padded 2-d convolutions wrapped in `Im2ColConv2d`.

    Containers are copied shallowly (their parameters, buffers and hooks are shared), every
    other module is the original, so the result computes with the same parameter tensors.
    """
    if isinstance(module, nn.Conv2d):
        plain = (
            module.groups == 1 and module.dilation == (1, 1) and module.padding_mode == "zeros"
            and isinstance(module.padding, tuple)
        )
        return Im2ColConv2d(module) if plain else module
    if not module._modules:
        return module
    clone = copy.copy(module)
    clone._modules = {  # type: ignore[assignment]
        name: None if child is None else im2col_convolutions(child) for name, child in module._modules.items()
    }
    return clone


def running_statistics(model: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(running_mean, running_var) of every BatchNorm layer that tracks them, in module order."""
    return [
        (m.running_mean.detach().clone(), m.running_var.detach().clone())
        for m in model.modules()
        if isinstance(m, _BN) and m.running_mean is not None and m.running_var is not None
    ]


def observed_target(view: ServerView) -> tuple[tuple[str, ...], tuple[torch.Tensor, ...]]:
    """What the attack matches: FedSGD's gradient, or FedAvg's weight change `w_sent - w_returned`."""
    device = model_device(view.model)
    names = tuple(view.update)
    if view.meta.protocol == "fedsgd":
        return names, tuple(view.update[name].detach().to(device) for name in names)
    sent = dict(view.model.named_parameters())
    return names, tuple((sent[name].detach() - view.update[name].detach().to(device)) for name in names)


def last_layer_gradient(view: ServerView) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(weight, bias) gradient of the classifier layer (the last nn.Linear with num_classes outputs).

    For FedAvg the gradient is the view's averaged `gradient()` (exact for one local step).
    """
    gradient = dict(zip(view.update, view.gradient(), strict=True))
    linears = [
        (name, module)
        for name, module in view.model.named_modules()
        if isinstance(module, nn.Linear) and module.out_features == view.meta.num_classes
    ]
    for name, module in reversed(linears):
        prefix = f"{name}." if name else ""
        if f"{prefix}weight" in gradient:
            bias = gradient.get(f"{prefix}bias") if module.bias is not None else None
            return gradient[f"{prefix}weight"], bias
    # Fall back on the last (K, F) tensor of the update.
    for value in reversed(list(gradient.values())):
        if value.dim() == 2 and value.shape[0] == view.meta.num_classes:
            return value, None
    raise FlauditError(
        f"no last linear layer with {view.meta.num_classes} outputs in the update; "
        "pass the labels (known-labels threat model) or use a model ending in nn.Linear"
    )


def normalization(view: ServerView) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, std) of the public input normalisation, shaped (C, 1, 1) on the model's device."""
    device = model_device(view.model)
    channels = view.meta.input_shape[0]

    def shaped(values: tuple[float, ...]) -> torch.Tensor:
        t = torch.as_tensor(values, dtype=torch.float32, device=device)
        if t.numel() == 1:
            t = t.expand(channels)
        return t.reshape(channels, 1, 1)

    return shaped(view.meta.data_mean), shaped(view.meta.data_std)


def to_unit_range(view: ServerView, normalized: torch.Tensor) -> torch.Tensor:
    """Undo the dataset normalisation and clamp to [0, 1]."""
    mean, std = normalization(view)
    return (normalized * std + mean).clamp(0.0, 1.0)


def num_images(view: ServerView) -> int:
    """How many images the update came from, by the protocol's shared counts."""
    meta = view.meta
    if meta.protocol == "fedsgd":
        return max(1, min(meta.num_examples, meta.batch_size) if meta.num_examples > 0 else meta.batch_size)
    seen = meta.local_steps * meta.batch_size
    return max(1, min(meta.num_examples, seen) if meta.num_examples > 0 else seen)


__all__ = [
    "ClientModel",
    "last_layer_gradient",
    "model_device",
    "normalization",
    "num_images",
    "observed_target",
    "running_statistics",
    "soft_cross_entropy",
    "to_unit_range",
]
