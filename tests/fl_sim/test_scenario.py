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
        ("federation: {clinets: 3}",
         r"f\.yaml: federation\.clinets: unknown key \(did you mean 'clients'\?\); allowed here: clients, rounds, fraction,"),
        ("federation: {clients: -2}",
         r"federation\.clients: -2 is out of range; allowed: int in \[1, inf\) \(default 4\) - number of simulated clients$"),
        ("federation: {clients: three}", r"federation\.clients: expected an integer, got 'three'; allowed: int in \[1, inf\)"),
        ("federation: {protocol: fedprox}", r"federation\.protocol: 'fedprox' is not allowed; allowed: one of 'fedsgd', 'fedavg' \(default 'fedavg'\)"),
        ("data: {partition: dirichlet, alpha: 0}", r"data\.alpha: 0 is out of range; allowed: float in \(0, 1000000\] \(default 0\.5\)"),
        ("data: {dataset: mnist}", r"data\.dataset: no dataset 'mnist'.*known: .*digits"),
        ("model: {name: vgg}", r"model\.name: no model 'vgg'; known: convnet, lenet, resnet18, resnet20, resnet32"),
        ("defenses: [{name: dp}]", r"defenses\[0\]\.name: no defense 'dp'.*known: clip_noise, gaussian, prune"),
        ("defenses: [{name: prune, params: {ratio: 2}}]", r"defenses\[0\]\.params\.ratio: 2 is out of range; allowed: float in \[0, 1\] - share"),
        ("defenses: [{name: gaussian, params: {sigm: 1}}]", r"defenses\[0\]\.params\.sigm: unknown key \(did you mean 'sigma'\?\); allowed here: sigma$"),
        ("defenses: [{name: gaussian}]", r"defenses\[0\]\.params\.sigma: required key is missing; allowed: float in \[0, 1000\] - standard"),
        ("capture: {rounds: 1}", r"capture\.rounds: expected a list, got int; allowed: list of int in \[1, inf\) or null \(default null\)"),
        ("capture: {rounds: [1, 0]}", r"capture\.rounds\[1\]: 0 is out of range; allowed: list of int in \[1, inf\)"),
        ("audit: {metrics: [mse, pnsr]}", r"audit\.metrics\[1\]: 'pnsr' is not allowed \(did you mean 'psnr'\?\); allowed: list of one of 'mse', 'psnr'"),
        ("attack: {name: idl}", r"attack\.name: no attack 'idl' \(did you mean 'idlg'\?\); known: analytic_linear, dlg,"),
        ("attack: {params: {lr: -1}}", r"attack\.params\.lr: -1 is out of range; allowed: float in \(0, 1000\] \(default 0\.1\) - Adam step size$"),
        ("attack: {updates_per_batch: 0}", r"attack\.updates_per_batch: 0 is out of range; allowed: int in \[1, 4096\]"),
        ("sweep: [{defense: gaussian, param: sigm, values: [1]}]", r"sweep\[0\]\.param: 'sigm' is not a parameter of 'gaussian' \(did you mean 'sigma'\?\)"),
        ("sweep: [{defense: gaussian, param: sigma, values: [1, -1]}]", r"sweep\[0\]\.values\[1\]: -1 is out of range; allowed: float in \[0, 1000\]"),
        ("sweep: [{defense: clip_noise, param: clip_norm, values: [1]}]", r"sweep\[0\]\.defense: 'clip_noise' is not in defenses, so its noise_multiplier has no value"),
        ("federation: 3", r"f\.yaml: federation: expected a mapping, got int$"),
        ("federation: {fraction: .nan}", r"federation\.fraction: nan is not a finite number; allowed: float in \(0, 1\]"),
        ("- a\n- b", r"top level must be a mapping"),
        ("federation: [1, 2", r"not valid YAML"),
        ("model: {bn: yes please}", r"model\.bn: expected true or false, got 'yes please'; allowed: true or false \(default true\)"),
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
    assert main(["validate", str(bad), str(good)]) == 1
    captured = capsys.readouterr()
    assert "bad.yaml: federation.clients: 0 is out of range" in captured.err and "Traceback" not in captured.err
    assert "good.yaml: ok" in captured.out, "every file is checked, not only up to the first bad one"
