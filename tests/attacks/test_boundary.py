"""Attacks never receive ground truth: by signature, by the view's fields, and on a hand-built view."""

import dataclasses
import inspect

import pytest
import torch
import torch.nn.functional as F

from attacks import ATTACKS, ServerView, SharedMetadata, create_attack
from flaudit.models import ModelSpec, build_model


def test_reconstruct_signature_takes_only_view_generator_labels() -> None:
    for name in ATTACKS.names():
        params = inspect.signature(ATTACKS.get(name).reconstruct).parameters
        assert list(params) == ["self", "view", "generator", "labels"], name
        assert params["generator"].kind is inspect.Parameter.KEYWORD_ONLY
        assert params["labels"].default is None


def test_server_view_has_no_ground_truth_fields() -> None:
    fields = {f.name for f in dataclasses.fields(ServerView)} | {f.name for f in dataclasses.fields(SharedMetadata)}
    assert fields.isdisjoint({"images", "image", "labels", "label", "targets", "x", "y", "batch", "ground_truth"})


@pytest.mark.parametrize("name", ["idlg", "inverting_gradients"])
def test_attack_on_hand_built_view(name: str) -> None:
    model = build_model(ModelSpec("lenet", 10, 3, 32), seed=0)
    secret = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    secret_labels = torch.tensor([1, 8])
    client = build_model(ModelSpec("lenet", 10, 3, 32), seed=0)
    client.train()
    loss = F.cross_entropy(client((secret - 0.5) / 0.5), secret_labels)
    grads = torch.autograd.grad(loss, list(client.parameters()))
    update = {n: g for (n, _), g in zip(client.named_parameters(), grads)}
    meta = SharedMetadata(
        protocol="fedsgd", num_examples=2, batch_size=2, local_steps=1, learning_rate=0.1,
        input_shape=(3, 32, 32), num_classes=10, data_mean=(0.5, 0.5, 0.5), data_std=(0.5, 0.5, 0.5),
    )
    view = ServerView(round=1, client=0, model=model.eval(), update=update, meta=meta)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    params = {"iterations": 1, "max_iter": 2} if name == "idlg" else {"iterations": 2}
    if name == "idlg":
        params["restarts"] = 1
    rec = create_attack(name, **params).reconstruct(view, generator=torch.Generator().manual_seed(0))
    assert rec.images.shape == (2, 3, 32, 32)
    assert float(rec.images.min()) >= 0.0 and float(rec.images.max()) <= 1.0
    assert sorted(rec.labels.tolist()) == [1, 8]  # recovered from the gradient, not given
    assert not rec.labels_known
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # view's model untouched


def test_the_attack_stage_loads_nothing_that_can_read_ground_truth() -> None:
    """In a fresh interpreter, `attacks` and the attack stage (its stores and threat model included)
    load no ground-truth reader, nothing of fl_sim, audit or the orchestration, and no Flower."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import json, sys\n"
        "import attacks, attacks.stage, attacks.store, attacks.threat\n"
        "from attacks import *\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    repo = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=repo, timeout=300, check=True)
    loaded = json.loads(done.stdout.splitlines()[-1])
    forbidden = ("fl_sim", "audit", "pipeline", "semsim", "flwr", "ray")
    leaked = [m for m in loaded if m.split(".")[0] in forbidden]
    assert leaked == [], f"the attack stage loaded {leaked}"
    assert "attacks.stage" in loaded and "attacks.store" in loaded  # the check looked at the real stage
    # Nothing loaded can open the vault: no module defines a ground-truth reader.
    readers = [m for m in loaded if "vault" in m or "ground_truth" in m]
    assert readers == []
