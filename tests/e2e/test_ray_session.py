"""Ray for one federation (fl_sim.ray_session), through Flower's real engine: the workers run the
installed package from the driver's working directory, and Ray leaves no process and no folder."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psutil
import pytest
from PIL import Image

from fl_sim.scenario import parse_scenario
from fl_sim.simulate import run_federation

pytestmark = pytest.mark.e2e

SCENARIO = """
name: ray-session
federation: {clients: 2, rounds: 1, protocol: fedsgd, batch_size: 1, seed: 3}
data: {dataset: "imagefolder:images", image_size: 8}
model: {name: lenet}
capture: {rounds: [1], clients: [0]}
"""


@pytest.fixture
def short_tempdir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private temporary directory short enough for Ray's sockets (tmp_path is not)."""
    folder = Path(tempfile.mkdtemp(prefix="fr", dir="/tmp"))
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _processes_naming(folder: Path) -> list[str]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if any(str(folder) in arg for arg in process.info["cmdline"] or ()):
            found.append(" ".join(process.info["cmdline"]))
    return found


def test_workers_run_the_installed_package_in_the_drivers_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 short_tempdir: Path) -> None:
    import ray

    checkout = tmp_path / "checkout"  # a modified checkout as the working directory: importing it fails
    for package in ("fl_sim", "flaudit", "attacks", "defenses"):
        (checkout / package).mkdir(parents=True)
        (checkout / package / "__init__.py").write_text(f"raise ImportError('{package} imported from the working directory')\n")
    rng = np.random.default_rng(0)
    for label in ("a", "b"):  # the scenario's relative `imagefolder:images`, found from the driver's folder
        (checkout / "images" / label).mkdir(parents=True)
        for index in range(5):
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(checkout / "images" / label / f"{index}.png")
    monkeypatch.chdir(checkout)

    history = run_federation(parse_scenario(SCENARIO, source="ray-session.yaml"), tmp_path / "run", threads=2)

    assert [r["round"] for r in history["rounds"]] == [1]
    assert (tmp_path / "run" / "captures" / "round_001" / "client_000.safetensors").is_file()
    # Ray ended with the federation: shut down, its processes gone, its folder removed.
    assert not ray.is_initialized()
    assert _processes_naming(short_tempdir) == []
    assert list(short_tempdir.glob("flaudit-ray-*")) == []


def test_a_sweeps_federations_share_one_ray(short_tempdir: Path) -> None:
    import ray

    from fl_sim.ray_session import ray_session, shared_ray

    with shared_ray():
        assert not ray.is_initialized()  # started by the first federation that needs it, not before
        with ray_session(cpus=1) as first:
            assert ray.is_initialized()
        with ray_session(cpus=1) as second:
            pass
        assert second == first and first.is_dir() and ray.is_initialized()
    assert not ray.is_initialized() and not first.exists()
    assert _processes_naming(short_tempdir) == []
