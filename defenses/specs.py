"""Defense names and their parameters' types and ranges, without torch.

Each defense's parameters are a small frozen dataclass declared with `flaudit.fields.spec`
(a field without a default is required), so they are checked by the same rule and message as
every other configuration key. The scenario loader (and `flaudit validate`) checks defenses
against these before any heavy import; `defenses.registry` pairs each name with the function
that applies it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from flaudit.fields import FieldError, build, check, spec
from flaudit.registry import Registry


@dataclass(frozen=True)
class GaussianParams:
    """`gaussian`: N(0, sigma^2) added to every entry."""

    # Above 1000 the defended update is noise alone; near 1e38 float32 noise is inf (a typo, not a setting).
    sigma: float = spec(ge=0.0, le=1000.0, doc="standard deviation of the noise")

    def __post_init__(self) -> None:
        check(self)


@dataclass(frozen=True)
class PruneParams:
    """`prune`: the smallest-magnitude entries of each tensor set to zero."""

    ratio: float = spec(ge=0.0, le=1.0, doc="share of entries zeroed per tensor")

    def __post_init__(self) -> None:
        check(self)


@dataclass(frozen=True)
class ClipNoiseParams:
    """`clip_noise`: clipping to an L2 norm, then Gaussian noise scaled to it (DP-SGD's step)."""

    # Bounded so that noise_multiplier * clip_norm stays far inside float32 (a typo such as 1e308 is refused).
    clip_norm: float = spec(gt=0.0, le=1e6, doc="L2 norm the update is clipped to")
    noise_multiplier: float = spec(ge=0.0, le=1000.0, doc="noise standard deviation over clip_norm")
    delta: float = spec(1e-5, gt=0.0, lt=1.0, doc="delta of the (epsilon, delta) accounting only")

    def __post_init__(self) -> None:
        check(self)


@dataclass(frozen=True)
class DefenseSpec:
    """A defense's parameters (a frozen dataclass of specs), whether it draws random numbers, and what it does."""

    params: type
    random: bool
    doc: str

    def param_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(self.params))


DEFENSE_SPECS: Registry[DefenseSpec] = Registry("defense")
DEFENSE_SPECS.add("gaussian", DefenseSpec(GaussianParams, True, "add N(0, sigma^2) to every entry"))
DEFENSE_SPECS.add("prune", DefenseSpec(PruneParams, False, "zero the ratio share of smallest-magnitude entries per tensor"))
DEFENSE_SPECS.add(
    "clip_noise",
    DefenseSpec(
        ClipNoiseParams,
        True,
        "clip the update to L2 norm clip_norm, add N(0, (noise_multiplier*clip_norm)^2); (epsilon, delta) accounted",
    ),
)


def defense_params(name: str, params: Mapping[str, object]) -> dict[str, float]:
    """A defense's parameters checked, with defaults filled in (keys in the given order, then the defaults).

    Raises:
        FieldError: `name` is not a defense (key `name`), or a parameter is unknown, missing, of the
            wrong type or out of range (key: the parameter).
    """
    if name not in DEFENSE_SPECS:
        raise FieldError("", "name", DEFENSE_SPECS.unknown_message(name))
    built = build(DEFENSE_SPECS.get(name).params, params, owner="")
    values = dataclasses.asdict(built)
    return {**{key: values[key] for key in params}, **values}


def validate_defense(name: str, params: Mapping[str, object], *, where: str) -> dict[str, float]:
    """Check a defense's name and parameters; return the parameters with defaults filled in.

    Raises:
        FieldError: `where.key: problem; allowed: ...` (`where` names the file and key path).
    """
    try:
        return defense_params(name, params)
    except FieldError as err:
        raise err.within(where) from None
