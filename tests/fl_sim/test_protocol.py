"""The message layout: typed metadata that round-trips through a ConfigRecord and refuses a malformed one."""

from __future__ import annotations

import dataclasses

import pytest
from flwr.app import ConfigRecord, RecordDict

from fl_sim.protocol import (
    CONFIG_KEY,
    META_KEY,
    PARTITION_KEY,
    SERVER_ROUND_KEY,
    NodeIdentity,
    ProtocolError,
    ReplyMetadata,
    train_round,
)

META = ReplyMetadata(
    partition=2, update_kind="weights", param_keys=("conv.weight", "conv.bias"), batch_size=16, local_steps=5, learning_rate=0.05
)


def test_reply_metadata_round_trips_through_a_config_record():
    record = META.to_record()
    assert isinstance(record, ConfigRecord)
    assert ReplyMetadata.from_record(record) == META
    # The keys on the wire are those earlier flaudit clients sent, so old and new ends still agree.
    assert dict(record) == {
        PARTITION_KEY: 2, "update-kind": "weights", "param-keys": ["conv.weight", "conv.bias"],
        "batch-size": 16, "local-steps": 5, "learning-rate": 0.05,
    }
    assert ReplyMetadata.of_reply(RecordDict({META_KEY: record})) == META


def test_an_integer_learning_rate_is_a_float():
    meta = dataclasses.replace(META, learning_rate=1)
    assert meta.learning_rate == 1.0 and isinstance(meta.learning_rate, float)
    assert isinstance(ReplyMetadata.from_record(meta.to_record()).learning_rate, float)


@pytest.mark.parametrize("change, message", [
    (lambda r: r.pop("batch-size"), r"missing field 'batch-size'"),
    (lambda r: r.__setitem__("batch-size", "16"), r"batch_size: expected an integer, got '16'"),
    (lambda r: r.__setitem__("local-steps", True), r"local_steps: expected an integer, got True"),
    (lambda r: r.__setitem__("local-steps", 0), r"local_steps: 0 is below the minimum 1"),
    (lambda r: r.__setitem__("update-kind", "delta"), r"update_kind: 'delta' is not one of gradient, weights"),
    (lambda r: r.__setitem__("param-keys", "conv.weight"), r"'param-keys' must be a list of tensor names"),
    (lambda r: r.__setitem__("param-keys", []), r"param_keys: expected a non-empty tuple"),
    (lambda r: r.__setitem__("learning-rate", -0.1), r"learning_rate: expected a positive finite number, got -0.1"),
    (lambda r: r.__setitem__("momentum", 0.9), r"unknown field\(s\) momentum"),
])
def test_a_malformed_record_is_refused_naming_the_field(change, message):
    record = META.to_record()
    change(record)
    with pytest.raises(ProtocolError, match=message):
        ReplyMetadata.from_record(record)


def test_a_reply_without_metadata_says_what_it_has():
    with pytest.raises(ProtocolError, match=r"train reply: no ConfigRecord 'meta' \(has: config\)"):
        ReplyMetadata.of_reply(RecordDict({CONFIG_KEY: ConfigRecord({})}))


def test_node_identity_from_node_config_and_roll_call():
    assert NodeIdentity.of_node({PARTITION_KEY: 3, "num-partitions": 4}) == NodeIdentity(3)
    assert NodeIdentity.of_node({PARTITION_KEY: "3"}) == NodeIdentity(3)
    assert NodeIdentity.of_reply(RecordDict({META_KEY: NodeIdentity(3).to_record()})) == NodeIdentity(3)
    with pytest.raises(ProtocolError, match=r"--node-config \"partition-id=N num-partitions=M\""):
        NodeIdentity.of_node({"num-partitions": 4})
    with pytest.raises(ProtocolError, match=r"below the minimum 0"):
        NodeIdentity(-1)


def test_train_round_reads_the_config_record():
    assert train_round(RecordDict({CONFIG_KEY: ConfigRecord({SERVER_ROUND_KEY: 7})})) == 7
    with pytest.raises(ProtocolError, match=r"missing field 'server-round'"):
        train_round(RecordDict({CONFIG_KEY: ConfigRecord({})}))
