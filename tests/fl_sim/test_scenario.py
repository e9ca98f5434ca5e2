"""Scenario files: every shipped scenario loads; bad input fails with file, key path and what is allowed."""

from __future__ import annotations

import pytest

from pipeline.cli import main
from flaudit.errors import ScenarioError
from fl_sim.scenario import load_scenario, parse_scenario
from tests.conftest import REPO


@pytest.mark.parametrize("path", sorted((REPO / "scenarios").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_scenarios_validate(path, capsys):
    assert main(["validate", str(path)]) == 0
    assert f"{path}: ok" in capsys.readouterr().out


def test_defaults_and_types():
    scenario = parse_scenario("federation: {clients: 5, fraction: 0.4}\ndefenses: [{name: gaussian, params: {sigma: 1e-3}}]")
    assert scenario.federation.clients == 5 and scenario.federation.fraction == 0.4
    assert scenario.defenses[0].params == {"sigma": 1e-3}
    assert scenario.model.name == "lenet" and scenario.data.dataset == "digits"


@pytest.mark.parametrize(
    "text, message",
    [
        ("federation: {clinets: 3}", r"f\.yaml: federation\.clinets: unknown key; did you mean 'clients'\?"),
        ("federation: {clients: -2}", r"federation\.clients: -2 is out of range; allowed: >= 1"),
        ("federation: {clients: three}", r"federation\.clients: expected an integer, got 'three'"),
        ("federation: {protocol: fedprox}", r"federation\.protocol: 'fedprox' is not allowed.*allowed: fedsgd, fedavg"),
        ("data: {partition: dirichlet, alpha: 0}", r"data\.alpha: 0 is out of range; allowed: > 0"),
        ("data: {dataset: mnist}", r"data\.dataset: no dataset 'mnist'.*known: .*digits"),
        ("model: {name: vgg}", r"model\.name: no model 'vgg'; known: convnet, lenet, resnet18, resnet20, resnet32"),
        ("defenses: [{name: dp}]", r"defenses\[0\]\.name: no defense 'dp'.*known: clip_noise, gaussian, prune"),
        ("defenses: [{name: prune, params: {ratio: 2}}]", r"defenses\[0\]\.ratio: 2 is out of range"),
        ("capture: {rounds: 1}", r"capture\.rounds: expected a list"),
        ("- a\n- b", r"top level must be a mapping"),
        ("federation: [1, 2", r"not valid YAML"),
        ("model: {bn: yes please}", r"model\.bn: expected true or false"),
    ],
)
def test_bad_input_names_file_key_and_allowed(text, message):
    with pytest.raises(ScenarioError, match=message):
        parse_scenario(text, source="f.yaml")


def test_missing_file():
    with pytest.raises(ScenarioError, match="no such scenario file"):
        load_scenario("does/not/exist.yaml")


def test_validate_command_reports_without_traceback(write_scenario, capsys):
    good = write_scenario("federation: {clients: 2}", "good.yaml")
    bad = write_scenario("federation: {clients: 0}", "bad.yaml")
    assert main(["validate", str(good)]) == 0
    assert "ok" in capsys.readouterr().out
    assert main(["validate", str(bad), str(good)]) == 2
    captured = capsys.readouterr()
    assert "bad.yaml: federation.clients: 0 is out of range" in captured.err and "Traceback" not in captured.err
    assert "good.yaml: ok" in captured.out, "every file is checked, not only up to the first bad one"
