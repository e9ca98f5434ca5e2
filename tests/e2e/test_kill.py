"""`flaudit run` killed and re-run: SIGKILL at a random point of each phase (federation, attack, audit),
then the same command again, gives the metrics of an uninterrupted run, with no temporary file left,
a run directory `flaudit verify` accepts, and no Ray process or folder left by the killed runs. A
second `flaudit run` on a directory being written is refused with the writer's PID (or waits with
--wait), and SIGTERM ends a run through its clean-up.

Each command is a real process (`python -m pipeline.cli`), with TMPDIR a private folder so that the
Ray folders of these runs, and the processes that name them, can be told from any other.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.e2e

SCENARIO = """
name: kill
federation: {clients: 2, rounds: 6, protocol: fedsgd, batch_size: 1, learning_rate: 0.5, seed: 1}
data: {dataset: digits}
model: {name: lenet}
capture: {rounds: [2, 4], clients: [0, 1]}
attack: {name: idlg, params: {iterations: 40}, updates_per_batch: 2}  # two batches: a kill can land between them
audit: {metrics: [mse, psnr, ssim], oracle: true}
"""
UPDATES = [f"attacks/idlg/round_{r:03d}/client_{c:03d}/record.json" for r in (2, 4) for c in (0, 1)]
SEED = 20_240_611  # the kill points are random, and the same on every run of the test


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    """The scenario file, and the environment of the commands: TMPDIR a private folder short enough for Ray's sockets."""
    folder = tmp_path_factory.mktemp("kill")
    (folder / "scenario.yaml").write_text(SCENARIO, encoding="utf-8")
    private = Path(tempfile.mkdtemp(prefix="fk", dir="/tmp"))
    yield folder, {**os.environ, "TMPDIR": str(private), "FLAUDIT_QUIET": "1"}
    shutil.rmtree(private, ignore_errors=True)


