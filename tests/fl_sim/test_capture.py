"""The capture boundary: a ServerView cannot hold the client's data, it records the defended update exactly,
and it wraps any Flower strategy without changing what that strategy computes."""

from __future__ import annotations

import dataclasses
import typing

import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.serverapp.strategy import FedAdagrad, FedProx

from attacks.base import ServerView, SharedMetadata
from defenses import apply_defenses
from fl_sim.capture import CapturingStrategy
from fl_sim.client_app import build_client_app
from fl_sim.job import AppSettings, load_job
from flaudit.models import build_model
from flaudit.rundir import CaptureKey
from flaudit.seeds import derive_seed
from fl_sim.protocol import ARRAYS_KEY, CONFIG_KEY, PARTITION_KEY, SERVER_ROUND_KEY
from fl_sim.run_store import RunStore
from fl_sim.scenario import dump_scenario, load_scenario
from fl_sim.server_app import build_strategy
from fl_sim.training import batch_gradient, normalize, sample_batch

pytestmark = pytest.mark.usefixtures("task_identity")

NODES = {100 + p: p for p in range(3)}  # node id -> partition id, as the roll call finds them

SCENARIO = """
name: capture-test
federation: {clients: 3, rounds: 1, protocol: PROTOCOL, batch_size: 4, learning_rate: 0.1, seed: 7, local_steps: 2}
data: {dataset: digits, image_size: 8}
model: {name: lenet}
defenses:
  - {name: prune, params: {ratio: 0.5}}
  - {name: gaussian, params: {sigma: 0.01}}
capture: {rounds: [1], clients: [0, 2]}
"""


def _job(tmp_path, write_scenario, protocol="fedsgd", drop_noise=False):
    text = SCENARIO.replace("PROTOCOL", protocol)
    if drop_noise:
        text = text.replace("  - {name: gaussian, params: {sigma: 0.01}}\n", "")
    path = write_scenario(text)
    store = RunStore(tmp_path / "run")
    store.create(dump_scenario(load_scenario(path)), seed=7)
    settings = AppSettings(str(store.scenario_path), str(store.root))
    return settings, load_job(settings)


def _train_message(job, node_id: int) -> Message:
    model = build_model(job.spec, seed=1)
    content = RecordDict({ARRAYS_KEY: ArrayRecord(model.state_dict()), CONFIG_KEY: ConfigRecord({SERVER_ROUND_KEY: 1})})
    return Message(content, dst_node_id=node_id, message_type=MessageType.TRAIN)


def _context(partition: int) -> Context:
    return Context(run_id=1, node_id=100 + partition, node_config={PARTITION_KEY: partition, "num-partitions": 3},
                   state=RecordDict(), run_config={})


def test_server_view_has_no_field_for_images_or_labels():
    fields = {f.name: f.type for f in dataclasses.fields(ServerView)}
    assert set(fields) == {"round", "client", "model", "update", "meta", "buffers"}
    meta_hints = typing.get_type_hints(SharedMetadata)
    # Every shared metadata field is a scalar or a tuple of scalars: nothing can carry an image or a label vector.
    for name, hint in meta_hints.items():
        assert "Tensor" not in str(hint), name
    for forbidden in ("images", "labels", "inputs", "targets", "indices"):
        assert forbidden not in fields and forbidden not in meta_hints


def test_captured_fedsgd_update_equals_the_clients_defended_gradient_bit_for_bit(tmp_path, write_scenario, list_grid):
    settings, job = _job(tmp_path, write_scenario)
    app = build_client_app(settings)
    replies, sent = [], build_model(job.spec, seed=1).state_dict()
    for partition in (2, 0, 1):  # out of order on purpose: the sampling hands them on in partition order
        msg = _train_message(job, 100 + partition)
        replies.append(app(msg, _context(partition)))
    strategy, capture = build_strategy(job, NODES)
    strategy.configure_train(1, ArrayRecord(sent), ConfigRecord(), list_grid(NODES))
    strategy.aggregate_train(1, replies)
    assert capture.captured == [CaptureKey(1, 0), CaptureKey(1, 2)]
    job.store.seal(job.store.files("captures", "ground_truth"))  # as the ServerApp does after its rounds

    for partition in (0, 2):
        view = job.store.captures.read_view(CaptureKey(1, partition))
        # Recompute the client's defended gradient independently.
        model = build_model(job.spec)
        model.load_state_dict(sent)
        fed = job.scenario.federation
        generator = torch.Generator().manual_seed(derive_seed(fed.seed, "client", 1, partition))
        index = sample_batch(job.partitions[partition], batch_size=fed.batch_size, generator=generator)
        images, labels = job.bundle.images(index)
        grads, _ = batch_gradient(model, normalize(images, job.bundle.mean, job.bundle.std), labels)
        defended = apply_defenses(
            list(grads.values()), job.scenario.defense_list(),
            generator=torch.Generator().manual_seed(derive_seed(fed.seed, "defense", 1, partition)),
        )
        assert list(view.update) == [n for n, _ in model.named_parameters()]
        for (name, got), want in zip(view.update.items(), defended):
            assert torch.equal(got, want), name
        assert not any(torch.equal(got, g) for got, g in zip(view.update.values(), grads.values())), "defenses were not applied"
        # The global model in the view is the one the server sent.
        for name, value in view.model.state_dict().items():
            assert torch.equal(value, sent[name]), name
        assert view.meta.protocol == "fedsgd" and view.meta.batch_size == 4 and view.meta.num_examples == 4
        # The vault holds the true batch, separately.
        truth = job.store.vault.read(CaptureKey(1, partition))
        assert torch.equal(truth.images, images) and torch.equal(truth.labels, labels)
    assert not job.store.captures.capture_path(CaptureKey(1, 1)).exists(), "client 1 is not in capture.clients"


