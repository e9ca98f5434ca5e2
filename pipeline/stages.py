"""The stages composed over one run directory, each handed only the store it may use.

federate (`fl_sim.simulate.run_federation`) -> captures, vault, history;
attack (`attacks.stage.attack`) -> reconstructions, given the captures and, under the
known-labels threat model, the labels read here from the vault; score (`audit.scorer.score_run`)
-> RoundAudits; present (`audit.report`, `audit.tensorboard`, `audit.sweep_table`).
"""

from __future__ import annotations

import torch

from attacks.stage import AttackRun, attack, select_keys
from attacks.threat import KnownLabels
from flaudit.errors import CaptureCorruptError
from fl_sim.run_store import RunStore
from flaudit.rundir import CaptureKey
from attacks.config import AttackConfig


def read_vault(store: RunStore, config: AttackConfig) -> tuple[KnownLabels | None, dict[CaptureKey, str]]:
    """What the attack may be told of the vault: the labels of the selected updates under the
    known-labels threat model (else None), and the updates whose ground truth is missing or altered
    (they could never be scored, so the attack reports them instead of spending time on them)."""
    labels: dict[CaptureKey, torch.Tensor] = {}
    problems: dict[CaptureKey, str] = {}
    for key in select_keys(store.captures, config):
        try:
            if config.known_labels:
                labels[key] = store.vault.read(key).labels.to(torch.int64)
            else:
                store.vault.verified(store.vault.path(key))
        except CaptureCorruptError as err:
            problems[key] = str(err)
    return (KnownLabels(labels) if config.known_labels else None), problems


def attack_run(store: RunStore, config: AttackConfig, *, device: str = "auto", force: bool = False) -> AttackRun:
    """The attack stage on a run: the captures, and the vault's labels only when the threat model gives them."""
    known, corrupt = read_vault(store, config)
    return attack(store.captures, config, known, device=device, force=force, corrupt=corrupt)
