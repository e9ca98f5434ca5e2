"""A Flower client mod that applies the scenario's defenses to a train reply before it leaves the client."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from flwr.app import ArrayRecord, Context, Message
from flwr.clientapp.typing import ClientAppCallable

from defenses.registry import apply_defenses
from fl_sim.protocol import ARRAYS_KEY, ReplyMetadata

# (message, context) -> (the defenses to apply as (name, params), the seed of their noise)
DefenseResolver = Callable[[Message, Context], tuple[Sequence[tuple[str, Mapping[str, float]]], int]]


class DefenseMod:
    """Defend the update in a train reply.

    The reply's metadata (`ReplyMetadata`) says what the arrays are: `update_kind` is `gradient`
    (FedSGD) or `weights` (FedAvg), and `param_keys` lists the trainable tensors. Defenses act on
    the gradient, or on the weight change (returned - sent) for FedAvg; non-trainable buffers
    (BatchNorm statistics) pass through unchanged.
    """

    def __init__(self, resolve: DefenseResolver) -> None:
        self.resolve = resolve

    def __call__(self, msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
        reply = call_next(msg, context)
        if reply.has_error():
            return reply
        defenses, seed = self.resolve(msg, context)
        if not defenses:
            return reply
        meta = ReplyMetadata.of_reply(reply.content)
        keys = list(meta.param_keys)
        returned = reply.content[ARRAYS_KEY].to_torch_state_dict()
        tensors = [returned[k] for k in keys]
        weights = meta.update_kind == "weights"
        if weights:
            sent = msg.content[ARRAYS_KEY].to_torch_state_dict()
            tensors = [t - sent[k] for t, k in zip(tensors, keys)]
        generator = torch.Generator().manual_seed(seed)
        defended = apply_defenses(tensors, defenses, generator=generator)
        if weights:
            defended = tuple(d + sent[k] for d, k in zip(defended, keys))
        returned.update(dict(zip(keys, defended)))
        reply.content[ARRAYS_KEY] = ArrayRecord(returned)
        return reply
