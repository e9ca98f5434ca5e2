"""Attack hyperparameters: declared with their allowed values, validated, and free of torch.

Each attack's hyperparameters are a frozen dataclass here (`DLGParams`, ...); the attack class
in its own module inherits them and adds the computation. Keeping the declarations torch-free
lets the scenario loader and `flaudit validate` check an attack's parameters at once.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar

from flaudit.errors import ScenarioError
from flaudit.registry import Registry


class AttackParameterError(ScenarioError):
    """An attack hyperparameter is unknown, of the wrong type or out of range; the message lists what is allowed."""


def hyper(
    default: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    choices: tuple[Any, ...] | None = None,
    doc: str = "",
) -> Any:
    """A dataclass field for a hyperparameter with its allowed values.

    Args:
        default: the paper's default; its type (int, float, bool, str) is the parameter's type.
        low: smallest allowed value (inclusive unless `low_open`).
        high: largest allowed value (inclusive).
        low_open: whether `low` itself is excluded.
        choices: the allowed values of a categorical parameter.
        doc: one line for error messages and reports.
    """
    return dataclasses.field(
        default=default,
        metadata={"low": low, "high": high, "low_open": low_open, "choices": choices, "doc": doc, "kind": type(default)},
    )


def describe(field: dataclasses.Field) -> str:  # type: ignore[type-arg]
    """`name: type in range (default x) - doc`, for error messages."""
    meta = field.metadata
    kind = meta.get("kind", type(field.default))
    if meta.get("choices"):
        allowed = "one of " + ", ".join(repr(c) for c in meta["choices"])
    elif meta.get("low") is not None or meta.get("high") is not None:
        left = "(" if meta.get("low_open") else "["
        low = meta.get("low")
        high = meta.get("high")
        allowed = f"{kind.__name__} in {left}{'-inf' if low is None else low}, {'inf' if high is None else high}]"
    else:
        allowed = kind.__name__
    doc = f" - {meta['doc']}" if meta.get("doc") else ""
    return f"{field.name}: {allowed} (default {field.default!r}){doc}"


def allowed_parameters(cls: type) -> str:
    """All of an attack class's hyperparameters with their allowed values, one per line."""
    return "\n".join("  " + describe(f) for f in dataclasses.fields(cls))


def validate(attack: Any, attack_name: str) -> None:
    """Check and coerce every field of a frozen attack dataclass in place (int -> float where declared)."""
    for field in dataclasses.fields(attack):
        meta = field.metadata
        if "kind" not in meta:
            continue
        value = getattr(attack, field.name)
        kind = meta["kind"]
        problem = None
        if kind is bool:
            if not isinstance(value, bool):
                problem = f"must be true or false, got {value!r}"
        elif kind is int:
            if isinstance(value, bool) or not isinstance(value, int):
                problem = f"must be an integer, got {value!r}"
        elif kind is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                hint = " (write numbers like 1.0e-4 in YAML: PyYAML reads 1e-4 as a string)" if isinstance(value, str) else ""
                problem = f"must be a number, got {value!r}{hint}"
            else:
                value = float(value)
                if not math.isfinite(value):
                    problem = f"must be finite, got {value!r}"
                object.__setattr__(attack, field.name, value)
        elif kind is str and not isinstance(value, str):
            problem = f"must be a string, got {value!r}"
        if problem is None and meta.get("choices") and value not in meta["choices"]:
            problem = f"got {value!r}"
        if problem is None and kind in (int, float):
            low, high = meta.get("low"), meta.get("high")
            if low is not None and (value < low or (meta.get("low_open") and value == low)):
                problem = f"got {value!r}, below the allowed range"
            elif high is not None and value > high:
                problem = f"got {value!r}, above the allowed range"
        if problem is not None:
            raise AttackParameterError(
                f"attack {attack_name!r}: parameter {field.name!r} {problem}; allowed: {describe(field)}\n"
                f"parameters of {attack_name!r}:\n{allowed_parameters(type(attack))}"
            )


# Per-tensor weights of the gradient distance (`attacks.objectives.layer_weights`).
LAYER_WEIGHTINGS = ("equal", "linear", "exp")
INITS = ("randn", "rand", "zeros")


@dataclass(frozen=True)
class AttackParams:
    """Base of every attack's hyperparameters: validated when built."""

    name: ClassVar[str]

    def __post_init__(self) -> None:
        validate(self, self.name)


