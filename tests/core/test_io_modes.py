"""Run files: the mode open() would give them, and strict JSON."""

import json
import math
import os
import stat

import pytest

from flaudit.io import append_jsonl, atomic_write_bytes, atomic_write_json


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_writes_respect_the_umask(tmp_path, umask: int, mode: int) -> None:
    old = os.umask(umask)
    try:
        path = atomic_write_bytes(tmp_path / "a.bin", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == mode


def test_non_finite_numbers_are_written_as_null(tmp_path) -> None:
    torch = pytest.importorskip("torch")
    record = {"loss": math.inf, "nan": float("nan"), "ok": 1.5, "nested": [-math.inf, {"t": torch.tensor([1.0, math.inf])}]}
    path = atomic_write_json(tmp_path / "history.json", record)
    text = path.read_text()
    assert "Infinity" not in text and "NaN" not in text
    assert json.loads(text) == {"loss": None, "nan": None, "ok": 1.5, "nested": [None, {"t": [1.0, None]}]}
    append_jsonl(tmp_path / "m.jsonl", [record])
    line = (tmp_path / "m.jsonl").read_text()
    assert json.loads(line, parse_constant=lambda c: pytest.fail(f"non-standard token {c}"))["loss"] is None
