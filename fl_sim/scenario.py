"""Scenario files: the schema (nested frozen dataclasses) and its YAML loading and dumping.

Each key is declared once with `flaudit.fields.spec` and checked by its class's `__post_init__`,
so a scenario built in Python and one read from a file obey the same rule. Unknown keys (with
the nearest valid name), wrong types and out-of-range values fail with one `ScenarioError`
naming the file, the key path and what is allowed. This module is schema only: it imports no
torch and none of the modules that run a scenario.
"""

from __future__ import annotations

import dataclasses
import re
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, Union, get_args, get_origin

import yaml

from attacks.config import AttackConfig
from defenses.specs import DEFENSE_SPECS, defense_params
from flaudit.errors import ScenarioError
from flaudit.fields import FieldError, build, check, check_value, spec
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

    clients: int = spec(4, ge=1, doc="number of simulated clients")
    rounds: int = spec(3, ge=1, doc="server rounds")
    fraction: float = spec(1.0, gt=0.0, le=1.0, doc="share of clients sampled for training each round")
    protocol: str = spec("fedavg", choices=("fedsgd", "fedavg"), doc="what a client returns: one batch's gradient or new weights")
    local_epochs: int = spec(1, ge=1, doc="FedAvg local epochs")
    local_steps: int | None = spec(None, ge=1, doc="FedAvg local SGD steps; when set it replaces local_epochs")
    batch_size: int = spec(32, ge=1, doc="client batch size")
    learning_rate: float = spec(0.1, gt=0.0, doc="client SGD learning rate (FedSGD: the server's step size)")
    momentum: float = spec(0.0, ge=0.0, le=1.0, doc="client SGD momentum (FedAvg only)")
    seed: int = spec(0, ge=0, doc="partitioning, initial weights, client sampling, batches and defense noise")
    client_cpus: int = spec(1, ge=1, doc="CPUs (and torch threads) of each simulated client")

    def __post_init__(self) -> None:
        check(self)


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

    dataset: str = spec("digits", doc="dataset name, or imagefolder:PATH")
    partition: str = spec("iid", choices=("iid", "dirichlet"), doc="how the data is split across clients")
    alpha: float = spec(0.5, gt=0.0, doc="Dirichlet concentration; smaller is more skewed")
    image_size: int | None = spec(None, ge=4, doc="side length images are resized to (null: the dataset's own)")
    root: str = spec("~/.cache/flaudit/datasets", doc="where downloadable datasets live")
    test_fraction: float = spec(0.2, gt=0.0, le=1.0, doc="share held out for evaluation when there is no test split")
    max_examples: int | None = spec(None, ge=1, doc="cap on training examples (null: all)")

    def __post_init__(self) -> None:
        check(self)
        problem = check_dataset_name(self.dataset)
        if problem:
            raise FieldError(type(self).__name__, "dataset", problem)


@dataclass(frozen=True)
class ModelConfig:
    """The classifier: `lenet`, `convnet`, `resnet20`, `resnet32` or `resnet18`."""

    name: str = spec("lenet", doc="classifier architecture")
    width: int | None = spec(None, ge=1, doc="base width (null: the architecture's own)")
    bn: bool = spec(True, doc="batch normalisation")

    def __post_init__(self) -> None:
        check(self)
        problem = check_name(self.name, MODEL_NAMES, "model")
        if problem:
            raise FieldError(type(self).__name__, "name", problem)


@dataclass(frozen=True)
class DefenseConfig:
    """One client-side defense, applied to the update before it leaves the client.

    Built, its `params` are checked against the defense's declarations (`defenses.specs`) and
    hold every parameter, defaults filled in.
    """

    name: str = spec(doc="defense registry name")
    params: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check(self)
        try:
            object.__setattr__(self, "params", defense_params(self.name, self.params))
        except FieldError as err:
            raise err.within(type(self).__name__, "" if err.key == "name" else "params") from None


@dataclass(frozen=True)
class CaptureConfig:
    """Which updates the honest-but-curious server records (None: all)."""

    rounds: tuple[int, ...] | None = spec(None, ge=1, doc="rounds whose updates are recorded (null: all)")
    clients: tuple[int, ...] | None = spec(None, ge=0, doc="clients whose updates are recorded (null: all)")

    def __post_init__(self) -> None:
        check(self)

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

    metrics: tuple[str, ...] = spec(METRIC_NAMES, choices=METRIC_NAMES, doc="classic metrics to compute")
    oracle: bool = spec(True, doc="score recognition with the machine annotator")
    semsim_checkpoint: str | None = spec(None, doc="a SemSim checkpoint; when set SemSim joins the metrics")
    align_by: str = spec("mse", choices=("mse", "ssim"), doc="the cost the Hungarian alignment minimises")

    def __post_init__(self) -> None:
        check(self)


