"""The honest-but-curious server: a wrapper around any Flower strategy that records every reply it receives.

It sees exactly what the wrapped strategy sees: the arrays sent (`configure_train`) and each
client's reply (`aggregate_train`). For the captured rounds and clients it writes a `ServerView`
(global state sent, update received, shared metadata) to the run directory, then hands the
replies on unchanged. It wraps a strategy the way Flower's own DP wrappers do
(`flwr.serverapp.strategy.DifferentialPrivacyServerSideFixedClipping`): every Strategy method
delegates to the inner strategy.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from flaudit.errors import FlauditError
from fl_sim.job import Job
from fl_sim.protocol import ARRAYS_KEY, ReplyMetadata, num_examples
from flaudit.rundir import CaptureKey


class CapturingStrategy(Strategy):
    """`strategy`, with a server that records the replies the scenario's capture selects.

    Args:
        strategy: the strategy that configures and aggregates (FedAvg, FedSGD, FedProx, ...).
        job: the run (scenario, model spec, run store).

    Attributes:
        strategy: the wrapped strategy.
        captured: the (round, client) of every ServerView written, in the order written.
    """

    def __init__(self, strategy: Strategy, job: Job) -> None:
        super().__init__()
        self.strategy = strategy
        self.job = job
        self.captured: list[CaptureKey] = []
        self._sent: dict[str, torch.Tensor] | None = None

    def __repr__(self) -> str:
        return f"CapturingStrategy({self.strategy!r})"

    def summary(self) -> None:
        """Log the inner strategy's summary."""
        self.strategy.summary()

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid) -> Iterable[Message]:
        """Keep the arrays sent (the global state of every view this round), then delegate."""
        self._sent = {k: v.clone() for k, v in arrays.to_torch_state_dict().items()}
        return self.strategy.configure_train(server_round, arrays, config, grid)

    def aggregate_train(self, server_round: int, replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Record each selected reply, in the order given, then let the inner strategy aggregate them all.

        Raises:
            FlauditError: a client failed. Flower's strategies would aggregate the others, but the
                run would then no longer be the one its seed describes.
        """
        replies = list(replies)
        failed = [m for m in replies if m.has_error()]
        if failed:
            reasons = "; ".join(sorted({m.error.reason for m in failed}))
            raise FlauditError(f"round {server_round}: {len(failed)} client(s) failed: {reasons}")
        for reply in replies:
            self._record(server_round, reply)
        return self.strategy.aggregate_train(server_round, replies)

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid) -> Iterable[Message]:
        """Delegate: evaluation replies carry no update to capture."""
        return self.strategy.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        """Delegate."""
        return self.strategy.aggregate_evaluate(server_round, replies)

    def _record(self, server_round: int, reply: Message) -> None:
        meta = ReplyMetadata.of_reply(reply.content)
        if not self.job.scenario.capture.wants(server_round, meta.partition):
            return
        if self._sent is None:
            raise FlauditError(f"round {server_round}: a reply arrived before any configure_train; nothing was sent to compare it with")
        returned = reply.content[ARRAYS_KEY].to_torch_state_dict()
        update = {k: returned[k] for k in meta.param_keys}
        # FedAvg returns the whole state: what is not trained (BatchNorm statistics) goes in the view as buffers.
        buffers = {k: v for k, v in returned.items() if k not in update} if meta.update_kind == "weights" else {}
        shared = self.job.shared_metadata(
            num_examples=num_examples(reply.content), batch_size=meta.batch_size,
            local_steps=meta.local_steps, learning_rate=meta.learning_rate,
        )
        key = CaptureKey(server_round, meta.partition)
        self.job.store.captures.write_view(key, spec=self.job.spec, global_state=self._sent, update=update, buffers=buffers, meta=shared)
        self.captured.append(key)
