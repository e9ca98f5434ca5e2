"""Threads chosen on purpose: command line, then scenario, then OMP_NUM_THREADS, then the CPUs the process may use."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from flaudit import threads


def test_explicit_request_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.resolve_threads(5) == 5
    assert threads.resolve_threads(None) == 3


def test_falls_back_to_the_cpus_the_process_may_use(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "_cgroup_quota", lambda: None)
    assert threads.resolve_threads(None) == len(os.sched_getaffinity(0))
    monkeypatch.setenv("OMP_NUM_THREADS", "not-a-number")
    assert threads.resolve_threads(None) == len(os.sched_getaffinity(0))


def test_cgroup_quota_caps_the_affinity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: set(range(64)))
    monkeypatch.setattr(threads, "_cgroup_quota", lambda: 3)
    assert threads.available_cpus() == 3
    monkeypatch.setattr(threads, "_cgroup_quota", lambda: None)
    assert threads.available_cpus() == 64


@pytest.mark.parametrize(("cpu_max", "expected"), [("max 100000\n", None), ("150000 100000\n", 2), ("50000 100000\n", 1)])
def test_cgroup_v2_quota_is_read_and_rounded_up(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, cpu_max: str, expected: int | None) -> None:
    real = Path

    class FakePath(type(Path())):  # type: ignore[misc]
        def __new__(cls, *parts: str):  # noqa: ANN204
            text = str(real(*parts))
            if text == "/sys/fs/cgroup/cpu.max":
                (tmp_path / "cpu.max").write_text(cpu_max)
                return real(tmp_path / "cpu.max")
            return real(*parts)

    monkeypatch.setattr(threads, "Path", FakePath)
    assert threads._cgroup_quota() == expected


def test_zero_threads_is_refused() -> None:
    with pytest.raises(ValueError, match="threads must be >= 1"):
        threads.resolve_threads(0)


def test_configure_sets_torch_threads() -> None:
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    try:
        assert threads.configure_threads(None, 1) == 1
        assert torch.get_num_threads() == 1
        assert threads.configure_threads(2, 1) == 2
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_scenario_threads_and_client_cpus_are_checked(write_scenario) -> None:
    from fl_sim.scenario import load_scenario
    from flaudit.errors import ScenarioError

    scenario = load_scenario(write_scenario("threads: 2\nfederation: {client_cpus: 2}\n"))
    assert (scenario.threads, scenario.federation.client_cpus) == (2, 2)
    assert load_scenario(write_scenario("name: x\n")).threads is None
    with pytest.raises(ScenarioError, match="threads: 0 is out of range"):
        load_scenario(write_scenario("threads: 0\n"))
    with pytest.raises(ScenarioError, match="federation.client_cpus: 0 is out of range"):
        load_scenario(write_scenario("federation: {client_cpus: 0}\n"))


def test_a_client_needing_more_cpus_than_the_run_has_fails_before_ray(write_scenario, tmp_path: Path) -> None:
    from fl_sim.scenario import load_scenario
    from fl_sim.simulate import run_federation
    from flaudit.errors import FlauditError

    scenario = load_scenario(write_scenario("federation: {client_cpus: 4}\n"))
    with pytest.raises(FlauditError, match="client_cpus is 4 but this run may use 2 CPU"):
        run_federation(scenario, tmp_path / "run", threads=2)
    assert not (tmp_path / "run").exists()


def test_threads_do_not_make_a_different_run(write_scenario, tmp_path: Path) -> None:
    import dataclasses

    from pipeline.runs import _holds_same_scenario
    from fl_sim.run_store import RunStore
    from fl_sim.scenario import dump_scenario, load_scenario

    scenario = load_scenario(write_scenario("threads: 1\n"))
    store = RunStore(tmp_path / "run")
    store.root.mkdir()
    store.scenario_path.write_text(dump_scenario(scenario), encoding="utf-8")
    assert _holds_same_scenario(store, dataclasses.replace(scenario, threads=2))
    assert not _holds_same_scenario(store, dataclasses.replace(scenario, name="other"))
