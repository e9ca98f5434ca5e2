"""Shared fixtures: quiet progress bars, small scenarios written to tmp dirs, and a hermetic environment.

Hermetic: every cache the code under test could read or write (torch hub, XDG, Hugging Face,
matplotlib, the dataset root `~/.cache/flaudit/datasets` through HOME) points into one fresh
temporary folder, `FLAUDIT_OFFLINE=1` turns every download off, and connecting anywhere but
loopback or a unix socket raises. So "LPIPS/FID unavailable" and "dataset unavailable" are the
same on a laptop with a warm ~/.cache/torch and on a CI node without internet.

The variables are set when this file is imported, before any test module imports torch (some
libraries read their cache folder once, at import), and the Ray workers and subprocesses a test
starts inherit them through `os.environ`.
"""

from __future__ import annotations

import atexit
import ipaddress
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("FLAUDIT_QUIET", "1")
os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION", "1")

REPO = Path(__file__).resolve().parents[1]

# --- the hermetic environment ----------------------------------------------------------------------

# This file is imported twice (as pytest's conftest and as `tests.conftest` by tests that take
# REPO from it): the folder is made once per test process and found again through the variable.
_ROOT_VAR = "FLAUDIT_TESTS_HERMETIC_ROOT"


def _hermetic_root() -> Path:
    existing = os.environ.get(_ROOT_VAR)
    if existing and Path(existing).is_dir():
        return Path(existing)
    root = Path(tempfile.mkdtemp(prefix="flaudit-tests-"))
    os.environ[_ROOT_VAR] = str(root)
    # Removed when the process that made it exits (not a forked child): after a test session, and after
    # `--collect-only` too.
    creator = os.getpid()
    atexit.register(lambda: os.getpid() == creator and shutil.rmtree(root, ignore_errors=True))
    return root


HERMETIC_ROOT = _hermetic_root()
REAL_HOME = Path(os.environ.get("FLAUDIT_TESTS_REAL_HOME") or Path.home())
os.environ.setdefault("FLAUDIT_TESTS_REAL_HOME", str(REAL_HOME))

#: What every test runs under. HOME moves the dataset root's default `~/.cache/flaudit/datasets`
#: (and any other `~` path) into the temporary folder too.
HERMETIC_ENV: dict[str, str] = {
    "HOME": str(HERMETIC_ROOT / "home"),
    "TORCH_HOME": str(HERMETIC_ROOT / "torch"),
    "XDG_CACHE_HOME": str(HERMETIC_ROOT / "xdg-cache"),
    "HF_HOME": str(HERMETIC_ROOT / "huggingface"),
    "MPLCONFIGDIR": str(HERMETIC_ROOT / "matplotlib"),
    "SCIKIT_LEARN_DATA": str(HERMETIC_ROOT / "scikit-learn"),
    "FLAUDIT_OFFLINE": "1",
    "HF_HUB_OFFLINE": "1",
}
# pyenv's shims find their versions through HOME unless PYENV_ROOT says where; keep a subprocess's
# `python` working when HOME moves. A tool's location, not a cache.
if (REAL_HOME / ".pyenv").is_dir():
    os.environ.setdefault("PYENV_ROOT", str(REAL_HOME / ".pyenv"))
for _name, _value in HERMETIC_ENV.items():
    os.environ[_name] = _value
# A proxy on localhost would carry requests past the loopback-only guard below.
for _name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
    os.environ.pop(_name, None)
for _name in ("HOME", "MPLCONFIGDIR"):
    Path(HERMETIC_ENV[_name]).mkdir(parents=True, exist_ok=True)

#: Where torch hub looks for LPIPS' AlexNet and FID's Inception during the tests: empty, always.
SESSION_HUB_CHECKPOINTS = Path(HERMETIC_ENV["TORCH_HOME"]) / "hub" / "checkpoints"


# --- no network ------------------------------------------------------------------------------------


class NetworkBlockedError(ConnectionRefusedError):
    """A test tried to reach a non-local address. An OSError, so product code sees what it sees offline."""


#: Every non-local connection attempted in this process, as "host:port" (tests may inspect it).
BLOCKED_CONNECTIONS: list[str] = []

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_create_connection = socket.create_connection


