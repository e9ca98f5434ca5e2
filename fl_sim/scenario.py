"""Scenario files: the schema (nested frozen dataclasses) and its YAML loading and dumping.

Each key is declared once with `flaudit.fields.spec` and checked by its class's `__post_init__`,
so a scenario built in Python and one read from a file obey the same rule. Unknown keys (with
the nearest valid name), wrong types and out-of-range values fail with one `ScenarioError`
naming the file, the key path and what is allowed, every problem of the file at once. Any bytes
read as a scenario give a scenario or that error: the text must be UTF-8, one YAML document, a
mapping, no key twice, nested at most `MAX_DEPTH` levels and at most `MAX_NODES` values with
aliases expanded. This module is schema only: it imports no torch and none of the modules that
run a scenario.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import re
import stat
import types
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, Union, get_args, get_origin

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from attacks.config import AttackConfig
from attacks.params import ATTACK_PARAMS, MODEL_NEEDS
from defenses.specs import DEFENSE_SPECS, defense_params
from flaudit import limits
from flaudit.errors import ScenarioError, clip
from flaudit.fields import (
    FieldError,
    Pattern,
    build,
    check,
    check_value,
    combine,
    enforcing_limits,
    join,
    key_text,
    limited_keys,
    show,
    spec,
)
from flaudit.registry import closest
from flaudit.seeds import chosen_partitions, clients_per_round

T = TypeVar("T")

#: The largest scenario file read (a scenario is a few kB; this bounds the time to parse one).
MAX_BYTES = 256 * 1024
#: The deepest nesting of mappings and lists (a scenario needs 4: `sweep[0].values[0]`).
MAX_DEPTH = 32
#: The most values (mappings, lists and scalars) a file may hold with its aliases expanded.
MAX_NODES = 100_000
#: The most problems of one file listed (a file of thousands of wrong keys is not read line by line).
MAX_REPORTED = 50

#: A run's name is its directory's name under `output_dir`: one plain path component.
PLAIN_NAME = Pattern(
    r"(?=.{1,100}\Z)[A-Za-z0-9][A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]+)*",
    "a plain name: letters, digits, '-', '_' and single dots, starting with a letter or digit, at most 100 characters",
)
DEVICE = Pattern(r"auto|cpu|mps|cuda(?::[0-9]+)?", "one of 'auto', 'cpu', 'cuda', 'cuda:N', 'mps'")


class _Problem(Exception):
    """What is wrong with a file's YAML structure (the loader adds the file)."""


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, made strict and bounded for configuration files.

    YAML 1.1 reads `1e-3` (no dot) as a string; scenarios mean the number. Dates stay text.
    Keys are their text. Nesting is bounded while the document is composed (PyYAML's composer
    recurses once per level), and a value that cannot be read as its tag says is a YAML error.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._path: list[str] = []

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        part = f"[{index}]" if isinstance(index, int) else key_text(index.value) if isinstance(index, ScalarNode) else None
        if part is not None:
            self._path.append(part)
        try:
            if len(self._path) > MAX_DEPTH:
                where = functools.reduce(join, self._path[:4], "")
                raise _Problem(f"line {self.peek_event().start_mark.line + 1}: {where}...: nested deeper than {MAX_DEPTH} levels; "
                               "a scenario needs a few")
            return super().compose_node(parent, index)
        finally:
            if part is not None:
                self._path.pop()

    def get_single_node(self) -> Node | None:
        self.get_event()  # the stream's start
        document = None if self.check_event(yaml.StreamEndEvent) else self.compose_document()
        if not self.check_event(yaml.StreamEndEvent):
            line = self.peek_event().start_mark.line + 1
            raise _Problem(f"line {line}: a second YAML document starts here ('---'); a scenario file holds one")
        self.get_event()
        return document

    def construct_mapping(self, node: Node, deep: bool = False) -> dict[str, Any]:
        if not isinstance(node, MappingNode):
            raise ConstructorError(None, None, f"expected a mapping, found {node.id}", node.start_mark)
        self.flatten_mapping(node)  # `<<: *base` merges; a later key then replaces a merged one
        return {key.value: self.construct_object(value, deep=deep) for key, value in node.value}

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, LookupError, TypeError, OverflowError) as err:  # `!!int abc`, `!!bool maybe`, `!!float ''`
            text = clip(repr(node.value)) if isinstance(node, ScalarNode) else node.id
            raise ConstructorError(None, None, f"{text} cannot be read as {node.tag} ({err})", node.start_mark) from None


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
_Loader.add_constructor("tag:yaml.org,2002:timestamp", _Loader.construct_scalar)


