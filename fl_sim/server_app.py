"""The Flower ServerApp: roll call, the strategy stack, central evaluation, history and privacy.

`app` is the module-level ServerApp for Flower's engines; `build_server_app(settings)` binds
the settings for the in-process simulation.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from collections.abc import Callable, Iterator
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from defenses.accounting import gaussian_epsilon
from flaudit.progress import is_quiet, progress
from fl_sim.capture import CapturingStrategy
from fl_sim.fedsgd import FedSGD
from fl_sim.job import AppSettings, Job, load_job
from flaudit.models import build_model
from fl_sim.protocol import ARRAYS_KEY, CONFIG_KEY, NUM_EXAMPLES_KEY, TRAIN_LOSS_KEY, NodeIdentity
from fl_sim.sampling import SeededSampling, clients_per_round
from fl_sim.training import evaluate
from flaudit.seeds import derive_seed


def roll_call(grid: Grid, expected: int, timeout: float = 600.0) -> dict[int, int]:
    """Ask every node for its partition id; returns node id -> partition id."""
    deadline = time.time() + timeout
    while len(node_ids := list(grid.get_node_ids())) < expected:
        if time.time() > deadline:
            raise TimeoutError(f"only {len(node_ids)} of {expected} clients connected within {timeout:.0f} s")
        time.sleep(0.2)
    messages = [Message(RecordDict({CONFIG_KEY: ConfigRecord({})}), dst_node_id=n, message_type=MessageType.QUERY) for n in node_ids]
    replies = grid.send_and_receive(messages, timeout=timeout)
    mapping = {}
    for reply in replies:
        if reply.has_error():
            raise RuntimeError(f"roll call failed: {reply.error.reason}")
        mapping[reply.metadata.src_node_id] = NodeIdentity.of_reply(reply.content).partition
    return mapping


def privacy_per_round(job: Job, server_round: int) -> dict[str, float]:
    """(epsilon, delta) of clip_noise for one round and for the run so far (a client in every round)."""
    out: dict[str, float] = {}
    for name, params in job.scenario.defense_list():
        if name == "clip_noise":
            z, delta = params["noise_multiplier"], params["delta"]
            out["epsilon_round"] = gaussian_epsilon(noise_multiplier=z, steps=1, delta=delta).epsilon
            out["epsilon_total"] = gaussian_epsilon(noise_multiplier=z, steps=server_round, delta=delta).epsilon
            out["delta"] = delta
    return out


@contextlib.contextmanager
def _flwr_errors_only() -> Iterator[None]:
    """Hide Flower's warnings for the block (FedAvg warns that fraction_evaluate=0 skips evaluation: here, the intent)."""
    flwr_logger = logging.getLogger("flwr")
    previous = flwr_logger.level
    flwr_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        flwr_logger.setLevel(previous)


def build_strategy(job: Job, partitions: dict[int, int]) -> tuple[SeededSampling, CapturingStrategy]:
    """The server's strategy stack: seeded sampling around the capture around FedAvg or FedSGD.

    Sampling is outermost so that the capture and the aggregation both get the replies in
    partition order. The inner strategy trains every node the sampling shows it, and evaluates
    none: the server evaluates centrally on the held-out split (`evaluate_fn`).

    Returns:
        The strategy to start, and the capture (for the keys it wrote).
    """
    fed = job.scenario.federation
    per_round = clients_per_round(fed.fraction, fed.clients)
    fedavg_args: dict[str, Any] = {
        "fraction_train": 1.0, "min_train_nodes": per_round, "min_available_nodes": per_round,
        "fraction_evaluate": 0.0, "min_evaluate_nodes": 0,
        "weighted_by_key": NUM_EXAMPLES_KEY, "arrayrecord_key": ARRAYS_KEY, "configrecord_key": CONFIG_KEY,
    }
    with _flwr_errors_only():
        inner = FedSGD(fed.learning_rate, **fedavg_args) if fed.protocol == "fedsgd" else FedAvg(**fedavg_args)
    capture = CapturingStrategy(inner, job)
    return SeededSampling(capture, partitions=partitions, per_round=per_round, seed=fed.seed), capture


def run_server(grid: Grid, job: Job) -> dict[str, Any]:
    """Run the whole federation and write history.json; returns the history."""
    fed = job.scenario.federation
    model = build_model(job.spec, seed=derive_seed(fed.seed, "model"))
    partitions = roll_call(grid, fed.clients)
    strategy, capture = build_strategy(job, partitions)
    history: dict[str, Any] = {"rounds": [], "protocol": fed.protocol, "clients": fed.clients}
    bar = progress(total=fed.rounds, desc="rounds", unit="round", leave=True)

    def central_evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        model.load_state_dict(arrays.to_torch_state_dict())
        accuracy, loss = evaluate(model, job.bundle)
        record = {"round": server_round, "accuracy": accuracy, "loss": loss, **privacy_per_round(job, server_round)}
        if server_round == 0:
            history["initial"] = record
        else:
            history["rounds"].append(record)
            bar.update(1)
            bar.set_postfix(accuracy=f"{accuracy:.3f}", loss=f"{loss:.3f}")
            if not is_quiet():
                extra = f", epsilon {record['epsilon_total']:.2f}" if "epsilon_total" in record else ""
                bar.write(f"round {server_round}/{fed.rounds}: accuracy {accuracy:.4f}, loss {loss:.4f}{extra}")
        return MetricRecord({"accuracy": accuracy, "loss": loss})

    result = strategy.start(
        grid=grid, initial_arrays=ArrayRecord(model.state_dict()), num_rounds=fed.rounds, evaluate_fn=central_evaluate,
    )
    bar.close()
    for record in history["rounds"]:
        train = result.train_metrics_clientapp.get(record["round"])
        if train is not None:
            record["train_loss"] = float(train[TRAIN_LOSS_KEY])
    history["captured"] = [[k.round, k.client] for k in capture.captured]
    job.store.write_history(history)
    return history


def build_server_app(settings: AppSettings | None = None, on_done: Callable[[dict[str, Any]], None] | None = None) -> ServerApp:
    """A ServerApp bound to `settings`, or (None) reading them from the Context's run_config."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        resolved = settings or AppSettings.from_run_config(context.run_config)
        job = load_job(resolved)
        if not job.store.scenario_path.exists():  # started by `flwr run`, not by `flaudit run`
            job.store.create(Path(resolved.scenario).read_text(encoding="utf-8"), seed=job.scenario.federation.seed)
        if not logging.getLogger().isEnabledFor(logging.INFO):
            logging.getLogger("flwr").setLevel(logging.WARNING)
        history = run_server(grid, job)
        # The federation's own files: what the server captured, the clients' vault, the history.
        job.store.seal(job.store.files("captures", "ground_truth", "history.json"))
        if on_done is not None:
            on_done(history)

    return app


app = build_server_app()
