"""FedSGD as a Flower strategy: clients return one batch's gradient, the server takes the SGD step."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg


class FedSGD(FedAvg):
    """Federated SGD (McMahan et al. 2017, the baseline of FedAvg).

    Sampling, messages and the weighted average are FedAvg's; what the clients return, and so
    what FedAvg averages, is a gradient of the trainable tensors. The new global state is
    ``sent - learning_rate * mean_gradient`` for those tensors; any other array (BatchNorm
    statistics) stays as sent.

    Args:
        learning_rate: the server's step size (flaudit uses the clients' learning rate).
        **fedavg_args: FedAvg's arguments (fraction_train, min_train_nodes, arrayrecord_key, ...).
    """

    def __init__(self, learning_rate: float, **fedavg_args: Any) -> None:
        if not learning_rate > 0:
            raise ValueError(f"FedSGD: learning_rate must be positive, got {learning_rate}")
        super().__init__(**fedavg_args)
        self.learning_rate = learning_rate
        self._sent: dict[str, torch.Tensor] | None = None

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid) -> Iterable[Message]:
        """Keep the state sent (the step starts from it), then configure as FedAvg does."""
        self._sent = {k: v.clone() for k, v in arrays.to_torch_state_dict().items()}
        return super().configure_train(server_round, arrays, config, grid)

    def aggregate_train(self, server_round: int, replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Average the gradients as FedAvg averages arrays, and return the state after the SGD step."""
        mean_gradient, metrics = super().aggregate_train(server_round, replies)
        if mean_gradient is None:
            return None, metrics
        if self._sent is None:
            raise RuntimeError(f"FedSGD round {server_round}: aggregate_train before configure_train; there is no state to step from")
        return self.sgd_step(self._sent, mean_gradient, self.learning_rate), metrics

    @staticmethod
    def sgd_step(sent: dict[str, torch.Tensor], mean_gradient: ArrayRecord, learning_rate: float) -> ArrayRecord:
        """``sent - learning_rate * gradient`` for the tensors the gradient covers; the rest as sent."""
        grads = mean_gradient.to_torch_state_dict()
        unknown = sorted(set(grads) - set(sent))
        if unknown:
            raise ValueError(f"FedSGD: gradient for tensors the server did not send: {', '.join(unknown)}")
        return ArrayRecord({k: (v - learning_rate * grads[k] if k in grads else v) for k, v in sent.items()})
