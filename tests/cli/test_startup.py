"""The command line starts at once: help, version, validate and the package listing load no torch, Flower or Ray."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "flwr", "ray", "torchvision", "lpips", "opacus")

PROBE = """
import json, sys
from pipeline.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exit:
    code = exit.code
print(json.dumps({"code": code, "heavy": sorted(m for m in sys.modules if m.split('.')[0] in %r)}), file=sys.stderr)
""" % (HEAVY,)


def _run(*argv: str) -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, cwd=REPO, timeout=120)
    return json.loads(done.stderr.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "argv",
    [
        ("--help",),
        ("--version",),
        ("run", "--help"),
        ("attack", "--help"),
        ("annotate", "--help"),
        ("validate", "scenarios/quickstart.yaml", "scenarios/defense_sweep.yaml", "scenarios/metric_study.yaml"),
        ("doctor", "--packages"),
    ],
)
def test_command_imports_nothing_heavy(argv: tuple[str, ...]) -> None:
    result = _run(*argv)
    assert result["code"] == 0
    assert result["heavy"] == []


def test_validate_checks_attack_parameters_without_torch(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("attack: {name: idlg, params: {iterations: 0}}\n", encoding="utf-8")
    result = _run("validate", str(bad))
    assert result["code"] == 1
    assert result["heavy"] == []
    done = subprocess.run([sys.executable, "-m", "pipeline.cli", "validate", str(bad)], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert f"{bad}: attack.params.iterations: 0 is out of range; allowed: int in [1, inf) (default 300) - L-BFGS steps" in done.stderr


def test_verify_checks_a_run_without_torch(tmp_path: Path) -> None:
    from flaudit.rundir import RunDir

    run = RunDir(tmp_path / "run")
    (run.root / "captures").mkdir(parents=True)
    (run.root / "captures" / "a.json").write_text("{}")
    run.seal(run.files())
    result = _run("verify", str(run.root))
    assert result["code"] == 0 and result["heavy"] == []
    (run.root / "captures" / "a.json").write_text("{ }")
    assert _run("verify", str(run.root))["code"] == 1

