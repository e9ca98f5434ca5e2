"""Shared fixtures: quiet progress bars, small scenarios written to tmp dirs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("FLAUDIT_QUIET", "1")
os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION", "1")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def write_scenario(tmp_path: Path):
    """Write YAML text to a scenario file in tmp_path and return its path."""

    def write(text: str, name: str = "scenario.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write
