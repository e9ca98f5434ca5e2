"""The Flower ClientApp: FedSGD or FedAvg local work, defenses as a mod, the ground-truth vault on the side.

`app` is the module-level ClientApp for Flower's engines (`flwr run`, SuperNodes); it reads
`scenario` and `run-dir` from the run_config. `build_client_app(settings)` binds them for
the in-process simulation.
"""

from __future__ import annotations

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from defenses.flower_mod import ARRAYS_KEY, META_KEY, DefenseMod
from fl_sim.job import AppSettings, Job, load_job
from flaudit.threads import use_threads
from flaudit.models import build_model
from fl_sim.run_store import GroundTruth
from fl_sim.training import batch_gradient, derive_seed, local_train, normalize, sample_batch

PARTITION_KEY = "partition-id"


def train_reply(msg: Message, context: Context, job: Job) -> Message:
    """The client's train step (before defenses): returns the update and the metadata it shares."""
    scenario, fed = job.scenario, job.scenario.federation
    use_threads(fed.client_cpus)  # the CPUs Ray gave this client; Ray runs several side by side
    partition_id = int(context.node_config[PARTITION_KEY])
    server_round = int(msg.content["config"]["server-round"])
    partition = job.partitions[partition_id]
    generator = torch.Generator().manual_seed(derive_seed(fed.seed, "client", server_round, partition_id))

    model = build_model(job.spec)
    model.load_state_dict(msg.content[ARRAYS_KEY].to_torch_state_dict())
    param_keys = [name for name, _ in model.named_parameters()]
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
    content = RecordDict(
        {
            ARRAYS_KEY: ArrayRecord({k: v.detach().clone() for k, v in arrays.items()}),
            "metrics": MetricRecord({"num-examples": int(len(used)), "train-loss": loss}),
            META_KEY: ConfigRecord(
                {
                    PARTITION_KEY: partition_id,
                    "update-kind": kind,
                    "param-keys": param_keys,
                    "batch-size": fed.batch_size,
                    "local-steps": steps,
                    "learning-rate": fed.learning_rate,
                }
            ),
        }
    )
    return Message(content, reply_to=msg)


def partition_reply(msg: Message, context: Context) -> Message:
    """Answer the server's roll call with this node's partition id (for reproducible sampling)."""
    return Message(RecordDict({META_KEY: ConfigRecord({PARTITION_KEY: int(context.node_config[PARTITION_KEY])})}), reply_to=msg)


def build_client_app(settings: AppSettings | None = None) -> ClientApp:
    """A ClientApp bound to `settings`, or (None) reading them from each Context's run_config."""

    def job_of(context: Context) -> Job:
        return load_job(settings or AppSettings.from_run_config(context.run_config))

    def resolve_defenses(msg: Message, context: Context):  # type: ignore[no-untyped-def]
        job = job_of(context)
        seed = derive_seed(
            job.scenario.federation.seed, "defense", int(msg.content["config"]["server-round"]), int(context.node_config[PARTITION_KEY])
        )
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
