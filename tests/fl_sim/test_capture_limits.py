"""A capture's recorded sizes are checked against the cost limits before anything is built from them."""

from __future__ import annotations

import json

import pytest
import torch

import attacks.store
from attacks.base import SharedMetadata
from fl_sim.run_store import RunStore
from flaudit.errors import CaptureCorruptError
from flaudit.fields import enforcing_limits
from flaudit.limits import check_capture_sizes
from flaudit.models import ModelSpec, build_model
from flaudit.rundir import CaptureKey

META = SharedMetadata("fedsgd", 2, 2, 1, 0.1, (1, 8, 8), 10, (0.3,), (0.4,))


def _crafted_capture(tmp_path, **changes):  # type: ignore[no-untyped-def]
    """A sealed capture whose JSON then says what `changes` say (model.* / meta.*), resealed as if honest."""
    store = RunStore(tmp_path / "run")
    store.create("name: x\n", seed=0)
    spec = ModelSpec("lenet", 10, 1, 8)
    model = build_model(spec, seed=0)
    key = CaptureKey(1, 0)
    update = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    store.captures.write_view(key, spec=spec, global_state=model.state_dict(), update=update, buffers={}, meta=META)
    path = store.captures.info_path(key)
    info = json.loads(path.read_text())
    for dotted, value in changes.items():
        section, name = dotted.split("__")
        info[section][name] = value
    path.write_text(json.dumps(info))
    store.seal(store.files())
    return store, key, path


def test_crafted_sizes_are_refused_with_the_path_before_the_model_is_built(tmp_path, monkeypatch):
    store, key, path = _crafted_capture(tmp_path, model__width=100_000_000, meta__num_examples=1_000_000_000)
    monkeypatch.setattr(attacks.store, "build_model", lambda *a, **k: pytest.fail("a model was built from a refused capture"))
    with pytest.raises(CaptureCorruptError) as err:
        store.captures.read_view(key)
    lines = str(err.value).splitlines()
    assert lines[0].startswith(f"{path}: model.width: 100000000 is above the cost limit 1024")
    assert "set `limits: {width: 100000000}` at the top level of the scenario" in lines[0]
    assert lines[1].startswith(f"{path}: meta.num_examples: 1000000000 is above the cost limit 1000000")


def test_a_float_or_negative_size_is_refused_too(tmp_path):
    store, key, path = _crafted_capture(tmp_path, meta__num_examples=1e9, model__image_size=-8)
    with pytest.raises(CaptureCorruptError) as err:
        store.captures.read_view(key)
    assert str(err.value).splitlines() == [
        f"{path}: model.image_size: -8 is out of range; allowed: int in [1, inf) or null (default null) - image side, pixels",
        (f"{path}: meta.num_examples: expected an integer, got 1000000000.0; allowed: int in [0, inf) or null (default null) "
         "- examples the client reports"),
    ]


def test_honest_captures_pass_and_a_run_that_raised_its_limits_reads_its_own():
    info = {"model": {"width": 2048, "image_size": 32, "in_channels": 3, "num_classes": 10}, "meta": {"num_examples": 4}}
    with pytest.raises(CaptureCorruptError, match="c.json: model.width: 2048 is above the cost limit 1024"):
        check_capture_sizes(info, path="c.json")
    with enforcing_limits({"width": 4096}):  # what `flaudit run` / `flaudit attack` hold for a scenario with limits: {width: 4096}
        check_capture_sizes(info, path="c.json")
    for odd in ({}, [], None, {"model": "lenet", "meta": 3}):  # other faults are the reader's to report
        check_capture_sizes(odd, path="c.json")