#: What each classifier of `flaudit.models.MODELS` offers an attack (`attacks.params.MODEL_NEEDS`);
#: `batch_norm` only with the scenario's `model.bn: true`. Named here so that checking a scenario
#: needs no torch (tests/fl_sim/test_scenario_checks.py checks them against the built models).
MODEL_FEATURES: dict[str, tuple[str, ...]] = {
    "convnet": ("batch_norm",), "lenet": (), "resnet18": ("batch_norm",), "resnet20": ("batch_norm",), "resnet32": ("batch_norm",),
}
#: The classifiers `flaudit.models.MODELS` builds, and the datasets `fl_sim.data` loads (besides
#: `imagefolder:PATH`); named here so that checking a scenario needs no torch.
MODEL_NAMES: tuple[str, ...] = tuple(sorted(MODEL_FEATURES))
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

    clients: int = spec(4, ge=1, limit=limits.CLIENTS, doc="number of simulated clients")
    rounds: int = spec(3, ge=1, limit=limits.ROUNDS, doc="server rounds")
    fraction: float = spec(1.0, gt=0.0, le=1.0, doc="share of clients sampled for training each round")
    protocol: str = spec("fedavg", choices=("fedsgd", "fedavg"), doc="what a client returns: one batch's gradient or new weights")
    local_epochs: int = spec(1, ge=1, limit=limits.LOCAL_EPOCHS, doc="FedAvg local epochs")
    local_steps: int | None = spec(None, ge=1, limit=limits.LOCAL_STEPS, doc="FedAvg local SGD steps; when set it replaces local_epochs")
    batch_size: int = spec(32, ge=1, limit=limits.BATCH_SIZE, doc="client batch size")
    # Above 1000 every model here trains on NaN; the bound stops a typo (1e308) before the federation.
    learning_rate: float = spec(0.1, gt=0.0, le=1000.0, doc="client SGD learning rate (FedSGD: the server's step size)")
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
    # Above 1e6 the split is iid in all but rounding, and NumPy's Dirichlet draws zeros near 1e308.
    alpha: float = spec(0.5, gt=0.0, le=1e6, doc="Dirichlet concentration; smaller is more skewed")
    image_size: int | None = spec(None, ge=4, limit=limits.IMAGE_SIZE, doc="side length images are resized to (null: the dataset's own)")
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
    width: int | None = spec(None, ge=1, limit=limits.WIDTH, doc="base width (null: the architecture's own)")
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

    rounds: tuple[int, ...] | None = spec(None, ge=1, nonempty=True, doc="rounds whose updates are recorded (null: all)")
    clients: tuple[int, ...] | None = spec(None, ge=0, nonempty=True, doc="clients whose updates are recorded (null: all)")

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
    values: tuple[float, ...] = spec(nonempty=True, doc="one variant per value")

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
        problems = []
        for index, value in enumerate(given):
            try:
                check_value(declared.params, self.param, value)
            except FieldError as err:
                problems.append(FieldError(owner, f"values[{index}]", err.problem))
        if problems:
            raise combine(problems)

    def variant_name(self, value: float) -> str:
        """The name (and run directory) of the variant that sets the parameter to `value`."""
        return f"{self.defense}-{self.param}-{value:g}"


