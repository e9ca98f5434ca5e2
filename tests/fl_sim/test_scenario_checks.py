"""What can be checked before the federation is: names, devices, selections that match nothing,
attack/model pairs, empty and repeated sweeps, absurd values, cost limits, and what the machine lacks."""

from __future__ import annotations

import dataclasses
import time

import pytest
import torch

from attacks.analytic import first_linear_layer
from attacks.params import ATTACK_PARAMS
from fl_sim.preflight import check_before_run, environment_problems
from fl_sim.scenario import (
    MODEL_FEATURES,
    Scenario,
    dump_scenario,
    model_features,
    parse_scenario,
)
from flaudit.errors import FlauditError, ScenarioError
from flaudit.models import ModelSpec, build_model
from pipeline.runs import run_one


def _problems(text: str) -> list[str]:
    with pytest.raises(ScenarioError) as err:
        parse_scenario(text, source="f.yaml")
    return str(err.value).splitlines()


# --- names and devices -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../../../x", "a/b", ".hidden", "-flag", "a..b", "trailing.", "with space", "", "x" * 101, "é"])
def test_a_run_name_is_a_plain_name(name):
    (line,) = _problems(f"name: {name!r}")
    assert line.startswith("f.yaml: name: ") and " is not allowed; allowed: a plain name: letters, digits" in line


@pytest.mark.parametrize("name", ["quickstart", "run-2_b", "v1.2", "gaussian-sigma-1e-05", "x" * 100])
def test_plain_names_are_accepted(name):
    assert parse_scenario(f"name: {name!r}").name == name


@pytest.mark.parametrize("device", ["tpu", "gpu", "cuda:", "cuda:x", "cuda0", "CPU", ""])
def test_a_device_is_auto_cpu_cuda_cuda_n_or_mps(device):
    (line,) = _problems(f"device: {device!r}")
    assert line == (f"f.yaml: device: {device!r} is not allowed; allowed: one of 'auto', 'cpu', 'cuda', 'cuda:N', 'mps' "
                    "(default 'auto') - where attacks and metrics run")


# --- selections --------------------------------------------------------------------------------------


def test_selections_beyond_the_run_or_never_captured_are_each_named():
    assert _problems(
        "federation: {clients: 4, rounds: 3}\ncapture: {rounds: [1, 5], clients: [0, 4]}\nattack: {name: idlg, rounds: [2], clients: [1]}"
    ) == [
        "f.yaml: capture.rounds[1]: round 5 is beyond the run's 3 rounds (federation.rounds)",
        "f.yaml: capture.clients[1]: client 4 does not exist: the run's 4 clients are 0 to 3 (federation.clients)",
        "f.yaml: attack.rounds[0]: round 2 is not captured (capture.rounds: [1, 5])",
        "f.yaml: attack.clients[0]: client 1 is not captured (capture.clients: [0, 4])",
    ]


def test_negative_rounds_and_empty_selections_are_refused():
    assert _problems("capture: {rounds: [-1], clients: []}\nattack: {rounds: []}") == [
        ("f.yaml: capture.rounds[0]: -1 is out of range; allowed: list of int in [1, inf) or null (default null) "
        "- rounds whose updates are recorded (null: all)"),
        ("f.yaml: capture.clients: [] is empty; list at least one value; allowed: list of int in [0, inf) or null (default null) "
        "- clients whose updates are recorded (null: all)"),
        ("f.yaml: attack.rounds: [] is empty; list at least one value; allowed: list of int in [1, inf) or null (default null) "
        "- rounds to attack (default: every captured round)"),
    ]


def test_a_capture_of_clients_the_sampling_never_trains_is_refused():
    # fraction 0.25 of 4 clients: one client a round, chosen by the seed; client 3 is not chosen in round 1 with seed 0.
    base = "federation: {clients: 4, rounds: 2, fraction: 0.25, seed: 0}\n"
    (line,) = _problems(base + "capture: {rounds: [1], clients: [3]}")
    assert line == ("f.yaml: capture: selects no update: federation.fraction 0.25 trains 1 of the 4 clients each round, "
                    "chosen by federation.seed, and clients [3] train in none of rounds [1]")
    trained = parse_scenario(base + "capture: {rounds: [1]}")  # who does train in round 1
    assert trained.capture.rounds == (1,)
    (line,) = _problems(base + "capture: {rounds: [1, 2], clients: [0, 1]}\nattack: {name: idlg, rounds: [1], clients: [0]}")
    assert line.startswith("f.yaml: attack: selects no captured update: federation.fraction 0.25 trains 1 of the 4 clients")


