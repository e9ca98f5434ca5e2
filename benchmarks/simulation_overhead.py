"""Wall time of a 10-client, 5-round FedSGD scenario through Flower's engine vs the same work in a plain loop.

    python benchmarks/simulation_overhead.py

The plain loop calls the same functions the ClientApp and the server call (batch sampling,
gradient, defenses, averaging, SGD step, central evaluation), in one process, without Flower
or Ray. The last line is `overhead_ratio: X.XX` (engine time / plain-loop time).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("FLAUDIT_QUIET", "1")

from defenses import apply_defenses  # noqa: E402
from fl_sim.job import AppSettings, load_job  # noqa: E402
from flaudit.models import build_model  # noqa: E402
from fl_sim.run_store import RunStore  # noqa: E402
from fl_sim.scenario import dump_scenario, parse_scenario  # noqa: E402
from fl_sim.simulate import run_federation  # noqa: E402
from fl_sim.training import batch_gradient, evaluate, normalize, sample_batch  # noqa: E402
from flaudit.seeds import derive_seed  # noqa: E402

SCENARIO = """
name: overhead
federation: {clients: 10, rounds: 5, protocol: fedsgd, batch_size: 8, learning_rate: 0.1, seed: 0}
data: {dataset: digits, image_size: 16}
model: {name: lenet}
capture: {rounds: [], clients: []}
"""


def plain_loop(run_dir: Path) -> float:
    """The federation's computation with no engine: returns seconds."""
    scenario = parse_scenario(SCENARIO)
    store = RunStore(run_dir)
    store.create(dump_scenario(scenario), seed=0)
    job = load_job(AppSettings(str(store.scenario_path), str(run_dir)))
    fed = scenario.federation
    torch.set_num_threads(1)
    started = time.perf_counter()
    model = build_model(job.spec, seed=derive_seed(fed.seed, "model"))
    evaluate(model, job.bundle)
    for server_round in range(1, fed.rounds + 1):
        sent = {k: v.clone() for k, v in model.state_dict().items()}
        total: dict[str, torch.Tensor] = {}
        for client in range(fed.clients):
            local = build_model(job.spec)
            local.load_state_dict(sent)
            generator = torch.Generator().manual_seed(derive_seed(fed.seed, "client", server_round, client))
            index = sample_batch(job.partitions[client], batch_size=fed.batch_size, generator=generator)
            images, labels = job.bundle.images(index)
            grads, _ = batch_gradient(local, normalize(images, job.bundle.mean, job.bundle.std), labels)
            defended = apply_defenses(list(grads.values()), scenario.defense_list(), generator=torch.Generator().manual_seed(0))
            for name, g in zip(grads, defended):
                total[name] = total.get(name, 0) + g * len(index)
        count = fed.clients * fed.batch_size
        model.load_state_dict({k: (v - fed.learning_rate * total[k] / count if k in total else v) for k, v in sent.items()})
        evaluate(model, job.bundle)
    torch.set_num_threads(os.cpu_count() or 1)
    return time.perf_counter() - started


def engine(run_dir: Path) -> float:
    started = time.perf_counter()
    run_federation(parse_scenario(SCENARIO), run_dir)
    return time.perf_counter() - started


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        loop_s = plain_loop(Path(tmp) / "loop")
        engine_s = engine(Path(tmp) / "engine")
    print("case: 10 clients, 5 rounds, FedSGD, digits 16x16, sigmoid LeNet, batch 8, CPU")
    print(f"cpus: {os.cpu_count()}, torch {torch.__version__}")
    print(f"plain_loop_s: {loop_s:.2f}")
    print(f"flower_engine_s: {engine_s:.2f}  (includes Ray start-up)")
    print(f"overhead_ratio: {engine_s / loop_s:.2f}")


if __name__ == "__main__":
    main()
