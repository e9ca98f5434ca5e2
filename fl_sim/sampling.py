"""Seeded client sampling as a wrapper around any Flower strategy.

Flower's strategies sample with the global `random` over node ids, and node ids are random per
run: the same scenario would train different clients each time. `SeededSampling` makes the
scenario's seed decide. Each round it draws the clients to train over the partition ids, with a
generator seeded by (seed, round), and shows the inner strategy a view of the Grid that holds only
those nodes; the inner strategy, configured to train every node it sees, builds its messages as
usual. Replies reach the inner strategy in partition order, as arrival order varies and float
sums depend on order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from flaudit.errors import FlauditError
from flaudit.seeds import chosen_partitions, clients_per_round

if TYPE_CHECKING:
    from flwr.supercore.run import Run


class ChosenNodesGrid(Grid):
    """A view of `grid` whose `get_node_ids` lists only `node_ids`; everything else is `grid`'s.

    Args:
        grid: the Grid of the run.
        node_ids: the nodes a strategy may sample from.
    """

    def __init__(self, grid: Grid, node_ids: Sequence[int]) -> None:
        self.grid = grid
        self.node_ids = tuple(node_ids)

    def set_run(self, run: "Run") -> None:
        """Delegate."""
        self.grid.set_run(run)

    @property
    def run(self) -> "Run":
        """The run of the underlying grid."""
        return self.grid.run

    def create_message(
        self, content: RecordDict, message_type: str, dst_node_id: int, group_id: str, ttl: float | None = None
    ) -> Message:
        """Delegate."""
        return self.grid.create_message(content, message_type, dst_node_id, group_id, ttl)

    def get_node_ids(self) -> Iterable[int]:
        """The chosen nodes only."""
        return list(self.node_ids)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        """Delegate."""
        return self.grid.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        """Delegate."""
        return self.grid.pull_messages(message_ids)

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        """Delegate."""
        return self.grid.send_and_receive(messages, timeout=timeout)


class SeededSampling(Strategy):
    """`strategy`, training a seeded choice of `per_round` clients each round.

    Round r trains the partitions `flaudit.seeds.chosen_partitions` draws for it: the same seed
    picks the same partitions whatever node ids Flower assigned. Evaluation is the inner strategy's own.

    The inner strategy must train every node it is shown: e.g. FedAvg with ``fraction_train=1.0``
    and ``min_train_nodes = min_available_nodes = per_round``; any other choice raises.

    Args:
        strategy: the strategy that configures and aggregates.
        partitions: node id -> partition id, from the roll call at the start of the run.
        per_round: how many clients train each round (see `clients_per_round`).
        seed: the scenario's seed.
    """

    def __init__(self, strategy: Strategy, *, partitions: Mapping[int, int], per_round: int, seed: int) -> None:
        super().__init__()
        if len(set(partitions.values())) != len(partitions):
            raise ValueError(f"SeededSampling: two nodes hold the same partition: {dict(partitions)}")
        if not 1 <= per_round <= len(partitions):
            raise ValueError(f"SeededSampling: per_round must be between 1 and the {len(partitions)} nodes, got {per_round}")
        self.strategy = strategy
        self.partitions = dict(partitions)
        self.per_round = per_round
        self.seed = seed

    def __repr__(self) -> str:
        return f"SeededSampling({self.strategy!r}, per_round={self.per_round}, seed={self.seed})"

    def summary(self) -> None:
        """Log the inner strategy's summary."""
        self.strategy.summary()

    def choose(self, server_round: int) -> list[int]:
        """The node ids that train in `server_round`, in partition order."""
        node_of = {partition: node for node, partition in self.partitions.items()}
        return [node_of[p] for p in chosen_partitions(self.seed, server_round, node_of, self.per_round)]

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid) -> Iterable[Message]:
        """The inner strategy's train messages for this round's chosen nodes, in partition order."""
        chosen = self.choose(server_round)
        messages = list(self.strategy.configure_train(server_round, arrays, config, ChosenNodesGrid(grid, chosen)))
        addressed = sorted(m.metadata.dst_node_id for m in messages)
        if addressed != sorted(chosen):
            raise FlauditError(
                f"round {server_round}: {self.strategy!r} addressed nodes {addressed}, not the {len(chosen)} chosen {sorted(chosen)}; "
                f"configure it to train every node it is shown (fraction_train=1.0, min_train_nodes={self.per_round})"
            )
        return sorted(messages, key=lambda m: self.partitions[m.metadata.dst_node_id])

    def aggregate_train(self, server_round: int, replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Delegate, with the replies in partition order."""
        return self.strategy.aggregate_train(server_round, self._in_partition_order(replies))

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid) -> Iterable[Message]:
        """Delegate, with the whole grid."""
        return self.strategy.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        """Delegate, with the replies in partition order."""
        return self.strategy.aggregate_evaluate(server_round, self._in_partition_order(replies))

    def _in_partition_order(self, replies: Iterable[Message]) -> list[Message]:
        # By the sender's partition, from the roll call: an error reply has no content to read it from.
        return sorted(replies, key=lambda m: self.partitions[m.metadata.src_node_id])


__all__ = ["ChosenNodesGrid", "SeededSampling", "clients_per_round"]
