"""Property tests of the scenario loader: random bytes, random text and mutated shipped scenarios give a
valid scenario or a ScenarioError, never another exception; a valid one reads back the same."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fl_sim.preflight import environment_problems
from fl_sim.scenario import (
    AuditConfig,
    CaptureConfig,
    DataConfig,
    FederationConfig,
    ModelConfig,
    Scenario,
    SweepAxis,
    dump_scenario,
    load_scenario,
    parse_scenario,
    parse_yaml_as,
)
from flaudit.errors import ScenarioError
from pipeline.cli import main
from pipeline.study_scenario import StudyScenario

REPO = Path(__file__).resolve().parents[2]
RUN_SCENARIOS = sorted(p for p in (REPO / "scenarios").glob("*.yaml") if "architectures:" not in p.read_text(encoding="utf-8"))
STUDY = REPO / "scenarios" / "metric_study.yaml"

# Modest and unhurried: a few hundred cases per run keep CI quick; no deadline, as the machine is shared.
SETTINGS = settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

KEYS = sorted({f.name for cls in (Scenario, FederationConfig, DataConfig, ModelConfig, CaptureConfig, AuditConfig, SweepAxis)
               for f in dataclasses.fields(cls)} | {"name", "params", "iterations", "sigma", "ratio", "lr", "<<"})
WORDS = ["fedsgd", "fedavg", "digits", "cifar10", "lenet", "convnet", "idlg", "gradinversion", "analytic_linear", "gaussian",
         "prune", "sigma", "auto", "cuda:1", "tpu", "../x", ".x", "1e308", "-1", "0", "null", "~", "yes", "2024-02-30", "&a", "*a"]
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 20), st.integers(), st.sampled_from([10**12, 10**8, 2**70, -(10**30)]),
    st.floats(), st.text(max_size=12), st.sampled_from(WORDS),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
YAMLISH = st.text(alphabet="{}[]:,-&*!|>'\"#%@? \n\t\ufeff.eE+_01abxyz", max_size=300)


def _loads_or_refuses(text: str, cls: type = Scenario) -> Any:
    """The loader's contract: a valid config, or ScenarioError; any other exception fails the test."""
    try:
        result = parse_yaml_as(cls, text, source="f.yaml")
    except ScenarioError as err:
        assert str(err).startswith("f.yaml: ") and all(line.startswith("f.yaml: ") for line in str(err).splitlines())
        return None
    assert isinstance(result, cls)
    if cls is Scenario:
        assert parse_scenario(dump_scenario(result)) == result  # what the run directory records reads back the same
        assert isinstance(environment_problems(result), list)
    return result


@st.composite
def _mutated(draw: st.DrawFn, base: Any) -> Any:
    data = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 4))):
        data = _mutate(draw, data)
    return data


def _mutate(draw: st.DrawFn, node: Any) -> Any:
    """One change somewhere in the tree: a value replaced, a key dropped, renamed or added, a value nested deeper."""
    children = list(node) if isinstance(node, dict) else list(range(len(node))) if isinstance(node, list) else []
    if children and draw(st.integers(0, 2)):  # go deeper, mostly
        child = draw(st.sampled_from(children))
        node[child] = _mutate(draw, node[child])
        return node
    action = draw(st.sampled_from(["replace", "wrap", "drop", "rename", "add"]))
    if action == "replace" or not children and action != "wrap":
        return draw(VALUES)
    if action == "wrap":
        return draw(st.sampled_from([[node], {"x": node}, {draw(st.sampled_from(KEYS)): node}]))
    child = draw(st.sampled_from(children))
    if action == "drop":
        del node[child]
    elif action == "rename" and isinstance(node, dict):
        node[draw(st.sampled_from(KEYS) | st.text(max_size=6))] = node.pop(child)
    elif isinstance(node, dict):
        node[draw(st.sampled_from(KEYS))] = draw(VALUES)
    else:
        node.append(draw(VALUES))
    return node


@st.composite
def _edited(draw: st.DrawFn, text: str) -> str:
    """The file's text with a few characters or lines inserted, deleted or repeated (keys twice, broken indentation)."""
    for _ in range(draw(st.integers(1, 3))):
        lines = text.splitlines(keepends=True) or [""]
        at = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(["insert", "delete", "repeat", "indent"]))
        if action == "insert":
            column = draw(st.integers(0, len(lines[at])))
            lines[at] = lines[at][:column] + draw(YAMLISH) + lines[at][column:]
        elif action == "delete":
            del lines[at]
        elif action == "repeat":
            lines.insert(draw(st.integers(0, len(lines))), lines[at])
        else:
            lines[at] = " " * draw(st.integers(1, 6)) + lines[at]
        text = "".join(lines)
    return text


@SETTINGS
@given(st.binary(max_size=3000))
def test_random_bytes_in_a_file(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("bytes") / "s.yaml"
    path.write_bytes(content)
    try:
        load_scenario(path)
    except ScenarioError as err:
        assert str(err).startswith(f"{path}: ")


@SETTINGS
@given(st.text(max_size=1000) | YAMLISH)
def test_random_text(text):
    _loads_or_refuses(text)


@SETTINGS
@given(st.sampled_from(RUN_SCENARIOS).flatmap(lambda p: _mutated(yaml.safe_load(p.read_text(encoding="utf-8")))),
       st.booleans())
def test_mutated_scenarios(data, flow):
    _loads_or_refuses(yaml.safe_dump(data, default_flow_style=flow, sort_keys=False, allow_unicode=True))


@SETTINGS
@given(st.sampled_from(RUN_SCENARIOS).flatmap(lambda p: _edited(p.read_text(encoding="utf-8"))))
def test_edited_scenario_text(text):
    _loads_or_refuses(text)


@SETTINGS
@given(_mutated(yaml.safe_load(STUDY.read_text(encoding="utf-8"))) | _edited(STUDY.read_text(encoding="utf-8")))
def test_mutated_study_scenarios(data):
    text = data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False)
    _loads_or_refuses(text, StudyScenario)


@settings(max_examples=40, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])  # capsys is read out each time
@given(st.sampled_from(RUN_SCENARIOS).flatmap(lambda p: _edited(p.read_text(encoding="utf-8"))))
def test_validate_never_raises(tmp_path_factory, capsys, text):
    path = tmp_path_factory.mktemp("validate") / "s.yaml"
    path.write_text(text, encoding="utf-8")
    assert main(["validate", str(path)]) in (0, 1)
    assert "Traceback" not in capsys.readouterr().err