@dataclass(frozen=True)
class Scenario:
    """A whole scenario file.

    `threads` is the CPU threads the run may use (driver torch threads and Ray's CPUs; None:
    `OMP_NUM_THREADS`, else the CPUs the process may run on; see `flaudit.threads`). The
    federation's results do not depend on it, so a finished federation is reused whatever its
    value; a CPU attack's do, in float rounding, and its record states the count.

    `limits` raises cost limits on purpose (`flaudit.limits`): key name -> the largest value
    this scenario may ask for (`limits: {clients: 20000}`); the loader applies it to the file.

    Besides each key's own rule, the scenario is checked as a whole: capture and attack
    selections must select something the run produces, the attack must suit the model, sweep
    variants must differ and `limits` must name limited keys. Every problem is reported at once.
    """

    name: str = spec("scenario", pattern=PLAIN_NAME, doc="run name (the run directory's name under output_dir)")
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
    device: str = spec("auto", pattern=DEVICE, doc="where attacks and metrics run")
    threads: int | None = spec(None, ge=1, doc="CPU threads (and Ray CPUs) this run may use")
    limits: Mapping[str, float] = spec(default_factory=dict, doc="cost limits raised on purpose: key name -> largest value")

    def __post_init__(self) -> None:
        check(self)
        object.__setattr__(self, "limits", dict(self.limits))
        owner = type(self).__name__
        problems = [FieldError(owner, key, text) for key, text in (
            *self._sweep_problems(), *self._selection_problems(), *self._attack_problems(), *self._limit_problems())]
        if problems:
            raise combine(problems)

    def defense_list(self) -> tuple[tuple[str, dict[str, float]], ...]:
        return tuple((d.name, dict(d.params)) for d in self.defenses)

    def _sweep_problems(self) -> Iterator[tuple[str, str]]:
        listed = {d.name for d in self.defenses}
        made: dict[str, str] = {}
        for index, axis in enumerate(self.sweep):
            # A sweep appends a defense the scenario does not list (`pipeline.runs.sweep_variants`);
            # its other required parameters then have no value.
            required = [f.name for f in dataclasses.fields(DEFENSE_SPECS.get(axis.defense).params)
                        if f.name != axis.param and f.default is dataclasses.MISSING]
            if axis.defense not in listed and required:
                yield f"sweep[{index}].defense", f"{axis.defense!r} is not in defenses, so its {', '.join(required)} has no value; list it there"
            for number, value in enumerate(axis.values):
                name, where = axis.variant_name(value), f"sweep[{index}].values[{number}]"
                if name in made:  # its run directory would be the other's
                    yield where, f"{show(value)} makes variant {name!r} again ({made[name]}); list each value once"
                made.setdefault(name, where)

    def _selection_problems(self) -> Iterator[tuple[str, str]]:
        """Capture and attack selections that name rounds or clients the run never has, or that select nothing."""
        fed, capture, attack = self.federation, self.capture, self.attack
        sections = [("capture", capture.rounds, capture.clients)]
        if attack is not None:
            sections.append(("attack", attack.rounds, attack.clients))
        wrong = False
        for section, rounds, clients in sections:
            for index, server_round in enumerate(rounds or ()):
                if server_round > fed.rounds:
                    wrong = True
                    yield f"{section}.rounds[{index}]", f"round {server_round} is beyond the run's {fed.rounds} rounds (federation.rounds)"
                elif section == "attack" and capture.rounds is not None and server_round not in capture.rounds:
                    wrong = True
                    yield f"attack.rounds[{index}]", f"round {server_round} is not captured (capture.rounds: {show(capture.rounds)})"
            for index, client in enumerate(clients or ()):
                if client >= fed.clients:
                    wrong = True
                    yield (f"{section}.clients[{index}]",
                           f"client {client} does not exist: the run's {fed.clients} clients are 0 to {fed.clients - 1} (federation.clients)")
                elif section == "attack" and capture.clients is not None and client not in capture.clients:
                    wrong = True
                    yield f"attack.clients[{index}]", f"client {client} is not captured (capture.clients: {show(capture.clients)})"
        if not wrong:
            yield from self._unsampled()

    def _unsampled(self) -> Iterator[tuple[str, str]]:
        """Selections that no round trains, when `federation.fraction` samples fewer than all clients."""
        fed = self.federation
        per_round = clients_per_round(fed.fraction, fed.clients)
        if per_round == fed.clients:
            return
        capture, attack = self.capture, self.attack
        captured = attacked = False
        # Every round, when they are listed; else the first ROUNDS (a client missed by that many draws is
        # not worth a verdict: past them the check stays silent).
        scanned = capture.rounds or range(1, min(fed.rounds, limits.ROUNDS) + 1)
        for server_round in scanned:
            trained = chosen_partitions(fed.seed, server_round, range(fed.clients), per_round)
            kept = [c for c in trained if capture.clients is None or c in capture.clients]
            captured = captured or bool(kept)
            attacked = attacked or attack is None or (
                (attack.rounds is None or server_round in attack.rounds) and any(attack.clients is None or c in attack.clients for c in kept))
            if captured and attacked:
                return
        if len(scanned) < fed.rounds and capture.rounds is None:
            return
        sampling = (f"federation.fraction {fed.fraction:g} trains {per_round} of the {fed.clients} clients each round, "
                    f"chosen by federation.seed")
        if not captured:
            rounds = show(capture.rounds) if capture.rounds is not None else f"1 to {fed.rounds}"
            yield "capture", f"selects no update: {sampling}, and clients {show(capture.clients)} train in none of rounds {rounds}"
        else:
            yield "attack", f"selects no captured update: {sampling}, and none the attack names is captured"

    def _attack_problems(self) -> Iterator[tuple[str, str]]:
        """An attack that needs what the model does not have (`attacks.params.MODEL_NEEDS`)."""
        if self.attack is None:
            return
        offered = model_features(self.model)
        model = repr(self.model.name) + ("" if self.model.bn or self.model.name == "lenet" else " with bn: false")
        for need in ATTACK_PARAMS.get(self.attack.name).needs:
            if need not in offered:
                suited = [name for name in ATTACK_PARAMS if set(ATTACK_PARAMS.get(name).needs) <= set(offered)]
                yield "attack.name", (f"{self.attack.name!r} needs {MODEL_NEEDS[need]}; model {model} has none; "
                                      f"attacks that suit it: {', '.join(suited)}")

    def _limit_problems(self) -> Iterator[tuple[str, str]]:
        known = limited_scenario_keys()
        for key, value in self.limits.items():
            if key not in known:
                hint = closest(str(key), tuple(known))
                suggestion = f" (did you mean {hint!r}?)" if hint else ""
                yield f"limits.{key_text(key)}", f"no key has a cost limit of that name{suggestion}; limited keys: {', '.join(sorted(known))}"
            elif isinstance(value, bool) or not isinstance(value, numbers.Real) or not value >= known[key]:
                yield (f"limits.{key}", (f"{show(value)} does not raise the cost limit of {key}; allowed: a number of at least "
                       f"{known[key]:g} (the largest value this scenario may ask for; leave the key out to keep {known[key]:g})"))


