"""The capture boundary: a ServerView cannot hold the client's data, and it records the defended update exactly."""

from __future__ import annotations

import dataclasses
import typing

import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict

from attacks.base import ServerView, SharedMetadata
from defenses import apply_defenses
from fl_sim.capture import CapturingFedAvg
from fl_sim.client_app import build_client_app
from fl_sim.job import AppSettings, load_job
from fl_sim.models import build_model
from fl_sim.protocol import ARRAYS_KEY, CONFIG_KEY, PARTITION_KEY, SERVER_ROUND_KEY
from fl_sim.run_store import CaptureKey, RunStore
from fl_sim.scenario import dump_scenario, load_scenario
from fl_sim.training import batch_gradient, derive_seed, normalize, sample_batch

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


@pytest.fixture(autouse=True)
def _task_identity():
    # Messages take their sender from Flower's TaskIdentity, which the engines set; set it as the server would.
    from flwr.supercore.task_identity import TaskIdentity

    saved = (TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id)
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1
    yield
    TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id = saved


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


def test_captured_fedsgd_update_equals_the_clients_defended_gradient_bit_for_bit(tmp_path, write_scenario):
    settings, job = _job(tmp_path, write_scenario)
    app = build_client_app(settings)
    replies, sent = [], build_model(job.spec, seed=1).state_dict()
    for partition in (2, 0, 1):  # out of order on purpose: the strategy sorts by partition id
        msg = _train_message(job, 100 + partition)
        replies.append(app(msg, _context(partition)))
    strategy = CapturingFedAvg(job, {100 + p: p for p in range(3)})
    strategy._sent = {k: v.clone() for k, v in sent.items()}
    strategy.aggregate_train(1, replies)
    job.store.seal(job.store.files("captures", "ground_truth"))  # as the ServerApp does after its rounds

    for partition in (0, 2):
        view = job.store.read_view(CaptureKey(1, partition))
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
        truth = job.store.read_ground_truth(CaptureKey(1, partition))
        assert torch.equal(truth.images, images) and torch.equal(truth.labels, labels)
    assert not job.store.capture_path(CaptureKey(1, 1)).exists(), "client 1 is not in capture.clients"


def test_fedavg_capture_holds_new_weights_and_defends_the_weight_change(tmp_path, write_scenario):
    settings, job = _job(tmp_path, write_scenario, protocol="fedavg", drop_noise=True)
    app = build_client_app(settings)
    sent = build_model(job.spec, seed=1).state_dict()
    replies = [app(_train_message(job, 100 + p), _context(p)) for p in range(3)]
    strategy = CapturingFedAvg(job, {100 + p: p for p in range(3)})
    strategy._sent = {k: v.clone() for k, v in sent.items()}
    arrays, _ = strategy.aggregate_train(1, replies)
    job.store.seal(job.store.files("captures", "ground_truth"))
    view = job.store.read_view(CaptureKey(1, 0))
    assert view.meta.protocol == "fedavg" and view.meta.local_steps == 2
    # prune(0.5) acts on the weight change (returned - sent), not on the weights: exactly half of
    # each tensor's change is zero, i.e. those weights come back exactly as sent.
    for name, value in view.update.items():
        change = (value - sent[name]).flatten()
        assert int((change == 0).sum()) >= change.numel() // 2, name
        assert int((change != 0).sum()) > 0, name
    assert arrays is not None and set(arrays.keys()) == set(sent.keys())
