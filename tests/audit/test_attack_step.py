"""The attack step: a round's clients inverted as one batch, results per client, resumable."""

from __future__ import annotations

import torch

from attacks.base import SharedMetadata
from attacks.simulate import fedsgd_view
from audit.attack_step import attack_run, load_reconstruction
from fl_sim.models import ModelSpec, build_model
from fl_sim.run_store import CaptureKey, GroundTruth, RunStore
from fl_sim.scenario import AttackConfig

META = SharedMetadata("fedsgd", 1, 1, 1, 0.1, (1, 8, 8), 10, (0.5,), (0.5,))
SPEC = ModelSpec("lenet", 10, 1, 8)


def _store(tmp_path) -> RunStore:
    """Two rounds (two global models) of two clients, each client one 8x8 image."""
    store = RunStore(tmp_path / "run")
    store.create("name: x\n", seed=0)
    g = torch.Generator().manual_seed(0)
    for round_ in (1, 2):
        model = build_model(SPEC, seed=round_)
        for client in (0, 1):
            images = torch.rand(1, 1, 8, 8, generator=g)
            labels = torch.tensor([3 * client + round_])
            view = fedsgd_view(model, images, labels, META, round=round_, client=client)
            key = CaptureKey(round_, client)
            store.write_view(key, spec=SPEC, global_state=model.state_dict(), update=dict(view.update), buffers={}, meta=META)
            store.write_ground_truth(GroundTruth(round_, client, images, labels, torch.tensor([client])))
    return store


def test_round_batched_equals_one_by_one_and_resumes(tmp_path) -> None:
    store = _store(tmp_path)
    # Few Adam steps: long L-BFGS runs amplify float rounding (nested vs single vmap) into visible differences.
    config = AttackConfig("inverting_gradients", {"iterations": 4, "restarts": 2, "tv": 1e-3})
    batched = attack_run(store, config, device="cpu")
    assert [(o.key.round, o.key.client) for o in batched] == [(1, 0), (1, 1), (2, 0), (2, 1)]
    assert all(o.record["batched_with"] == [0, 1] for o in batched)
    assert [o.record["recovered_labels"] for o in batched] == [[1], [4], [2], [5]]
    first = {o.key: load_reconstruction(o.directory)["images"] for o in batched}

    again = attack_run(store, config, device="cpu")
    assert all(o.skipped for o in again)

    single = attack_run(store, AttackConfig(config.name, dict(config.params), clients_per_batch=1), device="cpu", force=True)
    for outcome in single:
        assert outcome.record["batched_with"] == [outcome.key.client]
        assert torch.allclose(load_reconstruction(outcome.directory)["images"], first[outcome.key], atol=1e-4)
        assert (outcome.directory / f"0_{outcome.record['recovered_labels'][0]}_rec.png").exists()