# --- attacks and models ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "attack", "message"),
    [
        ("{name: lenet}", "gradinversion", ("'gradinversion' needs a model with batch normalisation (for its BN-statistics prior); "
                                           "model 'lenet' has none; attacks that suit it: dlg, dlg_paper, idlg, idlg_paper, inverting_gradients")),
        ("{name: convnet, bn: false}", "gradinversion", "model 'convnet' with bn: false has none"),
        ("{name: resnet20}", "analytic_linear", ("'analytic_linear' needs a model whose first layer is linear with a bias on the "
                                               "flattened image; model 'resnet20' has none; attacks that suit it: dlg, dlg_paper, gradinversion")),
    ],
)
def test_an_attack_must_suit_the_model(model, attack, message):
    (line,) = _problems(f"model: {model}\nattack: {{name: {attack}}}")
    assert line.startswith("f.yaml: attack.name: ") and message in line


def test_gradinversion_with_batch_norm_is_fine():
    assert parse_scenario("model: {name: convnet, width: 4}\nattack: {name: gradinversion}").attack.name == "gradinversion"


@pytest.mark.parametrize("name", sorted(MODEL_FEATURES))
@pytest.mark.parametrize("bn", [True, False])
def test_model_features_are_what_the_models_are(name, bn):
    from fl_sim.scenario import ModelConfig

    model = build_model(ModelSpec(name, num_classes=3, in_channels=1, image_size=16, width=4, bn=bn))
    batch_norm = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    try:
        first_linear_layer(model, 16 * 16)
        first_linear = True
    except FlauditError:
        first_linear = False
    features = model_features(ModelConfig(name, width=4, bn=bn))
    assert ("batch_norm" in features, "first_linear" in features) == (batch_norm, first_linear)
    assert set(MODEL_FEATURES[name]) <= {need for cls in map(ATTACK_PARAMS.get, ATTACK_PARAMS) for need in cls.needs}


# --- sweeps and absurd values ------------------------------------------------------------------------


def test_empty_and_repeated_sweeps_are_refused():
    assert _problems("sweep: [{defense: prune, param: ratio, values: []}]") == [
        "f.yaml: sweep[0].values: [] is empty; list at least one value; allowed: list of float - one variant per value",
    ]
    assert _problems("sweep: [{defense: prune, param: ratio, values: [0.5, 0.1]}, {defense: prune, param: ratio, values: [0.5]}]") == [
        "f.yaml: sweep[1].values[0]: 0.5 makes variant 'prune-ratio-0.5' again (sweep[0].values[0]); list each value once",
    ]


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("defenses: [{name: gaussian, params: {sigma: 1e308}}]", "defenses[0].params.sigma"),
        ("federation: {learning_rate: 1e308}", "federation.learning_rate"),
        ("sweep: [{defense: gaussian, param: sigma, values: [0, 1e308]}]", "sweep[0].values[1]"),
        ("defenses: [{name: clip_noise, params: {clip_norm: 1e308, noise_multiplier: 1}}]", "defenses[0].params.clip_norm"),
        ("attack: {name: inverting_gradients, params: {lr: 1e308}}", "attack.params.lr"),
        ("data: {partition: dirichlet, alpha: 1e308}", "data.alpha"),
    ],
)
def test_absurdly_large_values_are_out_of_range(text, key):
    (line,) = _problems(text)
    assert line.startswith(f"f.yaml: {key}: 1e+308 is out of range; allowed: float in ")


# --- cost limits -------------------------------------------------------------------------------------


UNBOUNDED = ("federation: {clients: 1000000000000, local_steps: 1000000000, protocol: fedavg}\nmodel: {width: 100000000}\n"
             "attack: {name: dlg, params: {iterations: 1000000000000}}\n")


def test_costs_past_the_limits_are_refused_with_the_number_the_bound_and_the_override():
    lines = _problems(UNBOUNDED)
    assert [line.split(": ")[1] for line in lines] == ["federation.clients", "federation.local_steps", "model.width", "attack.params.iterations"]
    assert lines[0] == (
        "f.yaml: federation.clients: 1000000000000 is above the cost limit 10000: it would exhaust memory or run for days; "
        "to run it on purpose, set `limits: {clients: 1000000000000}` at the top level of the scenario; "
        "allowed: int in [1, inf) (default 4) - number of simulated clients"
    )
    assert "1000000000000 is above the cost limit 100000" in lines[3] and "`limits: {iterations: 1000000000000}`" in lines[3]


