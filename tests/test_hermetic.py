"""The hermetic test environment itself (tests/conftest.py): caches in a temporary folder, offline, no network."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import HERMETIC_ENV, HERMETIC_ROOT, REAL_HOME, is_local_address


def _under(path: str | Path, root: Path) -> bool:
    return Path(path).resolve().is_relative_to(root.resolve())


def test_caches_and_dataset_root_are_in_the_temporary_folder() -> None:
    import torch.hub

    from flaudit.offline import downloads_allowed
    from fl_sim.scenario import DataConfig

    assert not _under(HERMETIC_ROOT, REAL_HOME)
    assert Path(torch.hub.get_dir()) == HERMETIC_ROOT / "torch" / "hub"
    assert Path(DataConfig().root).expanduser() == HERMETIC_ROOT / "home" / ".cache" / "flaudit" / "datasets"
    for name in ("TORCH_HOME", "XDG_CACHE_HOME", "HF_HOME", "MPLCONFIGDIR", "HOME"):
        assert os.environ[name] == HERMETIC_ENV[name] and _under(os.environ[name], HERMETIC_ROOT), name
    assert os.environ["FLAUDIT_OFFLINE"] == "1" and not downloads_allowed()


def test_matplotlib_uses_the_temporary_config_dir() -> None:
    import matplotlib

    assert Path(matplotlib.get_configdir()) == Path(HERMETIC_ENV["MPLCONFIGDIR"])
    assert _under(matplotlib.get_cachedir(), HERMETIC_ROOT)


def test_subprocesses_inherit_the_environment() -> None:
    code = (
        "import json, os; from flaudit.offline import downloads_allowed; "
        "print(json.dumps([os.environ['TORCH_HOME'], os.path.expanduser('~'), downloads_allowed()]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    import json

    torch_home, home, allowed = json.loads(out)
    assert (torch_home, home, allowed) == (HERMETIC_ENV["TORCH_HOME"], HERMETIC_ENV["HOME"], False)


@pytest.mark.parametrize(
    "address, local",
    [
        (("127.0.0.1", 80), True),
        (("127.8.9.10", 80), True),
        (("localhost", 80), True),
        (("::1", 80, 0, 0), True),
        (("::ffff:127.0.0.1", 80, 0, 0), True),
        ("/tmp/some.sock", True),
        (("10.0.0.1", 80), False),
        (("192.0.2.1", 443), False),
        (("8.8.8.8", 53), False),
        (("::ffff:8.8.8.8", 53, 0, 0), False),
        (("2001:db8::1", 80, 0, 0), False),
        (("download.pytorch.org", 443), False),
        (("128.0.0.1", 80), False),
    ],
)
def test_is_local_address(address, local) -> None:
    assert is_local_address(address) is local


def test_non_local_connections_are_refused_and_recorded(network_attempts) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock, pytest.raises(ConnectionRefusedError, match="blocked in the tests"):
        sock.connect(("192.0.2.1", 443))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock, pytest.raises(OSError, match="blocked"):
        sock.connect_ex(("8.8.8.8", 53))
    with pytest.raises(OSError, match="example.com:80"):
        socket.create_connection(("example.com", 80), timeout=1)
    with pytest.raises(urllib.error.URLError, match="blocked"):
        urllib.request.urlopen("http://example.com/", timeout=1)
    assert network_attempts == ["192.0.2.1:443", "8.8.8.8:53", "example.com:80", "example.com:80"]


def test_loopback_and_unix_sockets_still_work(tmp_path: Path, network_attempts) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
            conn, _ = server.accept()
            with conn:
                client.sendall(b"ping")
                assert conn.recv(4) == b"ping"
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as client:
            assert client.connect_ex(("localhost", port)) == 0
            server.accept()[0].close()
    path = str(tmp_path / "s.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(path)
        server.listen(1)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.connect(path)
            server.accept()[0].close()
    assert network_attempts == []


def test_torch_home_fixture_is_private(torch_home: Path) -> None:
    import torch.hub

    from audit.functional.weights import ALEXNET

    assert Path(torch.hub.get_dir()) / "checkpoints" == torch_home and ALEXNET.path.parent == torch_home
    assert not _under(torch_home, HERMETIC_ROOT / "torch")


@pytest.mark.parametrize("turn", [1, 2])
def test_hub_dir_set_by_a_test_is_undone(turn: int, tmp_path: Path) -> None:
    """Each turn finds the hermetic hub although the previous one left `set_dir` pointing elsewhere."""
    import torch.hub

    assert Path(torch.hub.get_dir()) == HERMETIC_ROOT / "torch" / "hub"
    torch.hub.set_dir(str(tmp_path / "elsewhere"))  # no restore: the conftest's fixture undoes it