def model_features(model: ModelConfig) -> tuple[str, ...]:
    """What the scenario's model offers an attack (`MODEL_FEATURES`, less batch_norm under `bn: false`)."""
    return tuple(f for f in MODEL_FEATURES[model.name] if f != "batch_norm" or model.bn)


@functools.cache
def limited_scenario_keys() -> dict[str, float]:
    """Key name -> cost limit of every key a scenario may raise in `limits:` (its own, its attacks' and defenses')."""
    parameters = [ATTACK_PARAMS.get(name) for name in ATTACK_PARAMS] + [DEFENSE_SPECS.get(name).params for name in DEFENSE_SPECS]
    return limited_keys(Scenario, *parameters)


# --- loading -------------------------------------------------------------------------------------


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file.

    Raises:
        ScenarioError: the file is missing, not a file, not UTF-8, not YAML, or breaks a rule (names
            the file and key path; every problem at once).
    """
    return parse_scenario(read_text(path), source=str(path))


def read_text(path: str | Path) -> str:
    """A configuration file's text: a regular file of at most `MAX_BYTES`, UTF-8 (a byte-order mark is fine).

    Raises:
        ScenarioError: missing, a directory or other non-file, unreadable, too large, or not UTF-8.
    """
    path = Path(path)
    try:
        if not stat.S_ISREG(path.stat().st_mode):  # a directory; a FIFO or device would block or never end
            kind = "a directory" if path.is_dir() else "not a regular file"
            raise ScenarioError(f"{path}: is {kind}; give a scenario YAML file")
        with path.open("rb") as stream:
            data = stream.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise ScenarioError(f"{path}: no such scenario file") from None
    except (OSError, ValueError) as err:  # permissions, a name with a NUL byte, ...
        raise ScenarioError(f"{path}: cannot be read ({getattr(err, 'strerror', None) or err})") from None
    if len(data) > MAX_BYTES:
        raise ScenarioError(f"{path}: larger than {MAX_BYTES // 1024} KiB; a scenario file is a few kB")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ScenarioError(f"{path}: is UTF-16 text; save it as UTF-8")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise ScenarioError(f"{path}: not UTF-8 text (line {line}, byte {err.start}: {data[err.start:err.start + 1]!r}); save it as UTF-8") from None


def parse_scenario(text: str, *, source: str = "<scenario>") -> Scenario:
    """Validate scenario YAML text (see `load_scenario`)."""
    return parse_yaml_as(Scenario, text, source=source)


def parse_yaml_as(cls: type[T], text: str, *, source: str) -> T:
    """Parse YAML text into the frozen config dataclass `cls` (`flaudit.fields.build`, section by section).

    Sections become their dataclasses and lists tuples here; every value is then checked by its
    class's `__post_init__`, so a file and a config built in Python get the same message. Cost
    limits are enforced (`flaudit.fields.enforcing_limits`), raised by the file's top-level
    `limits:` when `cls` has that key.

    Raises:
        ScenarioError: not YAML (or past the loader's bounds, see `load_yaml`), not a mapping,
            unknown key (with the nearest valid one), missing key, wrong type, value out of range
            or above its cost limit: one line per problem, `source: key.path: problem; allowed: ...`.
    """
    data = load_yaml(text, source=source)
    raised = {}
    if "limits" in data and "limits" in {f.name for f in dataclasses.fields(cls)} and isinstance(data["limits"], Mapping):
        # Applied while the file is built; `cls` itself then checks the section's keys and values.
        raised = {k: v for k, v in data["limits"].items()
                  if isinstance(v, numbers.Real) and not isinstance(v, bool) and not (isinstance(v, float) and math.isnan(v))}
    try:
        with enforcing_limits(raised):
            return build(cls, data, owner="", convert=_convert)
    except FieldError as err:
        lines = [f"{source}: {e}" for e in err.errors[:MAX_REPORTED]]
        if len(err.errors) > MAX_REPORTED:
            lines.append(f"{source}: and {len(err.errors) - MAX_REPORTED} more problems")
        raise ScenarioError("\n".join(lines)) from None


def load_yaml(text: str, *, source: str) -> dict[str, Any]:
    """A configuration file's YAML as a mapping (an empty file is an empty mapping).

    One document; keys are text and appear once per mapping; at most `MAX_DEPTH` levels and
    `MAX_NODES` values with aliases expanded, so a crafted file (a billion laughs, thousands of
    nested brackets) is refused at once instead of filling memory or the stack.

    Raises:
        ScenarioError: `source: ...` naming the line or the key path of the problem.
    """
    if len(text) > MAX_BYTES:
        raise ScenarioError(f"{source}: longer than {MAX_BYTES // 1024} Ki characters; a scenario is a few kB")
    try:
        data = _compose_and_construct(text)
    except _Problem as problem:
        raise ScenarioError(f"{source}: {problem}") from None
    except yaml.YAMLError as err:
        raise ScenarioError(f"{source}: not valid YAML: {_yaml_problem(err)}") from None
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ScenarioError(f"{source}: the top level must be a mapping of sections, got {_kind_of(data)}")
    return dict(data)


def _compose_and_construct(text: str) -> Any:
    loader = _Loader(text)  # reads the text: a control character is a YAML error already here
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_nodes(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _check_nodes(root: Node) -> None:
    """Refuse a composed document that repeats a key, keys by a collection, refers to itself, or is
    deeper than `MAX_DEPTH` or larger than `MAX_NODES` with its aliases expanded.

    Aliases make the document a graph: each node is measured once (its height and expanded size
    memoised), so a billion laughs costs as many steps as it has lines.
    """
    measured: dict[int, tuple[int, int]] = {}  # id(node) -> (height, expanded size)
    open_nodes: set[int] = set()

    def visit(node: Node, path: str, depth: int) -> tuple[int, int]:
        line = node.start_mark.line + 1
        if id(node) in measured:
            height, size = measured[id(node)]
            if depth + height - 1 > MAX_DEPTH:
                raise _Problem(f"{path or 'the top level'} (line {line}): nested deeper than {MAX_DEPTH} levels through an alias")
            return height, size
        if id(node) in open_nodes:
            raise _Problem(f"{path or 'the top level'} (line {line}): an alias refers to a collection that holds it")
        if depth > MAX_DEPTH:
            raise _Problem(f"{path} (line {line}): nested deeper than {MAX_DEPTH} levels")
        children: list[tuple[Node, str]] = []
        if isinstance(node, SequenceNode):
            children = [(item, join(path, f"[{index}]")) for index, item in enumerate(node.value)]
        elif isinstance(node, MappingNode):
            first: dict[str, int] = {}
            for key, value in node.value:
                if not isinstance(key, ScalarNode):
                    raise _Problem(f"{path or 'the top level'} (line {key.start_mark.line + 1}): a key must be a name, not a {key.id}")
                where = join(path, key_text(key.value))
                if key.value in first and key.tag != "tag:yaml.org,2002:merge":
                    raise _Problem(f"{where} (line {key.start_mark.line + 1}): duplicate key, first given on line {first[key.value]}; "
                                   "give each key once")
                first.setdefault(key.value, key.start_mark.line + 1)
                children.append((value, where))
        height, size = 1, 1
        open_nodes.add(id(node))
        for child, where in children:
            child_height, child_size = visit(child, where, depth + 1)
            height, size = max(height, child_height + 1), size + child_size
            if size > MAX_NODES:
                raise _Problem(f"{path or 'the top level'} (line {line}): more than {MAX_NODES} values with aliases expanded; "
                               "a scenario holds a few dozen")
        open_nodes.discard(id(node))
        measured[id(node)] = (height, size)
        return height, size

    visit(root, "", 0)


def _yaml_problem(err: yaml.YAMLError) -> str:
    """PyYAML's error on one line: `line 3, column 5: expected ',' or ']', but got '<stream end>'`."""
    if not isinstance(err, yaml.MarkedYAMLError):
        return clip(str(err).replace("\n", " "), 300)
    mark = err.problem_mark or err.context_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    context = f" ({err.context}{f' at line {err.context_mark.line + 1}' if err.context_mark else ''})" if err.context else ""
    return f"{where}{err.problem or 'not YAML'}{context}"


def _kind_of(value: Any) -> str:
    return "null" if value is None else "a list" if isinstance(value, list) else f"a {type(value).__name__}"


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
    return f"no {kind} {clip(repr(name))}{suggestion}; known: {', '.join(sorted(known))}"


def _convert(tp: Any, value: Any, where: str) -> Any:
    """The structure of a YAML value: sections become dataclasses, lists tuples; scalars pass as
    they are, for the class's own check."""
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        options = [a for a in get_args(tp) if a is not type(None)]
        return value if value is None or len(options) != 1 else _convert(options[0], value, where)
    if origin is tuple and isinstance(value, list):
        items, problems = [], []
        for index, item in enumerate(value):
            try:
                items.append(_convert(get_args(tp)[0], item, f"{where}[{index}]"))
            except FieldError as err:
                problems.append(err)
        if problems:
            raise combine(problems)
        return tuple(items)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise FieldError("", where, f"expected a mapping, got {'null' if value is None else type(value).__name__}")
        return build(tp, value, owner=where, convert=_convert)
    if isinstance(value, Mapping):
        return dict(value)
    return value
