"""The closed-form baseline: a fully connected first layer with bias leaks its input exactly.

For `z = W x + b` and any loss, `dL/dW[i] = dL/dz_i x^T` and `dL/db[i] = dL/dz_i`, so for a
single image `x = dW[i] / db[i]` for every row with `db[i] != 0` (Phong et al. 2018; the
"analytic" attack of breaching). For a batch, rows mix the images; the rows with the largest
|db| are returned, exact only where one image dominates a row.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch import nn

from attacks.base import Attack, Reconstruction, ServerView
from attacks.functional import model_device, num_images, to_unit_range
from attacks.labels import recover_labels
from attacks.params import AnalyticLinearParams
from flaudit.errors import FlauditError


def first_linear_layer(model: nn.Module, input_numel: int) -> str:
    """Name of the module that is the model's first parametrised layer, if it is nn.Linear on the flat input."""
    first_param = next(iter(model.named_parameters()), None)
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            prefix = f"{name}." if name else ""
            if (
                first_param is not None
                and first_param[0] in (f"{prefix}weight", f"{prefix}bias")
                and module.in_features == input_numel
                and module.bias is not None
            ):
                return name
            break
    raise FlauditError(
        "analytic_linear needs a model whose first layer is nn.Linear with bias on the flattened "
        f"input ({input_numel} features); this model starts otherwise: use dlg or inverting_gradients"
    )


def invert_linear(weight_grad: torch.Tensor, bias_grad: torch.Tensor, *, count: int = 1) -> torch.Tensor:
    """`dW[i] / db[i]` for the `count` rows with the largest |db[i]| (largest first).

    Args:
        weight_grad: (out, in) gradient of the layer's weight.
        bias_grad: (out,) gradient of its bias.
        count: how many inputs to return.

    Returns:
        (count, in) recovered inputs.
    """
    order = torch.argsort(bias_grad.abs(), descending=True)[:count]
    if bias_grad[order[0]].abs() == 0:
        raise FlauditError("the first layer's bias gradient is zero everywhere: nothing to invert")
    return weight_grad[order] / bias_grad[order].unsqueeze(1)


@dataclass(frozen=True)
class AnalyticLinear(AnalyticLinearParams, Attack):
    """Exact recovery of one input from a fully connected first layer with bias; no hyperparameters to tune."""

    def reconstruct(
        self,
        view: ServerView,
        *,
        generator: torch.Generator,
        labels: torch.Tensor | None = None,
    ) -> Reconstruction:
        start = time.perf_counter()
        shape = view.meta.input_shape
        layer = self.layer or first_linear_layer(view.model, math.prod(shape))
        prefix = f"{layer}." if layer else ""
        gradient = dict(zip(view.update, view.gradient(), strict=True))
        if f"{prefix}weight" not in gradient or f"{prefix}bias" not in gradient:
            raise FlauditError(f"the update has no gradient for layer {layer!r}'s weight and bias")
        known = labels is not None
        if labels is not None:
            y = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
            count = len(y)
        else:
            count = num_images(view)
            y = recover_labels(view, count)
        flat = invert_linear(gradient[f"{prefix}weight"].detach(), gradient[f"{prefix}bias"].detach(), count=count)
        images = to_unit_range(view, flat.reshape(count, *shape).to(model_device(view.model)))
        return Reconstruction(
            images=images.cpu(),
            labels=y.cpu(),
            restart_losses=(0.0,),
            wall_time_s=time.perf_counter() - start,
            iterations=0,
            labels_known=known,
        )


__all__ = ["AnalyticLinear", "first_linear_layer", "invert_linear"]
