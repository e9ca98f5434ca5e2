"""Attack hyperparameters: declared with their allowed values (`flaudit.fields.spec`), and free of torch.

Each attack's hyperparameters are a frozen dataclass here (`DLGParams`, ...); the attack class
in its own module inherits them and adds the computation. Keeping the declarations torch-free
lets the scenario loader and `flaudit validate` check an attack's parameters at once, with the
same messages as a config built in Python (`dlg.lr: -1 is out of range; allowed: ...`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from flaudit import limits
from flaudit.fields import FieldError, build, check, describe, spec
from flaudit.registry import Registry

P = TypeVar("P")


class AttackParameterError(FieldError):
    """An attack hyperparameter is unknown, of the wrong type or out of range; the message says what is allowed."""


def allowed_parameters(cls: type) -> str:
    """All of an attack class's hyperparameters with their allowed values, one per line (for help texts)."""
    return "\n".join(f"  {f.name}: {describe(cls, f.name)}" for f in dataclasses.fields(cls))


# Per-tensor weights of the gradient distance (`attacks.objectives.layer_weights`).
LAYER_WEIGHTINGS = ("equal", "linear", "exp")
INITS = ("randn", "rand", "zeros")
#: What an attack may need of the model it inverts (`AttackParams.needs`), in words for messages.
MODEL_NEEDS = {
    "first_linear": "a model whose first layer is linear with a bias on the flattened image",
    "batch_norm": "a model with batch normalisation (for its BN-statistics prior)",
}
# Weights and step sizes above this make every candidate non-finite: a typo (1e308), not a setting.
_SANE = 1000.0


@dataclass(frozen=True)
class AttackParams:
    """Base of every attack's hyperparameters: validated when built."""

    name: ClassVar[str]
    #: What the attack needs of the model (keys of `MODEL_NEEDS`), checked with the scenario.
    needs: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        try:
            check(self, owner=self.name)
        except FieldError as err:
            raise _attack_error(err) from None


@dataclass(frozen=True)
class DLGParams(AttackParams):
    """DLG as an audit runs it: its paper's settings (L-BFGS, step 1, 300 iterations, L2 distance,
    joint soft labels) with 4 batched restarts, the best kept by the attacker-observable loss.

    One restart of L-BFGS stalls on some updates (5.5 dB where four restarts reach 58 dB on
    the case measured in the README), and an audit that misses a leak for want of a restart
    overstates the defense. `dlg_paper` is the paper's single restart.
    """

    name: ClassVar[str] = "dlg"

    iterations: int = spec(300, ge=1, limit=limits.ITERATIONS, doc="L-BFGS steps (each up to max_iter inner iterations)")
    lr: float = spec(1.0, gt=0.0, le=_SANE, doc="L-BFGS step size")
    max_iter: int = spec(20, ge=1, limit=limits.MAX_ITER, doc="L-BFGS inner iterations per step (torch's default)")
    history_size: int = spec(100, ge=1, doc="L-BFGS curvature pairs kept")
    restarts: int = spec(
        4, ge=1, le=4096,
        doc="random restarts, run as one batch; the best by loss is kept (the papers use 1: dlg_paper, idlg_paper)",
    )
    label_mode: str = spec("joint", choices=("joint", "recovered"), doc="optimise soft labels or read them analytically")
    distance: str = spec("l2", choices=("l2", "cosine"), doc="gradient distance")
    layer_weighting: str = spec("equal", choices=LAYER_WEIGHTINGS, doc="per-tensor weights of the distance")
    tv: float = spec(0.0, ge=0.0, le=_SANE, doc="total-variation weight (DLG has none)")
    init: str = spec("randn", choices=("randn", "rand"), doc="initial candidates (normalised space)")
    compile: bool = spec(False, doc="torch.compile the batched objective: slow first call, faster iterations")


@dataclass(frozen=True)
class IDLGParams(DLGParams):
    """iDLG: DLG with the label read from the last layer's gradient (the sign rule), then L-BFGS
    on the image; 4 batched restarts as `dlg` (`idlg_paper` is the paper's single restart)."""

    name: ClassVar[str] = "idlg"

    label_mode: str = spec("recovered", choices=("recovered",), doc="iDLG always recovers the labels analytically")


@dataclass(frozen=True)
class DLGPaperParams(DLGParams):
    """DLG exactly as Zhu et al. (2019) ran it: one restart."""

    name: ClassVar[str] = "dlg_paper"

    restarts: int = spec(1, ge=1, le=4096, doc="random restarts (the paper: 1)")


