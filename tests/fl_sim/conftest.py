"""Flower test doubles for the server's strategies: a Grid that only lists nodes, and the task identity Messages need."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import pytest
from flwr.app import Message, RecordDict
from flwr.serverapp import Grid


class ListGrid(Grid):
    """A Grid that lists `node_ids` and sends nothing: strategies sample from it and build their messages."""

    def __init__(self, node_ids: Iterable[int]) -> None:
        self.node_ids = list(node_ids)

    def set_run(self, run):  # type: ignore[no-untyped-def]
        raise NotImplementedError

    @property
    def run(self):  # type: ignore[no-untyped-def]
        raise NotImplementedError

    def create_message(self, content: RecordDict, message_type: str, dst_node_id: int, group_id: str, ttl: float | None = None) -> Message:
        raise NotImplementedError

    def get_node_ids(self) -> Iterable[int]:
        return list(self.node_ids)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        raise NotImplementedError

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        raise NotImplementedError

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        raise NotImplementedError


@pytest.fixture
def task_identity() -> Iterator[None]:
    """Messages take their sender from Flower's TaskIdentity, which the engines set; set it as the server's would be."""
    from flwr.supercore.task_identity import TaskIdentity

    saved = (TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id)
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1
    yield
    TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id = saved


@pytest.fixture
def list_grid() -> type[ListGrid]:
    """The `ListGrid` class (a fixture, as a conftest is not imported by name)."""
    return ListGrid