def _start(workspace: tuple[Path, dict[str, str]], run_dir: Path, *extra: str) -> subprocess.Popen[str]:
    folder, env = workspace
    command = [sys.executable, "-m", "pipeline.cli", "-q", "run", str(folder / "scenario.yaml"), "--run-dir", str(run_dir), *extra]
    return subprocess.Popen(command, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(process: subprocess.Popen[str]) -> tuple[int, str]:
    _, err = process.communicate(timeout=600)
    return process.returncode, err


def _wait_for(condition: Callable[[], bool], process: subprocess.Popen[str] | None = None, seconds: float = 300) -> None:
    """Poll `condition` every 20 ms; fail if `process` ends first or it does not hold within `seconds` (a hang)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if process is not None and process.poll() is not None:
            pytest.fail(f"the run ended (exit {process.returncode}) before the kill point: {process.stderr.read() if process.stderr else ''}")
        if time.monotonic() > deadline:
            pytest.fail(f"still waiting after {seconds} s")
        time.sleep(0.02)


def _manifest(run_dir: Path) -> dict[str, str]:
    try:
        return json.loads((run_dir / "manifest.json").read_text())["files"]
    except (OSError, ValueError, KeyError):  # being replaced at this instant, or not written yet
        return {}


def _records(run_dir: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _ray_left(env: dict[str, str]) -> list[str]:
    """The Ray folders of these runs still on disk, and the processes that still name one."""
    private = env["TMPDIR"]
    left = [str(p) for p in Path(private).glob("flaudit-ray-*")]
    for process in psutil.process_iter(["cmdline"]):
        if any(private in arg for arg in process.info["cmdline"] or ()):
            left.append(" ".join(process.info["cmdline"])[:200])
    return left


@pytest.fixture(scope="module")
def uninterrupted(workspace: tuple[Path, dict[str, str]]) -> tuple[Path, bytes]:
    run_dir = workspace[0] / "uninterrupted"
    code, err = _finish(_start(workspace, run_dir))
    assert code == 0, err
    return run_dir, (run_dir / "metrics.jsonl").read_bytes()


def _federated(run_dir: Path) -> bool:
    return "history.json" in _manifest(run_dir)


def _attacked(run_dir: Path) -> bool:
    return set(UPDATES) <= set(_manifest(run_dir))


def _audited(run_dir: Path) -> bool:
    return "metrics.jsonl" in _manifest(run_dir)


# (phase, the kill point: an event of the phase and the longest random delay after it, the phase's last output).
# The delays are short beside what is left of the phase after the event: Ray's start-up, four more rounds,
# a round of the attack, the audit's oracle training.
PHASES: list[tuple[str, Callable[[Path, Path], bool], float, Callable[[Path], bool]]] = [
    ("the federation, Ray starting", lambda run_dir, tmp: any(tmp.glob("flaudit-ray-*")), 1.0, _federated),
    ("the federation, rounds running", lambda run_dir, tmp: (run_dir / "captures" / "round_002").is_dir(), 0.1, _federated),
    ("the attack", lambda run_dir, tmp: (run_dir / "attacks" / "idlg" / "round_002").is_dir(), 0.5, _attacked),
    ("the audit", lambda run_dir, tmp: _attacked(run_dir), 1.5, _audited),
]


def test_sigkill_in_each_phase_then_rerun_gives_the_uninterrupted_metrics(workspace, uninterrupted, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(SEED)
    run_dir, private = tmp_path / "run", Path(workspace[1]["TMPDIR"])
    for phase, kill_point, longest, finished in PHASES:
        process = _start(workspace, run_dir)
        _wait_for(lambda kill_point=kill_point: kill_point(run_dir, private), process)
        time.sleep(rng.uniform(0, longest))
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert not finished(run_dir), f"the kill came after {phase} had finished"
        # The watchdog ends the killed run's Ray processes and removes its folder.
        _wait_for(lambda: not _ray_left(workspace[1]), seconds=60)

    code, err = _finish(_start(workspace, run_dir))
    assert code == 0, err
    reference, reference_bytes = uninterrupted
    assert _records(run_dir) == _records(reference)
    assert (run_dir / "metrics.jsonl").read_bytes() == reference_bytes
    assert [p for p in run_dir.rglob("*.tmp")] == []
    verify = subprocess.run([sys.executable, "-m", "pipeline.cli", "verify", str(run_dir)], env=workspace[1],
                            capture_output=True, text=True, check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_second_writer_is_refused_or_waits_and_sigterm_cleans_up(workspace, uninterrupted, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run_dir, private = tmp_path / "run", Path(workspace[1]["TMPDIR"])
    first = _start(workspace, run_dir)
    _wait_for(lambda: f'"pid": {first.pid},' in _read(run_dir / ".lock"), first)  # it holds the directory
    refused = _start(workspace, run_dir)
    waiting = _start(workspace, run_dir, "--wait")

    code, err = _finish(refused)
    assert code == 2
    assert f"flaudit: error: {run_dir} is being written by another flaudit process (PID {first.pid}: " in err
    assert "--wait" in err and "Traceback" not in err
    assert waiting.stderr is not None
    line = waiting.stderr.readline()
    assert f"{run_dir} is being written by another flaudit process (PID {first.pid}: " in line and "waiting" in line

    # SIGTERM once Ray has started (during its start-up, Ray's own handler would end the process, and the
    # watchdog clean up): the run ends through its clean-up, Ray shut down and its folder removed.
    _wait_for(lambda: (run_dir / "captures").is_dir(), first)
    ray_folders = list(private.glob("flaudit-ray-*"))  # the first run's, if its federation is still on
    first.send_signal(signal.SIGTERM)
    code, err = _finish(first)
    assert code == 128 + signal.SIGTERM, err
    assert "flaudit: interrupted" in err
    assert [f for f in ray_folders if f.exists()] == []
    assert not any(str(f) in arg for f in ray_folders for p in psutil.process_iter(["cmdline"]) for arg in p.info["cmdline"] or ())

    code, err = _finish(waiting)  # the waiting run then takes the directory over and finishes it
    assert code == 0, err
    assert _records(run_dir) == _records(uninterrupted[0])
    assert _ray_left(workspace[1]) == []


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""
