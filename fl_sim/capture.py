"""The honest-but-curious server: a FedAvg strategy that records every reply before aggregating it.

It sees exactly what Flower's FedAvg sees: the arrays it sends (`configure_train`) and each
client's reply (`aggregate_train`). For the captured rounds and clients it writes a
`ServerView` (global state sent, update received, shared metadata) to the run directory.
It also makes sampling reproducible (a seeded draw over clients ordered by partition id)
and turns FedSGD gradients into the server's SGD step.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

from flaudit.errors import FlauditError
from fl_sim.job import Job
from fl_sim.protocol import ARRAYS_KEY, ReplyMetadata, num_examples
from fl_sim.run_store import CaptureKey
from fl_sim.training import derive_seed


class CapturingFedAvg(FedAvg):
    """FedAvg (or FedSGD) whose server records what it receives for the audit.

    Args:
        job: the run (scenario, model spec, run store).
        partitions: node id -> partition id, from the roll call at the start of the run.
    """

    def __init__(self, job: Job, partitions: dict[int, int]) -> None:
        fed = job.scenario.federation
        per_round = max(1, round(fed.fraction * fed.clients))
        super().__init__(
            fraction_train=fed.fraction, min_train_nodes=per_round, min_available_nodes=fed.clients,
        )
        self.job = job
        self.partitions = partitions
        self.per_round = per_round
        self._sent: dict[str, torch.Tensor] = {}
        self.captured: list[CaptureKey] = []

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid) -> Iterable[Message]:
        self._sent = {k: v.clone() for k, v in arrays.to_torch_state_dict().items()}
        # Flower's own sampling draws from the global `random` over node ids, which are random per
        # run; drawing over partition ids with a per-round seed makes the scenario's seed decide.
        by_partition = sorted(self.partitions.items(), key=lambda item: item[1])
        rng = random.Random(derive_seed(self.job.scenario.federation.seed, "sample", server_round))
        chosen = sorted(rng.sample(by_partition, self.per_round), key=lambda item: item[1])
        config["server-round"] = server_round
        record = RecordDict({self.arrayrecord_key: arrays, self.configrecord_key: config})
        return self._construct_messages(record, [node for node, _ in chosen], MessageType.TRAIN)

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid) -> Iterable[Message]:
        # The server evaluates centrally on the held-out split (`evaluate_fn`); clients keep no test data.
        return []

    def aggregate_train(self, server_round: int, replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)
        failed = [m for m in replies if m.has_error()]
        if failed:
            reasons = "; ".join(sorted({m.error.reason for m in failed}))
            raise FlauditError(f"round {server_round}: {len(failed)} client(s) failed: {reasons}")
        # Arrival order varies; aggregate in partition order so sums are bit-for-bit reproducible.
        replies.sort(key=lambda m: ReplyMetadata.of_reply(m.content).partition)
        for reply in replies:
            self._capture(server_round, reply)
        arrays, metrics = super().aggregate_train(server_round, replies)
        if arrays is not None and self.job.scenario.federation.protocol == "fedsgd":
            arrays = self._sgd_step(arrays)
        return arrays, metrics

    def _sgd_step(self, mean_gradient: ArrayRecord) -> ArrayRecord:
        """FedSGD: the server applies the averaged gradient with the clients' learning rate."""
        lr = self.job.scenario.federation.learning_rate
        grads = mean_gradient.to_torch_state_dict()
        state = {k: (v - lr * grads[k] if k in grads else v) for k, v in self._sent.items()}
        return ArrayRecord(state)

    def _capture(self, server_round: int, reply: Message) -> None:
        meta = ReplyMetadata.of_reply(reply.content)
        if not self.job.scenario.capture.wants(server_round, meta.partition):
            return
        returned = reply.content[ARRAYS_KEY].to_torch_state_dict()
        update = {k: returned[k] for k in meta.param_keys}
        buffers = {k: v for k, v in returned.items() if k not in update} if meta.update_kind == "weights" else {}
        shared = self.job.shared_metadata(
            num_examples=num_examples(reply.content), batch_size=meta.batch_size,
            local_steps=meta.local_steps, learning_rate=meta.learning_rate,
        )
        key = CaptureKey(server_round, meta.partition)
        self.job.store.write_view(key, spec=self.job.spec, global_state=self._sent, update=update, buffers=buffers, meta=shared)
        self.captured.append(key)
