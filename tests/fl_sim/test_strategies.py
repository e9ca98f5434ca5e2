"""The server's own strategies: FedSGD's step by hand, and seeded sampling that keeps its selection."""

from __future__ import annotations

import random

import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp.strategy import FedAvg, Strategy

from flaudit.errors import FlauditError
from fl_sim.fedsgd import FedSGD
from fl_sim.protocol import ARRAYS_KEY, CONFIG_KEY, METRICS_KEY, NUM_EXAMPLES_KEY
from fl_sim.sampling import SeededSampling, clients_per_round

pytestmark = pytest.mark.usefixtures("task_identity")


def _reply(to: Message, arrays: dict[str, list[float]], examples: int) -> Message:
    content = RecordDict({
        ARRAYS_KEY: ArrayRecord({k: torch.tensor(v) for k, v in arrays.items()}),
        METRICS_KEY: MetricRecord({NUM_EXAMPLES_KEY: examples}),
    })
    return Message(content, reply_to=to)


# --- FedSGD -----------------------------------------------------------------------------------------


def test_fedsgd_steps_from_the_sent_state_by_the_weighted_mean_gradient(list_grid):
    sent = {"w": torch.tensor([1.0, 2.0]), "b": torch.tensor([0.5]), "bn.running_mean": torch.tensor([3.0])}
    strategy = FedSGD(0.5, min_train_nodes=2, min_available_nodes=2)
    messages = sorted(strategy.configure_train(1, ArrayRecord(sent), ConfigRecord(), list_grid([7, 8])), key=lambda m: m.metadata.dst_node_id)
    replies = [
        _reply(messages[0], {"w": [1.0, 0.0], "b": [2.0]}, examples=1),
        _reply(messages[1], {"w": [0.0, 4.0], "b": [-2.0]}, examples=3),
    ]
    arrays, metrics = strategy.aggregate_train(1, replies)
    # Mean gradient, weighted 1:3 by examples: w (1*[1, 0] + 3*[0, 4]) / 4 = [0.25, 3]; b (2 - 6) / 4 = -1.
    # Step with lr 0.5: w [1 - 0.125, 2 - 1.5] = [0.875, 0.5]; b 0.5 + 0.5 = 1. The buffer has no gradient: as sent.
    state = arrays.to_torch_state_dict()
    assert torch.equal(state["w"], torch.tensor([0.875, 0.5]))
    assert torch.equal(state["b"], torch.tensor([1.0]))
    assert torch.equal(state["bn.running_mean"], torch.tensor([3.0]))
    assert list(state) == list(sent) and metrics is not None


def test_fedsgd_refuses_a_gradient_for_a_tensor_it_did_not_send():
    with pytest.raises(ValueError, match="did not send: extra"):
        FedSGD.sgd_step({"w": torch.zeros(1)}, ArrayRecord({"extra": torch.zeros(1)}), 0.1)
    with pytest.raises(ValueError, match="learning_rate must be positive"):
        FedSGD(0.0)


# --- seeded sampling --------------------------------------------------------------------------------


class _Recorder(Strategy):
    """A strategy that trains every node the grid lists and records the order of the replies it gets."""

    def __init__(self) -> None:
        self.reply_order: list[int] = []

    def configure_train(self, server_round, arrays, config, grid):  # type: ignore[no-untyped-def]
        nodes = list(grid.get_node_ids())
        random.Random(server_round).shuffle(nodes)  # as Flower's sampling would: the order is no promise
        return [Message(RecordDict({ARRAYS_KEY: arrays, CONFIG_KEY: config}), dst_node_id=n, message_type=MessageType.TRAIN) for n in nodes]

    def aggregate_train(self, server_round, replies):  # type: ignore[no-untyped-def]
        self.reply_order = [m.metadata.src_node_id for m in replies]
        return None, None

    def configure_evaluate(self, server_round, arrays, config, grid):  # type: ignore[no-untyped-def]
        return []

    def aggregate_evaluate(self, server_round, replies):  # type: ignore[no-untyped-def]
        return None

    def summary(self) -> None:
        pass