def test_fedavg_capture_holds_new_weights_and_defends_the_weight_change(tmp_path, write_scenario, list_grid):
    settings, job = _job(tmp_path, write_scenario, protocol="fedavg", drop_noise=True)
    app = build_client_app(settings)
    sent = build_model(job.spec, seed=1).state_dict()
    replies = [app(_train_message(job, 100 + p), _context(p)) for p in range(3)]
    strategy, _ = build_strategy(job, NODES)
    strategy.configure_train(1, ArrayRecord(sent), ConfigRecord(), list_grid(NODES))
    arrays, _ = strategy.aggregate_train(1, replies)
    job.store.seal(job.store.files("captures", "ground_truth"))
    view = job.store.captures.read_view(CaptureKey(1, 0))
    assert view.meta.protocol == "fedavg" and view.meta.local_steps == 2
    # prune(0.5) acts on the weight change (returned - sent), not on the weights: exactly half of
    # each tensor's change is zero, i.e. those weights come back exactly as sent.
    for name, value in view.update.items():
        change = (value - sent[name]).flatten()
        assert int((change == 0).sum()) >= change.numel() // 2, name
        assert int((change != 0).sum()) > 0, name
    assert arrays is not None and set(arrays.keys()) == set(sent.keys())


@pytest.mark.parametrize("make_inner", [
    lambda: FedProx(proximal_mu=0.1, fraction_evaluate=0.0),
    lambda: FedAdagrad(eta=0.1, eta_l=0.1, tau=1e-3, fraction_evaluate=0.0),
], ids=["FedProx", "FedAdagrad"])
def test_capture_wraps_any_strategy_records_the_replies_and_changes_nothing(tmp_path, write_scenario, list_grid, make_inner):
    settings, job = _job(tmp_path, write_scenario, protocol="fedavg", drop_noise=True)
    app = build_client_app(settings)
    sent = ArrayRecord(build_model(job.spec, seed=1).state_dict())
    grid = list_grid(NODES)

    def replies() -> list[Message]:  # fresh ones for each strategy: a strategy may rewrite a reply in place
        return [app(_train_message(job, node), _context(partition)) for node, partition in NODES.items()]

    bare, wrapped = make_inner(), CapturingStrategy(make_inner(), job)
    # Flower samples with the global `random`; both draw all three nodes, in whatever order.
    bare_messages = list(bare.configure_train(1, sent, ConfigRecord(), grid))
    wrapped_messages = list(wrapped.configure_train(1, sent, ConfigRecord(), grid))
    assert {m.metadata.dst_node_id for m in wrapped_messages} == {m.metadata.dst_node_id for m in bare_messages} == set(NODES)
    # The inner strategy's own config travels unchanged (FedProx adds its proximal term's weight).
    assert dict(wrapped_messages[0].content[CONFIG_KEY]) == dict(bare_messages[0].content[CONFIG_KEY])

    want_arrays, want_metrics = bare.aggregate_train(1, replies())
    got_arrays, got_metrics = wrapped.aggregate_train(1, replies())
    assert wrapped.captured == [CaptureKey(1, 0), CaptureKey(1, 2)]
    assert got_arrays is not None and want_arrays is not None
    for name, want in want_arrays.to_torch_state_dict().items():
        assert torch.equal(got_arrays.to_torch_state_dict()[name], want), name
    assert dict(got_metrics or {}) == dict(want_metrics or {})
    job.store.seal(job.store.files("captures", "ground_truth"))
    view = job.store.captures.read_view(CaptureKey(1, 2))
    for name, value in view.model.state_dict().items():
        assert torch.equal(value, sent.to_torch_state_dict()[name]), name


def test_a_failed_client_ends_the_round_with_its_reason(tmp_path, write_scenario, list_grid):
    from flwr.app import Error

    from flaudit.errors import FlauditError

    _, job = _job(tmp_path, write_scenario)
    strategy, capture = build_strategy(job, NODES)
    strategy.configure_train(1, ArrayRecord(build_model(job.spec, seed=1).state_dict()), ConfigRecord(), list_grid(NODES))
    failed = Message(Error(code=0, reason="out of memory"), reply_to=_train_message(job, 101))
    with pytest.raises(FlauditError, match="round 1: 1 client.*out of memory"):
        strategy.aggregate_train(1, [failed])
    assert capture.captured == []
