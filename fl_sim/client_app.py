"""The Flower ClientApp: FedSGD or FedAvg local work, defenses as a mod, the ground-truth vault on the side.

`app` is the module-level ClientApp for Flower's engines (`flwr run`, SuperNodes); it reads
`scenario` and `run-dir` from the run_config. `build_client_app(settings)` binds them for
the in-process simulation.
"""

from __future__ import annotations

import torch
from flwr.app import ArrayRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp

from fl_sim.job import AppSettings, Job, load_job
from flaudit.threads import use_threads
from flaudit.models import build_model
from fl_sim.mods import DefenseMod
from fl_sim.protocol import ARRAYS_KEY, META_KEY, NodeIdentity, ReplyMetadata, UpdateKind, train_reply_content, train_round
from fl_sim.vault import GroundTruth
from fl_sim.training import batch_gradient, local_train, normalize, sample_batch
from flaudit.seeds import derive_seed


def train_reply(msg: Message, context: Context, job: Job) -> Message:
    """The client's train step (before defenses): returns the update and the metadata it shares."""
    scenario, fed = job.scenario, job.scenario.federation
    use_threads(fed.client_cpus)  # the CPUs Ray gave this client; Ray runs several side by side
    partition_id = NodeIdentity.of_node(context.node_config).partition
    server_round = train_round(msg.content)
    partition = job.partitions[partition_id]
    generator = torch.Generator().manual_seed(derive_seed(fed.seed, "client", server_round, partition_id))

    model = build_model(job.spec)
    model.load_state_dict(msg.content[ARRAYS_KEY].to_torch_state_dict())
    param_keys = tuple(name for name, _ in model.named_parameters())
    kind: UpdateKind
    if fed.protocol == "fedsgd":
        used = sample_batch(partition, batch_size=fed.batch_size, generator=generator)
        images, labels = job.bundle.images(used)
        arrays, loss = batch_gradient(model, normalize(images, job.bundle.mean, job.bundle.std), labels)
        steps, kind = 1, "gradient"
    else:
        loss, used, steps = local_train(
            model, job.bundle, partition, epochs=fed.local_epochs, steps=fed.local_steps, batch_size=fed.batch_size,
            learning_rate=fed.learning_rate, momentum=fed.momentum, generator=generator,
        )
        images, labels = job.bundle.images(used)
        arrays, kind = model.state_dict(), "weights"

    if scenario.capture.wants(server_round, partition_id):
        # The vault: the simulation records the truth for the audit; it never travels to the server.
        job.store.vault.write(
            GroundTruth(server_round, partition_id, images, labels, torch.as_tensor(used, dtype=torch.int64))
        )
    meta = ReplyMetadata(
        partition=partition_id, update_kind=kind, param_keys=param_keys, batch_size=fed.batch_size,
        local_steps=steps, learning_rate=fed.learning_rate,
    )
    arrays_out = ArrayRecord({k: v.detach().clone() for k, v in arrays.items()})
    return Message(train_reply_content(arrays_out, num_examples=int(len(used)), train_loss=loss, meta=meta), reply_to=msg)


def partition_reply(msg: Message, context: Context) -> Message:
    """Answer the server's roll call with this node's partition id (for reproducible sampling)."""
    return Message(RecordDict({META_KEY: NodeIdentity.of_node(context.node_config).to_record()}), reply_to=msg)


def build_client_app(settings: AppSettings | None = None) -> ClientApp:
    """A ClientApp bound to `settings`, or (None) reading them from each Context's run_config."""

    def job_of(context: Context) -> Job:
        return load_job(settings or AppSettings.from_run_config(context.run_config))

    def resolve_defenses(msg: Message, context: Context):  # type: ignore[no-untyped-def]
        job = job_of(context)
        partition = NodeIdentity.of_node(context.node_config).partition
        seed = derive_seed(job.scenario.federation.seed, "defense", train_round(msg.content), partition)
        return job.scenario.defense_list(), seed

    app = ClientApp()

    @app.train(mods=[DefenseMod(resolve_defenses)])
    def train(msg: Message, context: Context) -> Message:
        return train_reply(msg, context, job_of(context))

    @app.query()
    def query(msg: Message, context: Context) -> Message:
        return partition_reply(msg, context)

    return app


app = build_client_app()