def test_limits_raise_a_bound_on_purpose_and_travel_with_the_scenario():
    text = "federation: {clients: 20000}\nlimits: {clients: 20000}\n"
    scenario = parse_scenario(text)
    assert scenario.federation.clients == 20000 and scenario.limits == {"clients": 20000}
    assert parse_scenario(dump_scenario(scenario)) == scenario  # the run directory's scenario.yaml reads back
    assert "above its raised limit 20000 (limits.clients)" in _problems("federation: {clients: 20001}\nlimits: {clients: 20000}")[0]
    assert Scenario(limits={"clients": 20000}).limits == {"clients": 20000}
    assert _problems("limits: {clinets: 5, width: abc, rounds: 2}") == [
        ("f.yaml: limits.clinets: no key has a cost limit of that name (did you mean 'clients'?); limited keys: batch_size, "
        "clients, image_size, iterations, local_epochs, local_steps, max_iter, rounds, width"),
        ("f.yaml: limits.width: 'abc' does not raise the cost limit of width; allowed: a number of at least 1024 (the largest value "
        "this scenario may ask for; leave the key out to keep 1024)"),
        ("f.yaml: limits.rounds: 2 does not raise the cost limit of rounds; allowed: a number of at least 10000 (the largest value "
        "this scenario may ask for; leave the key out to keep 10000)"),
    ]


def test_every_problem_of_a_file_is_reported_at_once():
    lines = _problems(
        "name: ../x\ndevice: tpu\nfederation: {clients: 0, protcol: fedsgd}\nmodel: {name: vgg}\n"
        "defenses: [{name: prune, params: {ratio: 2}}, {name: dp}]\nsweep: [{defense: prune, param: ratio, values: []}]\n"
    )
    assert [line.split(": ")[1] for line in lines] == [  # in the file's order
        "name", "device", "federation.clients", "federation.protcol", "model.name", "defenses[0].params.ratio", "defenses[1].name",
        "sweep[0].values",
    ]


# --- what the machine lacks --------------------------------------------------------------------------


def test_a_device_that_is_not_here_is_named(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    scenario = parse_scenario("device: 'cuda:3'")
    assert [str(p) for p in environment_problems(scenario)] == ["device: 'cuda:3' is not present: this machine has 2 CUDA device(s), cuda:0 to cuda:1"]
    assert environment_problems(scenario, device="cuda:1") == []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert [str(p) for p in environment_problems(scenario, device="cuda")] == [
        "device: 'cuda' is not present: no CUDA GPU is visible on this machine; use auto or cpu"]
    assert environment_problems(scenario, device="cpu") == [] and environment_problems(scenario, device="auto") == []


def test_an_offline_missing_dataset_fails_in_seconds_and_nothing_is_written(tmp_path):
    scenario = parse_scenario(f"data: {{dataset: cifar10, root: {tmp_path / 'data'}}}\nmodel: {{name: resnet20}}")
    started = time.monotonic()
    with pytest.raises(ScenarioError) as err:
        run_one(scenario, tmp_path / "run", device="cpu", force=False, verbose=False, audit=None)
    assert time.monotonic() - started < 30
    assert str(err.value).startswith(f"data.dataset: 'cifar10' is unavailable: not found: put cifar-10-batches-py/ under {tmp_path / 'data'}")
    assert "FLAUDIT_OFFLINE is set, so it will not download" in str(err.value)
    assert not (tmp_path / "run").exists()


def test_an_image_folder_is_checked_file_by_file_before_the_run(tmp_path):
    from PIL import Image

    folder = tmp_path / "images"
    for label in ("a", "b"):
        (folder / label).mkdir(parents=True)
        for index in range(3):
            Image.new("RGB", (8, 8), color=(index * 40, 0, 0)).save(folder / label / f"{index}.png")
    scenario = parse_scenario(f"data: {{dataset: 'imagefolder:{folder}', image_size: 8}}\nfederation: {{clients: 2}}")
    check_before_run(scenario, device="cpu")
    (folder / "b" / "2.png").write_bytes(b"not an image at all")
    with pytest.raises(ScenarioError) as err:
        check_before_run(scenario, device="cpu")
    assert str(err.value) == f"data.dataset: 1 image file(s) cannot be read: {folder / 'b' / '2.png'} (UnidentifiedImageError); remove or replace them"
    missing = dataclasses.replace(scenario, data=dataclasses.replace(scenario.data, dataset=f"imagefolder:{tmp_path / 'none'}"))
    assert [str(p) for p in environment_problems(missing)] == [
        f"data.dataset: imagefolder is unavailable: {tmp_path / 'none'} is not a folder; it must hold one sub-folder of images per class"]


def test_more_clients_than_the_data_can_give_is_refused_before_the_run():
    scenario = parse_scenario("federation: {clients: 5000}")
    with pytest.raises(ScenarioError) as err:
        check_before_run(scenario, device="cpu")
    assert str(err.value) == "federation.clients: 1437 training examples cannot give 5000 clients 2 each; use fewer clients"
