"""The layout of the messages between flaudit's ServerApp and ClientApp, in one place.

Train (server -> client), as Flower's FedAvg builds it::

    {ARRAYS_KEY: ArrayRecord (the global model), CONFIG_KEY: ConfigRecord {SERVER_ROUND_KEY: int}}

Train reply (client -> server)::

    {ARRAYS_KEY: ArrayRecord (a gradient, or new weights and buffers),
     METRICS_KEY: MetricRecord {NUM_EXAMPLES_KEY: int, TRAIN_LOSS_KEY: float},
     META_KEY: ConfigRecord (a ReplyMetadata)}

Roll call (a query the server sends once): ``{CONFIG_KEY: ConfigRecord {}}``, answered by
``{META_KEY: ConfigRecord (a NodeIdentity)}``. A node learns its partition from its
node_config (PARTITION_KEY), which Flower's simulation sets and `--node-config` sets for a
SuperNode.

Every reader here validates what it reads and raises `ProtocolError` naming the record and the
field: a client and a server of different flaudit versions, or a third-party client, fail at
the boundary rather than deep in an aggregation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, get_args

from flwr.app import ArrayRecord, ConfigRecord, MetricRecord, RecordDict

from flaudit.errors import FlauditError

# Record keys of a message's RecordDict.
ARRAYS_KEY = "arrays"
CONFIG_KEY = "config"
METRICS_KEY = "metrics"
META_KEY = "meta"

# Keys inside those records. Flower's FedAvg writes SERVER_ROUND_KEY itself and weighs replies by
# NUM_EXAMPLES_KEY (its `weighted_by_key`); the strategies are built with these constants.
SERVER_ROUND_KEY = "server-round"
NUM_EXAMPLES_KEY = "num-examples"
TRAIN_LOSS_KEY = "train-loss"
# Flower's simulation names a node's partition so in node_config; flaudit uses the same key in its records.
PARTITION_KEY = "partition-id"

UpdateKind = Literal["gradient", "weights"]
UPDATE_KINDS: tuple[UpdateKind, ...] = get_args(UpdateKind)

# ReplyMetadata field -> its key in the META_KEY record.
_REPLY_FIELDS: dict[str, str] = {
    "partition": PARTITION_KEY,
    "update_kind": "update-kind",
    "param_keys": "param-keys",
    "batch_size": "batch-size",
    "local_steps": "local-steps",
    "learning_rate": "learning-rate",
}


class ProtocolError(FlauditError):
    """A Flower message or node_config does not follow flaudit's layout (fl_sim.protocol)."""


def _int(where: str, value: object, *, minimum: int) -> int:
    # bool is an int to Python but never a count here.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProtocolError(f"{where}: expected an integer, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ProtocolError(f"{where}: {value} is below the minimum {minimum}")
    return value


def _field(record: Mapping[str, object], name: str, where: str) -> object:
    if name not in record:
        raise ProtocolError(f"{where}: missing field '{name}' (has: {', '.join(sorted(record)) or 'nothing'})")
    return record[name]


def _record(content: RecordDict, key: str, where: str) -> ConfigRecord:
    if key not in content.config_records:
        raise ProtocolError(f"{where}: no ConfigRecord '{key}' (has: {', '.join(sorted(content)) or 'nothing'})")
    return content.config_records[key]


