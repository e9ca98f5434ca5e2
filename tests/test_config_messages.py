"""A config built in Python is checked like one read from YAML: the same message, less the file.

The loader says `FILE: key.path: problem; allowed: ...`; `__post_init__` says
`Class.key: problem; allowed: ...`; the problem and what is allowed are the same text.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from attacks.config import AttackConfig
from flaudit.errors import ScenarioError
from flaudit.fields import FieldError
from fl_sim.scenario import (
    AuditConfig, CaptureConfig, DataConfig, DefenseConfig, FederationConfig, ModelConfig, Scenario, SweepAxis, parse_scenario,
    parse_yaml_as,
)
from pipeline.study_scenario import StudyScenario, VariantConfig
from semsim.config import TrainConfig

TWO_ATTACKS = "attacks: [{name: dlg}, {name: idlg}]\n"
STUDY_ATTACKS = (AttackConfig("dlg"), AttackConfig("idlg"))

#: (YAML text, its key path, a Python constructor with the same bad value, the Python key path)
SCENARIO_CASES: list[tuple[str, str, Callable[[], Any], str]] = [
    ("federation: {clients: 0}", "federation.clients", lambda: FederationConfig(clients=0), "FederationConfig.clients"),
    ("federation: {protocol: fedprox}", "federation.protocol", lambda: FederationConfig(protocol="fedprox"), "FederationConfig.protocol"),
    ("federation: {learning_rate: x}", "federation.learning_rate", lambda: FederationConfig(learning_rate="x"), "FederationConfig.learning_rate"),
    ("data: {alpha: 0}", "data.alpha", lambda: DataConfig(alpha=0), "DataConfig.alpha"),
    ("data: {dataset: mnist}", "data.dataset", lambda: DataConfig(dataset="mnist"), "DataConfig.dataset"),
    ("model: {name: vgg}", "model.name", lambda: ModelConfig(name="vgg"), "ModelConfig.name"),
    ("model: {bn: 1}", "model.bn", lambda: ModelConfig(bn=1), "ModelConfig.bn"),
    ("defenses: [{name: prune, params: {ratio: 2}}]", "defenses[0].params.ratio",
     lambda: DefenseConfig("prune", {"ratio": 2}), "DefenseConfig.params.ratio"),
    ("defenses: [{name: dp}]", "defenses[0].name", lambda: DefenseConfig("dp"), "DefenseConfig.name"),
    ("capture: {rounds: [1, 0]}", "capture.rounds[1]", lambda: CaptureConfig(rounds=(1, 0)), "CaptureConfig.rounds[1]"),
    ("audit: {align_by: psnr}", "audit.align_by", lambda: AuditConfig(align_by="psnr"), "AuditConfig.align_by"),
    ("sweep: [{defense: gaussian, param: sigma, values: [-1]}]", "sweep[0].values[0]",
     lambda: SweepAxis("gaussian", "sigma", (-1,)), "SweepAxis.values[0]"),
    ("threads: 0", "threads", lambda: Scenario(threads=0), "Scenario.threads"),
    ("attack: {updates_per_batch: 0}", "attack.updates_per_batch", lambda: AttackConfig(updates_per_batch=0), "AttackConfig.updates_per_batch"),
    ("attack: {seed: -3}", "attack.seed", lambda: AttackConfig(seed=-3), "AttackConfig.seed"),
    ("attack: {name: dlg, params: {lr: -1}}", "attack.params.lr", lambda: AttackConfig("dlg", {"lr": -1}), "AttackConfig.params.lr"),
    ("attack: {name: dlg, params: {lrr: 1}}", "attack.params.lrr", lambda: AttackConfig("dlg", {"lrr": 1}), "AttackConfig.params.lrr"),
    ("attack: {name: idl}", "attack.name", lambda: AttackConfig("idl"), "AttackConfig.name"),
]

STUDY_CASES: list[tuple[str, str, Callable[[], Any], str]] = [
    (TWO_ATTACKS + "semsim: {epochs: 0}", "semsim.epochs", lambda: TrainConfig(epochs=0), "TrainConfig.epochs"),
    (TWO_ATTACKS + "semsim: {val_fraction: 1}", "semsim.val_fraction", lambda: TrainConfig(val_fraction=1), "TrainConfig.val_fraction"),
    (TWO_ATTACKS + "semsim: {pretrained: yes}", "semsim.pretrained", lambda: TrainConfig(pretrained=True), "TrainConfig.pretrained"),
    (TWO_ATTACKS + "images: 6", "images", lambda: StudyScenario(images=6, attacks=STUDY_ATTACKS), "StudyScenario.images"),
    (TWO_ATTACKS + "holdout: dataset", "holdout", lambda: StudyScenario(holdout="dataset", attacks=STUDY_ATTACKS), "StudyScenario.holdout"),
    ("attacks: [{name: dlg}]", "holdout", lambda: StudyScenario(attacks=STUDY_ATTACKS[:1]), "StudyScenario.holdout"),
    (TWO_ATTACKS + "variants: [{name: a, augment: swirl}]", "variants[0].augment", lambda: VariantConfig("a", augment="swirl"), "VariantConfig.augment"),
    (TWO_ATTACKS + "variants: [{name: a, defenses: [{name: prune, params: {ratio: 2}}]}]", "variants[0].defenses[0].params.ratio",
     lambda: DefenseConfig("prune", {"ratio": 2}), "DefenseConfig.params.ratio"),
    ("attacks: [{name: dlg, params: {iterations: 0}}, {name: idlg}]", "attacks[0].params.iterations",
     lambda: AttackConfig("dlg", {"iterations": 0}), "AttackConfig.params.iterations"),
    (TWO_ATTACKS + "variants: [{name: ../up}]", "variants[0].name", lambda: VariantConfig("../up"), "VariantConfig.name"),
]


def _problem(message: str, prefix: str) -> str:
    assert message.startswith(prefix + ": "), (message, prefix)
    return message.removeprefix(prefix + ": ")


@pytest.mark.parametrize(("text", "path", "build", "python_path"), SCENARIO_CASES + STUDY_CASES, ids=lambda v: v if isinstance(v, str) else "")
def test_python_and_yaml_say_the_same(text: str, path: str, build: Callable[[], Any], python_path: str) -> None:
    cls = StudyScenario if (text, path, build, python_path) in STUDY_CASES else Scenario
    with pytest.raises(ScenarioError) as from_yaml:
        parse_yaml_as(cls, text, source="f.yaml")
    with pytest.raises(FieldError) as from_python:
        build()
    assert _problem(str(from_yaml.value), f"f.yaml: {path}") == _problem(str(from_python.value), python_path)


def test_a_valid_scenario_is_the_same_built_either_way() -> None:
    text = "federation: {clients: 2, fraction: 1}\ndefenses: [{name: clip_noise, params: {clip_norm: 1, noise_multiplier: 0}}]\n"
    built = Scenario(
        federation=FederationConfig(clients=2, fraction=1),
        defenses=(DefenseConfig("clip_noise", {"clip_norm": 1, "noise_multiplier": 0}),),
    )
    assert parse_scenario(text) == built
    assert built.defenses[0].params == {"clip_norm": 1.0, "noise_multiplier": 0.0, "delta": 1e-5}  # filled, floats
