"""`flaudit validate` lists every problem of each file (exit status 1), never a traceback; `flaudit run`
refuses a bad scenario before its federation starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.cli import main

BAD = """\
name: ../../../escape
device: tpu
federation: {clients: 1000000000000, rounds: 3}
capture: {rounds: [7]}
sweep: [{defense: gaussian, param: sigma, values: []}]
"""


def _validate(capsys: pytest.CaptureFixture[str], *paths: Path) -> tuple[int, list[str], str]:
    code = main(["validate", *map(str, paths)])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.err.splitlines(), captured.out


def test_every_problem_of_a_file_is_listed_with_its_key_path(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD, encoding="utf-8")
    code, errors, _ = _validate(capsys, bad)
    assert code == 1
    assert [line.split(": ")[3] for line in errors] == ["name", "device", "federation.clients", "sweep[0].values"]
    assert all(line.startswith(f"flaudit: error: {bad}: ") for line in errors)
    assert "1000000000000 is above the cost limit 10000" in errors[2] and "`limits: {clients: 1000000000000}`" in errors[2]


def test_once_the_keys_are_right_the_whole_scenario_is_checked(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("federation: {rounds: 3, clients: 2}\ncapture: {rounds: [7], clients: [2]}\nattack: {name: analytic_linear}\n")
    code, errors, _ = _validate(capsys, bad)
    assert code == 1 and [line.split(": ")[3] for line in errors] == ["capture.rounds[0]", "capture.clients[0]", "attack.name"]


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"name: caf\xe9\n", "not UTF-8 text (line 1, byte 9: b'\\xe9'); save it as UTF-8"),
        (b"[" * 800, "line 1: [0][0][0][0]...: nested deeper than 32 levels; a scenario needs a few"),
        (b"federation: {clients: 2}\nfederation: {clients: 3}\n", "federation (line 2): duplicate key, first given on line 1"),
        (b"name: a\n---\nname: b\n", "line 2: a second YAML document starts here"),
        (b"- 1\n- 2\n", "the top level must be a mapping of sections, got a list"),
        (b"a: &a [x, x, x, x, x, x, x, x, x, x]\n" + b"".join(
            f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]\n".encode() for i in range(8)),
         "more than 100000 values with aliases expanded"),
    ],
    ids=["latin-1", "nesting", "duplicate", "documents", "list", "billion-laughs"],
)
def test_malformed_files_are_one_clear_line_each(tmp_path, capsys, content, problem):
    path = tmp_path / "s.yaml"
    path.write_bytes(content)
    good = tmp_path / "good.yaml"
    good.write_text("federation: {clients: 2}\n")
    code, errors, out = _validate(capsys, path, good)
    assert code == 1 and len(errors) == 1 and errors[0].startswith(f"flaudit: error: {path}: ") and problem in errors[0]
    assert f"{good}: ok" in out, "every file is checked, not only up to the first bad one"


def test_a_directory_and_a_missing_file(tmp_path, capsys):
    code, errors, _ = _validate(capsys, tmp_path, tmp_path / "missing.yaml")
    assert code == 1 and errors == [
        f"flaudit: error: {tmp_path}: is a directory; give a scenario YAML file",
        f"flaudit: error: {tmp_path / 'missing.yaml'}: no such scenario file",
    ]


def test_validate_names_what_the_machine_lacks(tmp_path, capsys):
    path = tmp_path / "cifar.yaml"
    path.write_text(f"data: {{dataset: cifar10, root: {tmp_path / 'data'}}}\nmodel: {{name: resnet20}}\n")
    code, errors, _ = _validate(capsys, path)
    assert code == 1 and errors == [
        (f"flaudit: error: {path}: data.dataset: 'cifar10' is unavailable: not found: put cifar-10-batches-py/ under "
        f"{tmp_path / 'data'} (from https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz); FLAUDIT_OFFLINE is set, so it will not download")
    ]


def test_a_study_file_is_read_safely_and_its_device_checked(tmp_path, capsys):
    study = (Path(__file__).resolve().parents[2] / "scenarios" / "metric_study.yaml").read_text(encoding="utf-8")
    path = tmp_path / "study.yaml"
    path.write_text(study.replace("device: auto", "device: tpu"), encoding="utf-8")
    code, errors, _ = _validate(capsys, path)
    assert code == 1 and errors == [f"flaudit: error: {path}: device: 'tpu' is not allowed; allowed: one of 'auto', 'cpu', 'cuda', "
                                    "'cuda:N', 'mps' (default 'auto') - where classifiers, attacks and metrics run"]
    path.write_bytes(study.encode("utf-8") + b"# caf\xe9\n")
    code, errors, _ = _validate(capsys, path)
    assert code == 1 and errors[0].startswith(f"flaudit: error: {path}: not UTF-8 text")


def test_run_refuses_before_the_federation_and_writes_nothing(tmp_path, capsys):
    path = tmp_path / "s.yaml"
    path.write_text(f"name: offline\noutput_dir: {tmp_path / 'runs'}\ndata: {{dataset: cifar10, root: {tmp_path / 'data'}}}\n"
                    "model: {name: resnet20}\n")
    assert main(["run", str(path), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("flaudit: error: data.dataset: 'cifar10' is unavailable: not found") and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


def test_run_device_flag_is_checked_like_the_scenario_key(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "scenarios/quickstart.yaml", "--device", "gpu"])
    assert exit_info.value.code == 2
    assert "argument --device: 'gpu' is not allowed; allowed: one of 'auto', 'cpu', 'cuda', 'cuda:N', 'mps'" in capsys.readouterr().err


def test_run_lists_every_problem_of_the_file_one_line_each(tmp_path, capsys):
    path = tmp_path / "s.yaml"
    path.write_text("name: ../x\ndevice: gpu\n")
    assert main(["run", str(path)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(": ")[:3] for line in lines] == [["flaudit", "error", str(path)]] * 2
    assert [line.split(": ")[3] for line in lines] == ["name", "device"]