@dataclass(frozen=True)
class ReplyMetadata:
    """What a client says about its train reply's arrays (the reply's META_KEY record).

    Attributes:
        partition: the client's partition id, its identity in the scenario.
        update_kind: `gradient` (FedSGD: one batch's gradient of the trainable tensors) or
            `weights` (FedAvg: the new state, trainable tensors and buffers).
        param_keys: the trainable tensors among the arrays, in the model's order; any other array
            is a buffer (BatchNorm statistics).
        batch_size: the client's batch size.
        local_steps: the SGD steps the update took (1 for FedSGD).
        learning_rate: the client's SGD learning rate.
    """

    partition: int
    update_kind: UpdateKind
    param_keys: tuple[str, ...]
    batch_size: int
    local_steps: int
    learning_rate: float

    def __post_init__(self) -> None:
        where = "reply metadata"
        _int(f"{where}.partition", self.partition, minimum=0)
        if self.update_kind not in UPDATE_KINDS:
            raise ProtocolError(f"{where}.update_kind: {self.update_kind!r} is not one of {', '.join(UPDATE_KINDS)}")
        if not isinstance(self.param_keys, tuple) or not self.param_keys or not all(isinstance(k, str) for k in self.param_keys):
            raise ProtocolError(f"{where}.param_keys: expected a non-empty tuple of tensor names, got {self.param_keys!r}")
        _int(f"{where}.batch_size", self.batch_size, minimum=1)
        _int(f"{where}.local_steps", self.local_steps, minimum=1)
        lr = self.learning_rate
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
            raise ProtocolError(f"{where}.learning_rate: expected a positive finite number, got {lr!r}")
        # A ConfigRecord keeps an int an int (a YAML `learning_rate: 1`); the field is a float either way.
        object.__setattr__(self, "learning_rate", float(lr))

    def to_record(self) -> ConfigRecord:
        """The ConfigRecord that carries this metadata in a reply (under META_KEY)."""
        values = {key: getattr(self, name) for name, key in _REPLY_FIELDS.items()}
        values[_REPLY_FIELDS["param_keys"]] = list(self.param_keys)
        return ConfigRecord(values)

    @classmethod
    def from_record(cls, record: ConfigRecord) -> "ReplyMetadata":
        """Read and validate the metadata of a reply.

        Raises:
            ProtocolError: a field is missing, unknown or of the wrong type, naming it.
        """
        where = f"reply '{META_KEY}' record"
        unknown = sorted(set(record) - set(_REPLY_FIELDS.values()))
        if unknown:
            raise ProtocolError(f"{where}: unknown field(s) {', '.join(unknown)}; expected {', '.join(_REPLY_FIELDS.values())}")
        values = {name: _field(record, key, where) for name, key in _REPLY_FIELDS.items()}
        keys = values["param_keys"]
        if not isinstance(keys, list):
            raise ProtocolError(f"{where}: 'param-keys' must be a list of tensor names, got {keys!r}")
        values["param_keys"] = tuple(keys)
        return cls(**values)  # type: ignore[arg-type]

    @classmethod
    def of_reply(cls, content: RecordDict) -> "ReplyMetadata":
        """The metadata in a train reply's content."""
        return cls.from_record(_record(content, META_KEY, "train reply"))


@dataclass(frozen=True)
class NodeIdentity:
    """A node's answer to the server's roll call (under META_KEY): which partition it holds.

    Attributes:
        partition: the node's partition id.
    """

    partition: int

    def __post_init__(self) -> None:
        _int("node identity.partition", self.partition, minimum=0)

    def to_record(self) -> ConfigRecord:
        """The ConfigRecord of the roll-call reply."""
        return ConfigRecord({PARTITION_KEY: self.partition})

    @classmethod
    def from_record(cls, record: ConfigRecord) -> "NodeIdentity":
        """Read and validate a roll-call reply's record."""
        value = _field(record, PARTITION_KEY, f"roll-call '{META_KEY}' record")
        return cls(_int(f"roll-call '{META_KEY}' record.{PARTITION_KEY}", value, minimum=0))

    @classmethod
    def of_reply(cls, content: RecordDict) -> "NodeIdentity":
        """The identity in a roll-call reply's content."""
        return cls.from_record(_record(content, META_KEY, "roll-call reply"))

    @classmethod
    def of_node(cls, node_config: Mapping[str, object]) -> "NodeIdentity":
        """This node's identity, from the node_config Flower gives the ClientApp."""
        if PARTITION_KEY not in node_config:
            raise ProtocolError(
                f"node_config has no '{PARTITION_KEY}'; start a SuperNode with --node-config \"{PARTITION_KEY}=N num-partitions=M\""
            )
        value = node_config[PARTITION_KEY]
        # `--node-config` values arrive as ints, but a string of digits is what a shell user may write.
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        return cls(_int(f"node_config.{PARTITION_KEY}", value, minimum=0))


def train_reply_content(arrays: ArrayRecord, *, num_examples: int, train_loss: float, meta: ReplyMetadata) -> RecordDict:
    """The content of a train reply: the update, the metrics FedAvg weighs and logs, the metadata."""
    return RecordDict(
        {
            ARRAYS_KEY: arrays,
            METRICS_KEY: MetricRecord({NUM_EXAMPLES_KEY: num_examples, TRAIN_LOSS_KEY: train_loss}),
            META_KEY: meta.to_record(),
        }
    )


def num_examples(content: RecordDict) -> int:
    """The number of examples a train reply's update used (its weight in FedAvg)."""
    if METRICS_KEY not in content.metric_records:
        raise ProtocolError(f"train reply: no MetricRecord '{METRICS_KEY}'")
    value = _field(content.metric_records[METRICS_KEY], NUM_EXAMPLES_KEY, f"train reply '{METRICS_KEY}'")
    return _int(f"train reply '{METRICS_KEY}'.{NUM_EXAMPLES_KEY}", value, minimum=0)


def train_round(content: RecordDict) -> int:
    """The round a train message belongs to, from its config record."""
    config = _record(content, CONFIG_KEY, "train message")
    value = _field(config, SERVER_ROUND_KEY, f"train message '{CONFIG_KEY}'")
    return _int(f"train message '{CONFIG_KEY}'.{SERVER_ROUND_KEY}", value, minimum=1)
