"""A scored run directory made without Flower: digits in the vault, reconstructions from an
"attack", and the score stage's metrics.jsonl and PNG pairs (as `flaudit audit` leaves them)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

SCENARIO = "name: annotated\ndata: {dataset: digits}\nmodel: {name: lenet}\n"


def make_scored_run(root: Path, digits) -> Path:  # type: ignore[no-untyped-def]
    """Two rounds of two clients, three images each: round 1 reconstructed nearly perfectly, round 2 noise."""
    from audit.scorer import score_run
    from fl_sim.run_store import RunStore
    from fl_sim.vault import GroundTruth
    from flaudit.io import atomic_write_json, save_tensors
    from flaudit.rundir import CaptureKey

    _, _, test_x, test_y = digits
    store = RunStore(root)
    store.create(SCENARIO, seed=0)
    g = torch.Generator().manual_seed(3)
    for r in (1, 2):
        for c in (0, 1):
            start = (2 * (r - 1) + c) * 3
            images, labels = test_x[start : start + 3], test_y[start : start + 3]
            key = CaptureKey(r, c)
            store.vault.write(GroundTruth(r, c, images, labels, torch.arange(start, start + 3)))
            rec = (images + 0.02 * torch.randn(images.shape, generator=g)).clamp(0, 1) if r == 1 else torch.rand(images.shape, generator=g)
            folder = store.reconstructions("dlg").folder(key)
            save_tensors(folder / "reconstruction.safetensors", {"images": rec.flip(0), "labels": labels.flip(0)})
            atomic_write_json(folder / "record.json", {"attack": "dlg"})
    store.seal(store.files())
    score_run(store, metrics=("mse", "psnr"), device="cpu", download=False)
    store.seal(store.files("metrics.jsonl", "rounds.jsonl"))
    return store.root


@pytest.fixture
def scored_run(digits, tmp_path: Path) -> Path:
    return make_scored_run(tmp_path / "run", digits)