def _partitions_chosen(sampling: SeededSampling, rounds: int) -> list[list[int]]:
    return [[sampling.partitions[node] for node in sampling.choose(r)] for r in range(1, rounds + 1)]


def test_seeded_sampling_keeps_the_selection_of_earlier_runs():
    # Partitions per round that earlier flaudit runs trained (and captured), from their history.json:
    # 5 clients, fraction 0.6, seed 11; and 5 clients, fraction 0.4, seed 3.
    three = SeededSampling(_Recorder(), partitions={10 + p: p for p in range(5)}, per_round=clients_per_round(0.6, 5), seed=11)
    assert _partitions_chosen(three, 4) == [[0, 1, 3], [1, 2, 3], [0, 1, 2], [0, 1, 4]]
    two = SeededSampling(_Recorder(), partitions={10 + p: p for p in range(5)}, per_round=clients_per_round(0.4, 5), seed=3)
    assert _partitions_chosen(two, 3) == [[2, 4], [2, 4], [0, 1]]


def test_the_seed_decides_not_the_node_ids():
    partitions = list(range(6))
    first = SeededSampling(_Recorder(), partitions={1000 + p: p for p in partitions}, per_round=2, seed=5)
    shuffled_ids = random.Random(0).sample(range(10**6), 6)
    second = SeededSampling(_Recorder(), partitions=dict(zip(shuffled_ids, partitions)), per_round=2, seed=5)
    assert _partitions_chosen(first, 20) == _partitions_chosen(second, 20)
    other_seed = SeededSampling(_Recorder(), partitions={1000 + p: p for p in partitions}, per_round=2, seed=6)
    assert _partitions_chosen(other_seed, 20) != _partitions_chosen(first, 20)
    assert clients_per_round(0.01, 6) == 1 and clients_per_round(1.0, 6) == 6


def test_sampling_shows_the_inner_strategy_the_chosen_nodes_and_orders_messages_and_replies(list_grid):
    inner = _Recorder()
    nodes = {40: 3, 41: 0, 42: 2, 43: 1}
    sampling = SeededSampling(inner, partitions=nodes, per_round=3, seed=1)
    chosen = sampling.choose(2)
    messages = list(sampling.configure_train(2, ArrayRecord(), ConfigRecord(), list_grid(nodes)))
    assert [m.metadata.dst_node_id for m in messages] == chosen
    assert [nodes[n] for n in chosen] == sorted(nodes[n] for n in chosen)
    replies = [Message(RecordDict(), reply_to=m) for m in reversed(messages)]
    sampling.aggregate_train(2, replies)
    assert inner.reply_order == chosen


def test_a_flower_fedavg_inside_trains_exactly_the_chosen_nodes(list_grid):
    nodes = {n: p for p, n in enumerate((17, 3, 99, 54, 8))}
    sampling = SeededSampling(FedAvg(fraction_train=1.0, min_train_nodes=3, min_available_nodes=3), partitions=nodes, per_round=3, seed=11)
    saved = random.getstate()
    try:
        for server_round in (1, 2, 3):
            random.seed(server_round)  # Flower's FedAvg draws from the global `random`: it must not matter
            messages = list(sampling.configure_train(server_round, ArrayRecord(), ConfigRecord(), list_grid(nodes)))
            assert [m.metadata.dst_node_id for m in messages] == sampling.choose(server_round)
    finally:
        random.setstate(saved)


def test_an_inner_strategy_that_samples_on_its_own_is_refused(list_grid):
    nodes = {n: n for n in range(4)}
    sampling = SeededSampling(FedAvg(fraction_train=0.5, min_train_nodes=1, min_available_nodes=1), partitions=nodes, per_round=3, seed=0)
    with pytest.raises(FlauditError, match=r"not the 3 chosen .*fraction_train=1\.0, min_train_nodes=3"):
        sampling.configure_train(1, ArrayRecord(), ConfigRecord(), list_grid(nodes))
    with pytest.raises(ValueError, match="between 1 and the 4 nodes"):
        SeededSampling(FedAvg(), partitions=nodes, per_round=5, seed=0)
    with pytest.raises(ValueError, match="same partition"):
        SeededSampling(FedAvg(), partitions={1: 0, 2: 0}, per_round=1, seed=0)
