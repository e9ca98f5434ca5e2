"""Many candidate rows through one model without vmap: the client's computation as one plain-autograd graph.

An attack evaluates its objective for R rows at once (restarts, clients, rounds), each row a
candidate batch with its own observed update and, across rounds, its own global weights. Under
`torch.func.vmap` every op of the forward, the backward and the backward of the backward is
re-dispatched through batching rules; on the CPU that overhead is most of an evaluation of a
small model. `row_network` instead swaps the model's parametrised layers for row-aware ones:
the rows travel as one batch of R*B images through every other module unchanged, and each
row-aware layer applies row r's weights to row r's images (an im2col product batched over rows
for convolutions, a batched matmul for linear layers, per-row statistics for batch norm). The
weights are (R, ...) tensors, so `torch.autograd.grad` of the rows' summed losses gives each
row its own gradient, and a second `grad` the objective's gradient: 1.7x faster than vmap for
the sigmoid LeNet at 8 rows (`benchmarks/attack_speed.py`).

Models with a parametrised layer of another kind return None, and the attacks use vmap.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

_BN = (nn.BatchNorm1d, nn.BatchNorm2d)


@dataclass
class RowState:
    """What the row-aware layers read during one call: the rows' weights, and where BN statistics go."""

    rows: int = 1
    params: Mapping[str, torch.Tensor] = field(default_factory=dict)
    statistics: list[tuple[torch.Tensor, torch.Tensor]] | None = None


class _RowLayer(nn.Module):
    def __init__(self, layer: nn.Module, prefix: str, state: RowState) -> None:
        super().__init__()
        self.layer = layer
        self.prefix = prefix
        self.state = state

    def weight_and_bias(self) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        params = self.state.params
        return params.get(f"{self.prefix}weight"), params.get(f"{self.prefix}bias")


class RowConv2d(_RowLayer):
    """A zero-padded, ungrouped Conv2d with per-row weights (R, O, C, kh, kw): im2col, then bmm over rows."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv, rows = self.layer, self.state.rows
        weight, bias = self.weight_and_bias()
        (kh, kw), (sh, sw), (ph, pw) = conv.kernel_size, conv.stride, conv.padding
        n, c, h, w = x.shape
        oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
        per_row = n // rows
        columns = F.unfold(x, (kh, kw), padding=(ph, pw), stride=(sh, sw))  # (R*B, C*kh*kw, L)
        columns = columns.view(rows, per_row, c * kh * kw, oh * ow).transpose(1, 2).reshape(rows, c * kh * kw, per_row * oh * ow)
        out = torch.bmm(weight.flatten(2), columns)  # (R, O, B*L)
        if bias is not None:
            out = out + bias[:, :, None]
        return out.view(rows, -1, per_row, oh * ow).transpose(1, 2).reshape(n, -1, oh, ow)


class RowLinear(_RowLayer):
    """A Linear with per-row weights (R, O, F): a batched matmul over rows."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.weight_and_bias()
        rows = self.state.rows
        out = torch.bmm(x.reshape(rows, -1, x.shape[-1]), weight.transpose(1, 2))
        if bias is not None:
            out = out + bias[:, None, :]
        return out.reshape(*x.shape[:-1], -1)


class RowBatchNorm(_RowLayer):
    """Train-mode batch norm whose statistics are each row's own batch's, with per-row affine weights."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.weight_and_bias()
        rows, n, c = self.state.rows, x.shape[0], x.shape[1]
        grouped = x.reshape(rows, n // rows, c, -1)
        mean = grouped.mean(dim=(1, 3))
        var = (grouped - mean[:, None, :, None]).pow(2).mean(dim=(1, 3))  # biased, as BN normalises
        if self.state.statistics is not None:
            self.state.statistics.append((mean, var))
        out = (grouped - mean[:, None, :, None]) * torch.rsqrt(var + self.layer.eps)[:, None, :, None]
        if weight is not None:
            out = out * weight[:, None, :, None]
        if bias is not None:
            out = out + bias[:, None, :, None]
        return out.reshape(x.shape)


def row_network(net: nn.Module) -> tuple[nn.Module, RowState] | None:
    """`net` with its Conv2d, Linear and BatchNorm layers row-aware, or None if it has other parametrised layers.

    Containers are copied shallowly and every other module is shared, so the result runs the
    model's own forward code.
    """
    state = RowState()
    for name, module in net.named_modules():
        if any(p is not None for p in module._parameters.values()) and _row_layer(module) is None:
            return None

    def convert(module: nn.Module, prefix: str) -> nn.Module:
        kind = _row_layer(module)
        if kind is not None:
            return kind(module, prefix, state)
        if not module._modules:
            return module
        clone = copy.copy(module)
        clone._modules = {  # type: ignore[assignment]
            name: None if child is None else convert(child, f"{prefix}{name}.") for name, child in module._modules.items()
        }
        return clone

    return convert(net, ""), state


def _row_layer(module: nn.Module) -> type[_RowLayer] | None:
    if isinstance(module, nn.Conv2d):
        plain = module.groups == 1 and module.dilation == (1, 1) and module.padding_mode == "zeros" and isinstance(module.padding, tuple)
        return RowConv2d if plain else None
    if isinstance(module, nn.Linear):
        return RowLinear
    if isinstance(module, _BN):
        return RowBatchNorm
    return None


__all__ = ["RowBatchNorm", "RowConv2d", "RowLinear", "RowState", "row_network"]
