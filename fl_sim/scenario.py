"""Scenario files: YAML that maps 1:1 onto nested frozen dataclasses, validated once at load time.

Unknown keys (with the nearest valid name), wrong types and out-of-range values fail with
one `ScenarioError` naming the file, the key path and what is allowed.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import yaml

from attacks.config import AttackConfig
from attacks.params import check_attack_params
from defenses.specs import DEFENSE_SPECS, validate_defense
from flaudit.errors import FlauditError, ScenarioError
from flaudit.fields import bounds, range_problem
from flaudit.registry import closest

T = TypeVar("T")


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads `1e-3` (no dot) as a string; scenarios mean the number."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


#: The classifiers `flaudit.models.MODELS` builds, and the datasets `fl_sim.data` loads (besides
#: `imagefolder:PATH`); named here so that checking a scenario needs no torch.
MODEL_NAMES: tuple[str, ...] = ("convnet", "lenet", "resnet18", "resnet20", "resnet32")
#: The classic metrics `audit.metrics` scores (FID per round, the others per image).
METRIC_NAMES: tuple[str, ...] = ("mse", "psnr", "ssim", "lpips", "fid")
DATASET_NAMES: tuple[str, ...] = (
    "caltech101", "celeba", "cifar10", "cifar100", "digits", "imagenette", "lfw-faces", "stanford-dogs",
)


@dataclass(frozen=True)
class FederationConfig:
    """How the federation trains.

    Args:
        clients: number of simulated clients (Flower SuperNodes), one data partition each.
        rounds: server rounds.
        fraction: share of clients sampled for training each round.
        protocol: `fedsgd` (a client returns one batch's gradient) or `fedavg` (local training, new weights).
        local_epochs: FedAvg local epochs over the client's partition.
        local_steps: FedAvg local SGD steps; when set it replaces local_epochs.
        batch_size: client batch size (FedSGD: the batch whose gradient is returned).
        learning_rate: client SGD learning rate (FedSGD: the server's step size).
        momentum: client SGD momentum (FedAvg only).
        seed: fixes partitioning, initial weights, client sampling, batches and defense noise.
        client_cpus: CPUs Ray gives each simulated client, and the torch threads it trains on;
            `threads // client_cpus` clients train side by side.
    """

    clients: int = field(default=4, metadata=bounds(1))
    rounds: int = field(default=3, metadata=bounds(1))
    fraction: float = field(default=1.0, metadata=bounds(0.0, 1.0, low_open=True))
    protocol: Literal["fedsgd", "fedavg"] = "fedavg"
    local_epochs: int = field(default=1, metadata=bounds(1))
    local_steps: int | None = field(default=None, metadata=bounds(1))
    batch_size: int = field(default=32, metadata=bounds(1))
    learning_rate: float = field(default=0.1, metadata=bounds(0.0, None, low_open=True))
    momentum: float = field(default=0.0, metadata=bounds(0.0, 1.0))
    seed: int = field(default=0, metadata=bounds(0))
    client_cpus: int = field(default=1, metadata=bounds(1))


@dataclass(frozen=True)
class DataConfig:
    """Which data the clients hold.

    Args:
        dataset: `digits`, `lfw-faces`, `cifar10`, `cifar100`, `caltech101`, `celeba`,
            `imagenette`, `stanford-dogs` or `imagefolder:PATH`.
        partition: `iid` or `dirichlet` (label skew with concentration `alpha`).
        alpha: Dirichlet concentration (> 0); smaller is more skewed.
        image_size: side length images are resized to; None keeps the dataset's own size.
        root: where downloadable datasets live (downloaded on first use where there is internet).
        test_fraction: share held out for the server's evaluation when the dataset has no test split.
        max_examples: cap on training examples (None: all), for quick runs on large datasets.
    """

    dataset: str = "digits"
    partition: Literal["iid", "dirichlet"] = "iid"
    alpha: float = field(default=0.5, metadata=bounds(0.0, None, low_open=True))
    image_size: int | None = field(default=None, metadata=bounds(4))
    root: str = "~/.cache/flaudit/datasets"
    test_fraction: float = field(default=0.2, metadata=bounds(0.0, 1.0, low_open=True))
    max_examples: int | None = field(default=None, metadata=bounds(1))


@dataclass(frozen=True)
class ModelConfig:
    """The classifier: `lenet`, `convnet`, `resnet20`, `resnet32` or `resnet18`."""

    name: str = "lenet"
    width: int | None = field(default=None, metadata=bounds(1))
    bn: bool = True


@dataclass(frozen=True)
class DefenseConfig:
    """One client-side defense, applied to the update before it leaves the client."""

    name: str
    params: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class CaptureConfig:
    """Which updates the honest-but-curious server records (None: all)."""

    rounds: tuple[int, ...] | None = None
    clients: tuple[int, ...] | None = None

    def wants(self, server_round: int, client: int) -> bool:
        return (self.rounds is None or server_round in self.rounds) and (self.clients is None or client in self.clients)


@dataclass(frozen=True)
class AuditConfig:
    """How leakage is scored.

    Args:
        metrics: classic metrics to compute.
        oracle: score recognition with the machine annotator.
        semsim_checkpoint: a SemSim checkpoint; when set SemSim joins the metrics.
        align_by: the cost the Hungarian alignment minimises.
    """

    metrics: tuple[Literal["mse", "psnr", "ssim", "lpips", "fid"], ...] = METRIC_NAMES
    oracle: bool = True
    semsim_checkpoint: str | None = None
    align_by: Literal["mse", "ssim"] = "mse"


@dataclass(frozen=True)
class SweepAxis:
    """One defense parameter to sweep; each value makes a variant of the scenario."""

    defense: str
    param: str
    values: tuple[float, ...]


@dataclass(frozen=True)
class Scenario:
    """A whole scenario file.

    `threads` is the CPU threads the run may use (driver torch threads and Ray's CPUs; None:
    `OMP_NUM_THREADS`, else the CPUs the process may run on; see `flaudit.threads`). The
    federation's results do not depend on it, so a finished federation is reused whatever its
    value; a CPU attack's do, in float rounding, and its record states the count.
    """

    name: str = "scenario"
    description: str = ""
    federation: FederationConfig = field(default_factory=FederationConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    defenses: tuple[DefenseConfig, ...] = ()
    capture: CaptureConfig = field(default_factory=CaptureConfig)
    attack: AttackConfig | None = None
    audit: AuditConfig = field(default_factory=AuditConfig)
    sweep: tuple[SweepAxis, ...] = ()
    output_dir: str = "runs"
    device: str = "auto"
    threads: int | None = field(default=None, metadata=bounds(1))

    def defense_list(self) -> tuple[tuple[str, dict[str, float]], ...]:
        return tuple((d.name, dict(d.params)) for d in self.defenses)


# --- loading -------------------------------------------------------------------------------------


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file.

    Raises:
        ScenarioError: the file is missing, not YAML, or breaks a rule (names the file and key path).
    """
    return parse_scenario(read_text(path), source=str(path))


def read_text(path: str | Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError(f"{path}: no such scenario file") from None


def parse_scenario(text: str, *, source: str = "<scenario>") -> Scenario:
    """Validate scenario YAML text (see `load_scenario`)."""
    return _check_names(parse_yaml_as(Scenario, text, source=source), source)


def parse_yaml_as(cls: type[T], text: str, *, source: str) -> T:
    """Parse YAML text into the frozen dataclass `cls` (nested dataclasses, tuples, literals, ranges).

    Raises:
        ScenarioError: not YAML, not a mapping, unknown key (with the nearest valid one), wrong type,
            value out of range; the message names `source` and the key path.
    """
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as err:
        raise ScenarioError(f"{source}: not valid YAML: {err}") from None
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ScenarioError(f"{source}: the top level must be a mapping of sections, got {type(data).__name__}")
    return _build(cls, data, source, "")


def scenario_to_dict(scenario: Scenario) -> dict[str, Any]:
    """The scenario as plain data (for YAML/JSON records)."""

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, Mapping):
            return {str(k): plain(v) for k, v in value.items()}
        if isinstance(value, (tuple, list)):
            return [plain(v) for v in value]
        return value

    return plain(scenario)


def dump_scenario(scenario: Scenario) -> str:
    return yaml.safe_dump(scenario_to_dict(scenario), sort_keys=False)


def _check_names(scenario: Scenario, source: str) -> Scenario:
    """Check names resolved through registries (models, datasets, defenses, attacks); fill defense defaults."""
    problem = _check_name(scenario.model.name, MODEL_NAMES, "model")
    if problem:
        raise ScenarioError(f"{source}: model.name: {problem}")
    problem = check_dataset_name(scenario.data.dataset)
    if problem:
        raise ScenarioError(f"{source}: data.dataset: {problem}")
    defenses = tuple(
        DefenseConfig(d.name, validate_defense(d.name, d.params, where=f"{source}: defenses[{index}]"))
        for index, d in enumerate(scenario.defenses)
    )
    for index, axis in enumerate(scenario.sweep):
        for value in axis.values:
            validate_defense(axis.defense, {axis.param: value} | _required_fill(axis), where=f"{source}: sweep[{index}]")
    if scenario.attack is not None:
        try:
            check_attack_params(scenario.attack.name, dict(scenario.attack.params))
        except FlauditError as err:
            raise ScenarioError(f"{source}: attack: {err}") from None
    return dataclasses.replace(scenario, defenses=defenses)


def check_dataset_name(name: str) -> str | None:
    """None if `name` is a known dataset name, else the message to show."""
    if name.startswith("imagefolder:"):
        return None if name.split(":", 1)[1] else "imagefolder needs a path: imagefolder:PATH"
    problem = _check_name(name, DATASET_NAMES, "dataset")
    return problem + ", imagefolder:PATH" if problem else None


def _check_name(name: str, known: tuple[str, ...], kind: str) -> str | None:
    if name in known:
        return None
    hint = closest(name, known)
    suggestion = f" (did you mean {hint!r}?)" if hint else ""
    return f"no {kind} {name!r}{suggestion}; known: {', '.join(sorted(known))}"


def _required_fill(axis: SweepAxis) -> dict[str, float]:
    # A sweep over one parameter of a defense with several required parameters takes the others
    # from that defense's entry in `defenses`; validation here only needs placeholders.
    if axis.defense not in DEFENSE_SPECS:
        return {}
    return {k: max(p.low, 0.0) + 1.0 for k, p in DEFENSE_SPECS.get(axis.defense).params.items() if k != axis.param and p.default is None}


def _build(cls: type, data: Any, source: str, where: str) -> Any:
    if not isinstance(data, Mapping):
        raise ScenarioError(f"{source}: {where or 'top level'}: expected a mapping, got {_type_name(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        key_path = f"{where}.{key}" if where else str(key)
        if key not in fields:
            hint = closest(str(key), tuple(fields))
            suggestion = f"; did you mean {hint!r}?" if hint else ""
            raise ScenarioError(f"{source}: {key_path}: unknown key{suggestion} Allowed here: {', '.join(fields)}")
        kwargs[key] = _convert(hints[key], value, source, key_path, fields[key].metadata)
    missing = [
        name for name, f in fields.items()
        if name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ScenarioError(f"{source}: {where + '.' if where else ''}{missing[0]}: required key is missing")
    return cls(**kwargs)


def _convert(tp: Any, value: Any, source: str, where: str, metadata: Mapping[str, Any]) -> Any:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        options = [a for a in get_args(tp) if a is not type(None)]
        if value is None:
            if type(None) in get_args(tp):
                return None
        errors = []
        for option in options:
            try:
                return _convert(option, value, source, where, metadata)
            except ScenarioError as err:
                errors.append(err)
        raise errors[0]
    if origin is Literal:
        allowed = get_args(tp)
        if value not in allowed:
            hint = closest(str(value), tuple(str(a) for a in allowed))
            suggestion = f" (did you mean {hint!r}?)" if hint else ""
            raise ScenarioError(f"{source}: {where}: {value!r} is not allowed{suggestion}; allowed: {', '.join(map(str, allowed))}")
        return value
    if origin is tuple:
        inner = get_args(tp)[0]
        if not isinstance(value, (list, tuple)):
            raise ScenarioError(f"{source}: {where}: expected a list, got {_type_name(value)}")
        return tuple(_convert(inner, item, source, f"{where}[{i}]", metadata) for i, item in enumerate(value))
    if origin in (Mapping, dict, typing.Mapping) or tp is Mapping:
        if not isinstance(value, Mapping):
            raise ScenarioError(f"{source}: {where}: expected a mapping, got {_type_name(value)}")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, source, where)
    if tp is bool:
        if not isinstance(value, bool):
            raise ScenarioError(f"{source}: {where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ScenarioError(f"{source}: {where}: expected an integer, got {value!r}")
        return _in_range(value, source, where, metadata)
    if tp is float:
        if isinstance(value, str):
            try:  # YAML 1.1 reads "1e-3" as a string
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ScenarioError(f"{source}: {where}: expected a number, got {value!r}")
        return _in_range(float(value), source, where, metadata)
    if tp is str:
        if not isinstance(value, str):
            raise ScenarioError(f"{source}: {where}: expected a string, got {value!r}")
        return value
    if tp is Any:
        return value
    raise TypeError(f"scenario field type {tp!r} is not supported")  # a bug in this module, not user input


def _in_range(value: float, source: str, where: str, metadata: Mapping[str, Any]) -> Any:
    problem = range_problem(value, metadata)
    if problem:
        raise ScenarioError(f"{source}: {where}: {problem}")
    return value


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__