@dataclass(frozen=True)
class SweepAxis:
    """One defense parameter to sweep; each value makes a variant of the scenario."""

    defense: str = spec(doc="defense registry name")
    param: str = spec(doc="the parameter of that defense")
    values: tuple[float, ...] = spec(doc="one variant per value")

    def __post_init__(self) -> None:
        given = self.values  # as written (-1, not -1.0), for the messages
        check(self)
        owner = type(self).__name__
        if self.defense not in DEFENSE_SPECS:
            raise FieldError(owner, "defense", DEFENSE_SPECS.unknown_message(self.defense))
        declared = DEFENSE_SPECS.get(self.defense)
        names = declared.param_names()
        if self.param not in names:
            hint = closest(self.param, names)
            suggestion = f" (did you mean {hint!r}?)" if hint else ""
            raise FieldError(owner, "param", f"{self.param!r} is not a parameter of {self.defense!r}{suggestion}; allowed: {', '.join(names)}")
        for index, value in enumerate(given):
            try:
                check_value(declared.params, self.param, value)
            except FieldError as err:
                raise FieldError(owner, f"values[{index}]", err.problem) from None


@dataclass(frozen=True)
class Scenario:
    """A whole scenario file.

    `threads` is the CPU threads the run may use (driver torch threads and Ray's CPUs; None:
    `OMP_NUM_THREADS`, else the CPUs the process may run on; see `flaudit.threads`). The
    federation's results do not depend on it, so a finished federation is reused whatever its
    value; a CPU attack's do, in float rounding, and its record states the count.
    """

    name: str = spec("scenario", doc="run name (the run directory's name)")
    description: str = spec("", doc="one line for the report")
    federation: FederationConfig = field(default_factory=FederationConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    defenses: tuple[DefenseConfig, ...] = ()
    capture: CaptureConfig = field(default_factory=CaptureConfig)
    attack: AttackConfig | None = None
    audit: AuditConfig = field(default_factory=AuditConfig)
    sweep: tuple[SweepAxis, ...] = ()
    output_dir: str = spec("runs", doc="where run directories go")
    device: str = spec("auto", doc="auto, cpu or cuda[:N] for attacks and metrics")
    threads: int | None = spec(None, ge=1, doc="CPU threads (and Ray CPUs) this run may use")

    def __post_init__(self) -> None:
        check(self)
        listed = {d.name for d in self.defenses}
        for index, axis in enumerate(self.sweep):
            # A sweep appends a defense the scenario does not list (`pipeline.runs.sweep_variants`);
            # its other required parameters then have no value.
            required = [f.name for f in dataclasses.fields(DEFENSE_SPECS.get(axis.defense).params)
                        if f.name != axis.param and f.default is dataclasses.MISSING]
            if axis.defense not in listed and required:
                raise FieldError(type(self).__name__, f"sweep[{index}].defense",
                                 f"{axis.defense!r} is not in defenses, so its {', '.join(required)} has no value; list it there")

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
    return parse_yaml_as(Scenario, text, source=source)


def parse_yaml_as(cls: type[T], text: str, *, source: str) -> T:
    """Parse YAML text into the frozen config dataclass `cls` (`flaudit.fields.build`, section by section).

    Sections become their dataclasses and lists tuples here; every value is then checked by its
    class's `__post_init__`, so a file and a config built in Python get the same message.

    Raises:
        ScenarioError: not YAML, not a mapping, unknown key (with the nearest valid one), missing
            key, wrong type, value out of range; `source: key.path: problem; allowed: ...`.
    """
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as err:
        raise ScenarioError(f"{source}: not valid YAML: {err}") from None
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ScenarioError(f"{source}: the top level must be a mapping of sections, got {type(data).__name__}")
    try:
        return build(cls, data, owner="", convert=_convert)
    except FieldError as err:
        raise ScenarioError(f"{source}: {err}") from None


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


def check_dataset_name(name: str) -> str | None:
    """None if `name` is a known dataset name, else the message to show."""
    if name.startswith("imagefolder:"):
        return None if name.split(":", 1)[1] else "imagefolder needs a path: imagefolder:PATH"
    problem = check_name(name, DATASET_NAMES, "dataset")
    return problem + ", imagefolder:PATH" if problem else None


def check_name(name: str, known: tuple[str, ...], kind: str) -> str | None:
    """None if `name` is one of `known`, else a registry's message: `no model 'vgg'; known: ...`."""
    if name in known:
        return None
    hint = closest(name, known)
    suggestion = f" (did you mean {hint!r}?)" if hint else ""
    return f"no {kind} {name!r}{suggestion}; known: {', '.join(sorted(known))}"


def _convert(tp: Any, value: Any, where: str) -> Any:
    """The structure of a YAML value: sections become dataclasses, lists tuples; scalars pass as
    they are, for the class's own check."""
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        options = [a for a in get_args(tp) if a is not type(None)]
        return value if value is None or len(options) != 1 else _convert(options[0], value, where)
    if origin is tuple and isinstance(value, list):
        return tuple(_convert(get_args(tp)[0], item, f"{where}[{i}]") for i, item in enumerate(value))
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise FieldError("", where, f"expected a mapping, got {'null' if value is None else type(value).__name__}")
        return build(tp, value, owner=where, convert=_convert)
    if isinstance(value, Mapping):
        return dict(value)
    return value