@dataclass(frozen=True)
class DLGParams(AttackParams):
    """DLG with its paper's settings: L-BFGS, step 1, 300 iterations, L2 distance, joint soft labels."""

    name: ClassVar[str] = "dlg"

    iterations: int = hyper(300, low=1, doc="L-BFGS steps (each up to max_iter inner iterations)")
    lr: float = hyper(1.0, low=0.0, low_open=True, doc="L-BFGS step size")
    max_iter: int = hyper(20, low=1, doc="L-BFGS inner iterations per step (torch's default)")
    history_size: int = hyper(100, low=1, doc="L-BFGS curvature pairs kept")
    restarts: int = hyper(
        1, low=1, high=4096,
        doc="random restarts, run as one batch; the best by loss is kept (the papers use 1; 4 avoids stalled runs)",
    )
    label_mode: str = hyper("joint", choices=("joint", "recovered"), doc="optimise soft labels or read them analytically")
    distance: str = hyper("l2", choices=("l2", "cosine"), doc="gradient distance")
    layer_weighting: str = hyper("equal", choices=LAYER_WEIGHTINGS, doc="per-tensor weights of the distance")
    tv: float = hyper(0.0, low=0.0, doc="total-variation weight (DLG has none)")
    init: str = hyper("randn", choices=("randn", "rand"), doc="initial candidates (normalised space)")
    compile: bool = hyper(False, doc="torch.compile the batched objective: slow first call, faster iterations")


@dataclass(frozen=True)
class IDLGParams(DLGParams):
    """iDLG: DLG with the label read from the last layer's gradient (the sign rule), then L-BFGS on the image."""

    name: ClassVar[str] = "idlg"

    label_mode: str = hyper("recovered", choices=("recovered",), doc="iDLG always recovers the labels analytically")


@dataclass(frozen=True)
class InvertingGradientsParams(AttackParams):
    """Inverting Gradients, with breaching 0.1.2's `invertinggradients` defaults."""

    name: ClassVar[str] = "inverting_gradients"

    iterations: int = hyper(24_000, low=1, doc="Adam iterations per restart")
    lr: float = hyper(0.1, low=0.0, low_open=True, doc="Adam step size")
    tv: float = hyper(0.2, low=0.0, doc="total-variation weight")
    restarts: int = hyper(1, low=1, high=4096, doc="random restarts, run as one batch; the best by loss is kept")
    distance: str = hyper("cosine", choices=("cosine", "l2"), doc="gradient distance")
    layer_weighting: str = hyper("equal", choices=LAYER_WEIGHTINGS, doc="per-tensor weights of the distance")
    signed: bool = hyper(True, doc="step on the sign of the gradient")
    boxed: bool = hyper(True, doc="clamp to the valid [0, 1] pixel range (normalised)")
    lr_decay: bool = hyper(True, doc="step size / 10 at 3/8, 5/8, 7/8 of the iterations")
    init: str = hyper("randn", choices=INITS, doc="initial candidates (normalised space)")
    compile: bool = hyper(False, doc="torch.compile the batched objective: slow first call, faster iterations")


@dataclass(frozen=True)
class GradInversionParams(InvertingGradientsParams):
    """Inverting Gradients plus GradInversion's BN-statistics prior (breaching's DeepInversion weights)."""

    name: ClassVar[str] = "gradinversion"

    bn: float = hyper(0.1, low=0.0, low_open=True, doc="weight of the BN-statistics prior")
    bn_first_multiplier: float = hyper(10.0, low=0.0, doc="extra weight of the first BN layer")


@dataclass(frozen=True)
class AnalyticLinearParams(AttackParams):
    """The closed-form attack on a first linear layer with bias: nothing to tune."""

    name: ClassVar[str] = "analytic_linear"

    layer: str = hyper("", doc="name of the first nn.Linear ('' finds it)")


#: Every attack's hyperparameters by attack name (the attack classes are in `attacks.registry`).
ATTACK_PARAMS: Registry[type[AttackParams]] = Registry("attack")
for _cls in (DLGParams, IDLGParams, InvertingGradientsParams, GradInversionParams, AnalyticLinearParams):
    ATTACK_PARAMS.add(_cls.name, _cls)


def check_unknown(cls: type, name: str, params: dict[str, Any]) -> None:
    """Raise `AttackParameterError` naming the first parameter `cls` does not declare."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(params) - known)
    if unknown:
        raise AttackParameterError(
            f"attack {name!r} has no parameter {unknown[0]!r}"
            + (f" (nor {', '.join(repr(u) for u in unknown[1:])})" if len(unknown) > 1 else "")
            + f"; its parameters are:\n{allowed_parameters(cls)}"
        )


def check_attack_params(name: str, params: dict[str, Any]) -> AttackParams:
    """Validate `params` for attack `name` without building the attack (no torch needed).

    Raises:
        UnknownNameError: no attack of that name (the message lists the known ones).
        AttackParameterError: an unknown parameter, or a value of the wrong type or out of range.
    """
    cls = ATTACK_PARAMS.get(name)
    check_unknown(cls, name, params)
    return cls(**params)


__all__ = [
    "ATTACK_PARAMS", "INITS", "LAYER_WEIGHTINGS", "AnalyticLinearParams", "AttackParameterError", "AttackParams",
    "DLGParams", "GradInversionParams", "IDLGParams", "InvertingGradientsParams", "allowed_parameters",
    "check_attack_params", "check_unknown", "describe", "hyper", "validate",
]
