"""The scenario loader turns any bytes into a scenario or one ScenarioError naming the file, and the
line or key path: encodings, files that are not files, nesting, aliases, duplicate keys, documents, tags."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fl_sim.scenario import (
    MAX_BYTES,
    MAX_DEPTH,
    MAX_NODES,
    load_scenario,
    load_yaml,
    parse_scenario,
)
from flaudit.errors import ScenarioError


def _error(text: str) -> str:
    with pytest.raises(ScenarioError) as err:
        parse_scenario(text, source="f.yaml")
    return str(err.value)


def _file_error(path: Path) -> str:
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    return str(err.value)


# --- files and encodings -----------------------------------------------------------------------------


def test_a_file_that_is_not_utf8_names_the_line_and_byte(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: x\ndescription: caf\xe9\n".encode("latin-1"))
    assert _file_error(path) == f"{path}: not UTF-8 text (line 2, byte 24: b'\\xe9'); save it as UTF-8"


def test_a_utf8_byte_order_mark_is_fine_and_utf16_is_named(tmp_path):
    path = tmp_path / "bom.yaml"
    path.write_bytes("\ufeffname: bom\nfederation: {clients: 2}\n".encode("utf-8"))
    scenario = load_scenario(path)
    assert scenario.name == "bom" and scenario.federation.clients == 2
    path.write_bytes("name: x\n".encode("utf-16"))
    assert _file_error(path) == f"{path}: is UTF-16 text; save it as UTF-8"


def test_a_directory_a_missing_file_and_a_fifo(tmp_path):
    assert _file_error(tmp_path) == f"{tmp_path}: is a directory; give a scenario YAML file"
    assert _file_error(tmp_path / "nope.yaml") == f"{tmp_path / 'nope.yaml'}: no such scenario file"
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)  # reading it would block for ever
    assert _file_error(fifo) == f"{fifo}: is not a regular file; give a scenario YAML file"


def test_a_huge_file_is_refused_unread(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_bytes(b"# " + b"x" * MAX_BYTES)
    assert _file_error(path) == f"{path}: larger than {MAX_BYTES // 1024} KiB; a scenario file is a few kB"


def test_control_characters_are_not_yaml():
    assert _error("name: a\x00b\n").startswith("f.yaml: not valid YAML: ")


# --- structure -------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["[" * 500 + "]" * 500, "a: " + "{b: " * 500 + "1" + "}" * 500,
                                  "".join(" " * i + f"k{i}:\n" for i in range(500))])
def test_deep_nesting_is_refused_without_a_recursion_error(text):
    message = _error(text)
    assert "nested deeper than 32 levels" in message and message.startswith("f.yaml: line ")


def test_nesting_through_aliases_is_bounded_too():
    chain = "a0: &a0 " + "[" * 20 + "1" + "]" * 20 + "\n" + "".join(f"a{i}: &a{i} [*a{i - 1}]\n" for i in range(1, 40))
    assert f"nested deeper than {MAX_DEPTH} levels through an alias" in _error(chain)


def test_a_billion_laughs_is_refused_at_once():
    lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 10)]
    message = _error("\n".join(lines))
    assert f"more than {MAX_NODES} values with aliases expanded" in message


def test_an_alias_that_holds_itself_is_refused():
    assert _error("a: &a [1, *a]") == "f.yaml: a[1] (line 1): an alias refers to a collection that holds it"


def test_aliases_and_merge_keys_are_fine_within_the_bounds():
    scenario = parse_scenario(
        "federation: &fed {clients: 2, rounds: 2}\n"
        "capture: {rounds: &r [1, 2], clients: [0]}\n"
        "attack: {name: idlg, rounds: *r, params: {<<: {iterations: 5}, lr: 0.5}}\n"
    )
    assert scenario.attack.rounds == (1, 2) and dict(scenario.attack.params) == {"iterations": 5, "lr": 0.5}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("federation: {clients: 2}\nname: a\nfederation: {rounds: 2}\n",
         "f.yaml: federation (line 3): duplicate key, first given on line 1; give each key once"),
        ("federation:\n  clients: 2\n  rounds: 3\n  clients: 5\n",
         "f.yaml: federation.clients (line 4): duplicate key, first given on line 2; give each key once"),
        ("defenses:\n  - name: gaussian\n    params: {sigma: 1, sigma: 2}\n",
         "f.yaml: defenses[0].params.sigma (line 3): duplicate key, first given on line 3; give each key once"),
    ],
)
def test_a_duplicate_key_at_any_level_is_refused_with_its_path_and_lines(text, message):
    assert _error(text) == message


def test_one_document_only():
    assert _error("name: a\n---\nname: b\n") == "f.yaml: line 2: a second YAML document starts here ('---'); a scenario file holds one"
    assert load_yaml("---\nname: a\n...\n", source="f") == {"name": "a"}


@pytest.mark.parametrize(("text", "kind"), [("- a\n- b", "a list"), ("just text", "a str"), ("3", "a int")])
def test_the_top_level_must_be_a_mapping(text, kind):
    assert _error(text) == f"f.yaml: the top level must be a mapping of sections, got {kind}"


def test_an_empty_file_is_the_default_scenario():
    assert parse_scenario("").name == "scenario" and parse_scenario("# only a comment\n").name == "scenario"


def test_a_key_must_be_a_name():
    assert _error("? [a, b]\n: 1\n") == "f.yaml: the top level (line 1): a key must be a name, not a sequence"


# --- tags and values -------------------------------------------------------------------------------


def test_python_tags_are_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "ran"
    message = _error(f"name: !!python/object/apply:os.system ['touch {marker}']\n")
    assert message.startswith("f.yaml: not valid YAML: line 1, column 7: could not determine a constructor")
    assert not marker.exists()


@pytest.mark.parametrize("value", ["!!int abc", "!!bool maybe", "!!float ''", "!!int ''"])
def test_a_value_that_is_not_what_its_tag_says_is_a_yaml_error(value):
    assert _error(f"federation: {{clients: {value}}}").startswith("f.yaml: not valid YAML: line 1, column 23: ")


def test_dates_stay_text_and_keys_are_their_text():
    assert parse_scenario("name: 2024-02-30\n").name == "2024-02-30"  # not a date (and not a ValueError)
    assert "f.yaml: 1: unknown key" in _error("1: x")


def test_huge_and_long_values_give_short_messages():
    message = _error("federation: {clients: 0x" + "f" * 20_000 + "}")
    assert message.startswith("f.yaml: federation.clients: an integer of about 24082 digits is above the cost limit 10000")
    assert len(message) < 500
    message = _error("model: {name: " + "v" * 100_000 + "}")
    assert message.startswith("f.yaml: model.name: no model 'vvvv") and len(message) < 300


def test_a_file_of_thousands_of_problems_lists_the_first_fifty():
    lines = _error("".join(f"k{i}: {i}\n" for i in range(3000))).splitlines()
    assert len(lines) == 51 and lines[0].startswith("f.yaml: k0: unknown key") and lines[-1] == "f.yaml: and 2950 more problems"
