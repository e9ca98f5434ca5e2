"""The ground-truth vault: each attacked client's true batch, written by the simulated clients, read only by scoring.

It is its own store, in a package the attack side never imports (`attacks.store` reads
captures and writes reconstructions; nothing there can open `ground_truth/`). Under the
known-labels threat model the orchestrator reads the labels here and hands them to the
attack as an explicit `attacks.threat.KnownLabels`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from flaudit.io import load_tensors, save_tensors
from flaudit.rundir import CaptureKey, RunDir

GROUND_TRUTH = "ground_truth"


@dataclass(frozen=True)
class GroundTruth:
    """A client's true batch in one round.

    Args:
        round: server round.
        client: partition id.
        images: (B, C, H, W) in [0, 1], as the client's data loader produced them (before normalisation).
        labels: (B,) int64.
        indices: (B,) int64 indices into the dataset's training split.
    """

    round: int
    client: int
    images: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor

    @property
    def key(self) -> CaptureKey:
        return CaptureKey(self.round, self.client)


class Vault(RunDir):
    """`ground_truth/round_RRR/client_CCC.safetensors`: images [0, 1], labels, indices."""

    def path(self, key: CaptureKey) -> Path:
        return self.root / GROUND_TRUTH / f"{key.stem}.safetensors"

    def write(self, truth: GroundTruth) -> Path:
        """Write one client's batch; returns the file (to seal)."""
        return save_tensors(
            self.path(truth.key),
            {"images": truth.images, "labels": truth.labels.to(torch.int64), "indices": truth.indices.to(torch.int64)},
        )

    def read(self, key: CaptureKey) -> GroundTruth:
        """The vault's record of one capture, verified against the manifest (raises CaptureCorruptError)."""
        tensors = load_tensors(self.verified(self.path(key)))
        return GroundTruth(key.round, key.client, tensors["images"], tensors["labels"], tensors["indices"])