@dataclass(frozen=True)
class IDLGPaperParams(IDLGParams):
    """iDLG exactly as Zhao et al. (2020) ran it: one restart."""

    name: ClassVar[str] = "idlg_paper"

    restarts: int = spec(1, ge=1, le=4096, doc="random restarts (the paper: 1)")


@dataclass(frozen=True)
class InvertingGradientsParams(AttackParams):
    """Inverting Gradients, with breaching 0.1.2's `invertinggradients` defaults."""

    name: ClassVar[str] = "inverting_gradients"

    iterations: int = spec(24_000, ge=1, limit=limits.ITERATIONS, doc="Adam iterations per restart")
    lr: float = spec(0.1, gt=0.0, le=_SANE, doc="Adam step size")
    tv: float = spec(0.2, ge=0.0, le=_SANE, doc="total-variation weight")
    restarts: int = spec(1, ge=1, le=4096, doc="random restarts, run as one batch; the best by loss is kept")
    distance: str = spec("cosine", choices=("cosine", "l2"), doc="gradient distance")
    layer_weighting: str = spec("equal", choices=LAYER_WEIGHTINGS, doc="per-tensor weights of the distance")
    signed: bool = spec(True, doc="step on the sign of the gradient")
    boxed: bool = spec(True, doc="clamp to the valid [0, 1] pixel range (normalised)")
    lr_decay: bool = spec(True, doc="step size / 10 at 3/8, 5/8, 7/8 of the iterations")
    init: str = spec("randn", choices=INITS, doc="initial candidates (normalised space)")
    compile: bool = spec(False, doc="torch.compile the batched objective: slow first call, faster iterations")


@dataclass(frozen=True)
class GradInversionParams(InvertingGradientsParams):
    """Inverting Gradients plus GradInversion's BN-statistics prior (breaching's DeepInversion weights)."""

    name: ClassVar[str] = "gradinversion"
    needs: ClassVar[tuple[str, ...]] = ("batch_norm",)

    bn: float = spec(0.1, gt=0.0, le=_SANE, doc="weight of the BN-statistics prior")
    bn_first_multiplier: float = spec(10.0, ge=0.0, le=_SANE, doc="extra weight of the first BN layer")


@dataclass(frozen=True)
class AnalyticLinearParams(AttackParams):
    """The closed-form attack on a first linear layer with bias: nothing to tune."""

    name: ClassVar[str] = "analytic_linear"
    needs: ClassVar[tuple[str, ...]] = ("first_linear",)

    layer: str = spec("", doc="name of the first nn.Linear ('' finds it)")


#: Every attack's hyperparameters by attack name (the attack classes are in `attacks.registry`).
ATTACK_PARAMS: Registry[type[AttackParams]] = Registry("attack")
for _cls in (
    DLGParams, IDLGParams, DLGPaperParams, IDLGPaperParams, InvertingGradientsParams, GradInversionParams, AnalyticLinearParams
):
    ATTACK_PARAMS.add(_cls.name, _cls)


def check_attack_params(name: str, params: Mapping[str, Any]) -> AttackParams:
    """Validate `params` for attack `name` without building the attack (no torch needed).

    Raises:
        UnknownNameError: no attack of that name (the message lists the known ones).
        AttackParameterError: an unknown parameter, or a value of the wrong type or out of range
            (`name.key: ...; allowed: ...`).
    """
    return build_params(ATTACK_PARAMS.get(name), name, params)


def build_params(cls: type[P], name: str, params: Mapping[str, Any]) -> P:
    """`cls(**params)` for attack `name` (its hyperparameters, or the attack class itself).

    Raises:
        AttackParameterError: as `check_attack_params`.
    """
    try:
        return build(cls, params, owner=name)
    except FieldError as err:
        raise _attack_error(err) from None


def _attack_error(err: FieldError) -> AttackParameterError:
    return err if isinstance(err, AttackParameterError) else AttackParameterError(err.owner, err.key, err.problem, err.others)


__all__ = [
    "ATTACK_PARAMS", "INITS", "LAYER_WEIGHTINGS", "MODEL_NEEDS", "AnalyticLinearParams", "AttackParameterError", "AttackParams",
    "DLGPaperParams", "DLGParams", "GradInversionParams", "IDLGPaperParams", "IDLGParams", "InvertingGradientsParams", "allowed_parameters",
    "build_params", "check_attack_params",
]
