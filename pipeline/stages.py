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


def vault_problems(store: RunStore, config: AttackConfig) -> dict[CaptureKey, str]:
    """The selected updates whose ground truth is missing or altered: they could never be scored, so
    the attack is told to report them rather than spend time on them (it learns nothing else)."""
    problems = {}
    for key in select_keys(store.captures, config):
        try:
            store.vault.verified(store.vault.path(key))
        except CaptureCorruptError as err:
            problems[key] = str(err)
    return problems


def known_labels(store: RunStore, config: AttackConfig) -> KnownLabels:
    """The true labels of every update `config` selects, read from the vault (the known-labels threat model)."""
    labels: dict[CaptureKey, torch.Tensor] = {}
    unavailable: dict[CaptureKey, str] = {}
    for key in select_keys(store.captures, config):
        try:
            labels[key] = store.vault.read(key).labels.to(torch.int64)
        except CaptureCorruptError as err:
            unavailable[key] = str(err)
    return KnownLabels(labels, unavailable)


def attack_run(store: RunStore, config: AttackConfig, *, device: str = "auto", force: bool = False) -> AttackRun:
    """The attack stage on a run: the captures, and the vault's labels only when the threat model gives them."""
    known = known_labels(store, config) if config.known_labels else None
    return attack(store.captures, config, known, device=device, force=force, corrupt=vault_problems(store, config))
