"""The metric study's scenario: YAML onto frozen dataclasses, checked without torch.

`flaudit validate` and `flaudit study` load it; `pipeline.study` runs it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attacks.params import ATTACK_PARAMS
from flaudit.fields import bounds
from fl_sim.scenario import parse_yaml_as
from flaudit.errors import ScenarioError
from semsim.config import TrainConfig

CLASSIC_METRICS = ("mse", "psnr", "ssim", "lpips", "fid")
ALL_METRICS = (*CLASSIC_METRICS, "oracle", "semsim")
POLICIES = ("flip", "shift", "rotate", "invert")


@dataclass(frozen=True)
class ArchitectureConfig:
    """A classifier architecture of `flaudit.models` (name, width, batch norm)."""

    name: str = "lenet"
    width: int | None = None
    bn: bool = False


@dataclass(frozen=True)
class VariantConfig:
    """A model variant: `vanilla`, `augment` (with `policy`), `gaussian` (`sigma`) or `prune` (`ratio`)."""

    name: str
    kind: str = "vanilla"
    policy: str | None = None
    sigma: float = 0.0
    ratio: float = 0.0


@dataclass(frozen=True)
class AttackConfig:
    """An attack of `attacks.registry` with parameters overriding its defaults."""

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StudyScenario:
    """The study's settings (the YAML file maps 1:1 onto these fields).

    Args:
        name: study name (output folder name under `output`).
        output: where results go.
        seed: every random choice.
        datasets: embedded or downloaded datasets by name.
        architectures: classifier architectures.
        variants: model variants per architecture.
        attacks: attacks run on every variant.
        images: client images attacked per dataset (the same for every model).
        attack_batch: images per FedSGD update.
        classifier_epochs: epochs each classifier variant is trained.
        classifier_lr: its SGD learning rate.
        oracle_epochs: epochs of the machine annotator.
        holdout: `attack` or `architecture`: what SemSim leaves out in each fold.
        semsim: `semsim.train.TrainConfig` fields.
        human_annotations: optional JSON Lines of people's judgements, used instead of the oracle.
        n_boot: bootstrap resamples of the correlation CIs.
        device: `auto`, `cpu`, `cuda`.
    """

    name: str = "metric-study"
    output: str = "runs/study"
    seed: int = field(default=0, metadata=bounds(0))
    datasets: tuple[str, ...] = ("digits",)
    architectures: tuple[ArchitectureConfig, ...] = (ArchitectureConfig("lenet"), ArchitectureConfig("convnet", width=8))
    variants: tuple[VariantConfig, ...] = (VariantConfig("vanilla"),)
    attacks: tuple[AttackConfig, ...] = (AttackConfig("dlg", {"iterations": 30}),)
    images: int = field(default=16, metadata=bounds(1))
    attack_batch: int = field(default=4, metadata=bounds(1))
    classifier_epochs: int = field(default=2, metadata=bounds(1))
    classifier_lr: float = field(default=0.05, metadata=bounds(0.0, low_open=True))
    oracle_epochs: int = field(default=15, metadata=bounds(1))
    holdout: str = "attack"
    semsim: Mapping[str, Any] = field(default_factory=dict)
    human_annotations: str | None = None
    n_boot: int = field(default=1000, metadata=bounds(1))
    device: str = "auto"


def load_study(path: str | Path) -> StudyScenario:
    """Read and validate a study scenario YAML.

    Raises:
        ScenarioError: the file is missing, not YAML, or a key/value is not allowed (the
            message names the file, the key path and what is allowed).
    """
    path = Path(path)
    if not path.is_file():
        raise ScenarioError(f"{path}: study scenario not found; start from scenarios/metric_study.yaml")
    scenario = parse_yaml_as(StudyScenario, path.read_text(encoding="utf-8"), source=str(path))
    _validate(scenario, str(path))
    return scenario


def _validate(s: StudyScenario, where: str) -> None:
    if s.holdout not in ("attack", "architecture"):
        raise ScenarioError(f"{where}: holdout: {s.holdout!r}; allowed: attack, architecture")
    groups = len(s.attacks) if s.holdout == "attack" else len(s.architectures)
    if groups < 2:
        raise ScenarioError(f"{where}: holdout: leave-one-{s.holdout}-out needs at least two {s.holdout}s")
    for i, v in enumerate(s.variants):
        if v.kind not in ("vanilla", "augment", "gaussian", "prune"):
            raise ScenarioError(f"{where}: variants[{i}].kind: {v.kind!r}; allowed: vanilla, augment, gaussian, prune")
        if v.kind == "augment" and v.policy not in POLICIES:
            raise ScenarioError(f"{where}: variants[{i}].policy: {v.policy!r}; allowed: {', '.join(POLICIES)}")
        if v.kind == "prune" and not 0 <= v.ratio <= 1:
            raise ScenarioError(f"{where}: variants[{i}].ratio: {v.ratio}; must be in [0, 1]")
        if v.kind == "gaussian" and v.sigma < 0:
            raise ScenarioError(f"{where}: variants[{i}].sigma: {v.sigma}; must be >= 0")
    if len({v.name for v in s.variants}) != len(s.variants):
        raise ScenarioError(f"{where}: variants: names must be unique")
    if s.images < s.attack_batch or s.images % s.attack_batch:
        raise ScenarioError(f"{where}: images: {s.images} must be a positive multiple of attack_batch ({s.attack_batch})")
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(s.semsim) - known)
    if unknown:
        raise ScenarioError(f"{where}: semsim: unknown key(s) {unknown}; allowed: {sorted(known)}")
    for i, a in enumerate(s.attacks):
        if a.name not in ATTACK_PARAMS:
            raise ScenarioError(f"{where}: attacks[{i}].name: {ATTACK_PARAMS.unknown_message(a.name)}")