def is_local_address(address: object, family: int | None = None) -> bool:
    """True for a unix socket, `localhost`, 127.0.0.0/8, ::1 (and ::ffff:127.x); False for anything else."""
    if family is not None and family == getattr(socket, "AF_UNIX", object()):
        return True
    if isinstance(address, (str, bytes)):  # a unix socket path
        return True
    if not isinstance(address, tuple) or not address:
        return False
    host = address[0]
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    if host == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(str(host).split("%", 1)[0])
    except ValueError:
        return False  # a host name: resolving it already goes to the network
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def _refuse(address: object) -> NetworkBlockedError:
    shown = f"{address[0]}:{address[1]}" if isinstance(address, tuple) and len(address) >= 2 else repr(address)
    BLOCKED_CONNECTIONS.append(shown)
    return NetworkBlockedError(f"network access is blocked in the tests (tests/conftest.py): connect to {shown}")


def _guarded_connect(self: socket.socket, address: object) -> None:
    if not is_local_address(address, self.family):
        raise _refuse(address)
    return _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: object) -> int:
    if not is_local_address(address, self.family):
        raise _refuse(address)
    return _real_connect_ex(self, address)


def _guarded_create_connection(address, *args, **kwargs):  # type: ignore[no-untyped-def]
    if not is_local_address(address):
        raise _refuse(address)
    return _real_create_connection(address, *args, **kwargs)


def _install_network_guard(mp: pytest.MonkeyPatch) -> None:
    mp.setattr(socket.socket, "connect", _guarded_connect)
    mp.setattr(socket.socket, "connect_ex", _guarded_connect_ex)
    mp.setattr(socket, "create_connection", _guarded_create_connection)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: takes more than 20 s on the 2-core machine (deselect with -m 'not slow')")


@pytest.fixture(scope="session", autouse=True)
def _hermetic_session() -> Iterator[Path]:
    """The whole session: the hermetic variables (again, should anything have changed them) and no network."""
    with pytest.MonkeyPatch.context() as mp:
        for name, value in HERMETIC_ENV.items():
            mp.setenv(name, value)
        _install_network_guard(mp)
        yield HERMETIC_ROOT


@pytest.fixture(autouse=True)
def _hermetic_test(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test: torch hub follows TORCH_HOME (a test's `torch.hub.set_dir` is undone), and no test
    leaves weight files where the next one would find them."""
    import torch.hub

    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    yield
    left = sorted(p.name for p in SESSION_HUB_CHECKPOINTS.glob("*")) if SESSION_HUB_CHECKPOINTS.is_dir() else []
    if left:
        shutil.rmtree(SESSION_HUB_CHECKPOINTS, ignore_errors=True)
        pytest.fail(f"the test left {left} in the shared torch hub folder {SESSION_HUB_CHECKPOINTS}; use the `torch_home` fixture")


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private TORCH_HOME for a test that puts weight files in place; returns its `hub/checkpoints` folder."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    checkpoints = tmp_path / "torch" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    return checkpoints


@pytest.fixture
def online(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Downloads allowed (FLAUDIT_OFFLINE unset), the network still blocked: what a machine without
    internet that was not told so sees. Returns the list of blocked connection attempts, emptied."""
    monkeypatch.delenv("FLAUDIT_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    BLOCKED_CONNECTIONS.clear()
    return BLOCKED_CONNECTIONS


@pytest.fixture
def network_attempts() -> list[str]:
    """The blocked connection attempts made during the test (emptied at its start)."""
    BLOCKED_CONNECTIONS.clear()
    return BLOCKED_CONNECTIONS


@pytest.fixture
def write_scenario(tmp_path: Path):
    """Write YAML text to a scenario file in tmp_path and return its path."""

    def write(text: str, name: str = "scenario.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write


# --- sklearn digits and the machine annotator trained on them (audit and semsim tests) -------------
@pytest.fixture(scope="session")
def digits():  # type: ignore[no-untyped-def]
    """(train_x, train_y, test_x, test_y): sklearn digits, 8x8 grayscale in [0, 1], 1,400 / 397 split."""
    import torch
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(data.target, dtype=torch.int64)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    return x[perm[:1400]], y[perm[:1400]], x[perm[1400:]], y[perm[1400:]]


@pytest.fixture(scope="session")
def digits_oracle(digits, tmp_path_factory):
    from semsim.oracle import train_oracle

    train_x, train_y, test_x, test_y = digits
    path = tmp_path_factory.mktemp("oracle") / "oracle_digits.safetensors"
    return train_oracle(train_x, train_y, num_classes=10, cache_path=path, val_images01=test_x, val_labels=test_y, epochs=10, net_width=16)


#: Test folders that run on one torch thread: on the shared 2-core machine, spinning OpenMP workers
#: cost the scoring and attack tests more than they give.
ONE_THREAD_FOLDERS = ("audit", "pipeline")


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread(request: pytest.FixtureRequest) -> Iterator[None]:
    if Path(str(request.module.__file__)).parent.name not in ONE_THREAD_FOLDERS:
        yield
        return
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
