import dataclasses

import pytest

from attacks import ATTACKS, AttackParameterError, create_attack
from attacks.registry import attack_parameters
from flaudit.errors import FlauditError, UnknownNameError


def test_known_attacks() -> None:
    assert set(ATTACKS.names()) == {
        "analytic_linear", "dlg", "idlg", "dlg_paper", "idlg_paper", "inverting_gradients", "gradinversion"
    }


def test_unknown_name_lists_known() -> None:
    with pytest.raises(UnknownNameError) as err:
        create_attack("ig")
    message = str(err.value)
    assert "no attack 'ig'" in message
    for name in ATTACKS.names():
        assert name in message


def test_unknown_parameter_names_attack_and_allowed() -> None:
    with pytest.raises(AttackParameterError) as err:
        create_attack("inverting_gradients", total_variation=0.1)
    assert str(err.value) == (
        "inverting_gradients.total_variation: unknown key; allowed here: iterations, lr, tv, restarts, distance, "
        "layer_weighting, signed, boxed, lr_decay, init, compile"
    )
    assert isinstance(err.value, FlauditError)


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("dlg", {"lr": -1.0}, "dlg.lr: -1.0 is out of range; allowed: float in (0, 1000] (default 1.0) - L-BFGS step size"),
        ("dlg", {"iterations": 0}, "dlg.iterations: 0 is out of range; allowed: int in [1, inf) (default 300)"),
        ("dlg", {"iterations": 2.5}, "dlg.iterations: expected an integer, got 2.5; allowed: int in [1, inf)"),
        ("dlg", {"restarts": 5000}, "dlg.restarts: 5000 is out of range; allowed: int in [1, 4096] (default 4)"),
        ("inverting_gradients", {"tv": "1e-4"}, "inverting_gradients.tv: expected a number, got '1e-4'; allowed: float in [0, 1000]"),
        ("inverting_gradients", {"distance": "l1"},
         "inverting_gradients.distance: 'l1' is not allowed (did you mean 'l2'?); allowed: one of 'cosine', 'l2' (default 'cosine')"),
        ("inverting_gradients", {"signed": 1}, "inverting_gradients.signed: expected true or false, got 1; allowed: true or false (default true)"),
        ("idlg", {"label_mode": "joint"}, "idlg.label_mode: 'joint' is not allowed; allowed: one of 'recovered' (default 'recovered')"),
        ("gradinversion", {"bn": 0.0}, "gradinversion.bn: 0.0 is out of range; allowed: float in (0, 1000] (default 0.1)"),
    ],
)
def test_bad_values_name_parameter_and_range(name: str, params: dict, message: str) -> None:
    with pytest.raises(AttackParameterError) as err:
        create_attack(name, **params)
    assert str(err.value).startswith(message)


def test_defaults_and_params_roundtrip() -> None:
    ig = create_attack("inverting_gradients")
    assert ig.params() == attack_parameters("inverting_gradients")
    assert ig.params()["iterations"] == 24_000 and ig.params()["lr"] == 0.1 and ig.params()["tv"] == 0.2
    dlg = create_attack("dlg")
    # An audit's DLG and iDLG run 4 batched restarts; the papers' single restart is kept by name.
    assert create_attack("dlg").params()["restarts"] == create_attack("idlg").params()["restarts"] == 4
    assert create_attack("dlg_paper").params()["restarts"] == create_attack("idlg_paper").params()["restarts"] == 1
    assert create_attack("idlg_paper").params()["label_mode"] == "recovered"
    assert dlg.params()["iterations"] == 300 and dlg.params()["label_mode"] == "joint"
    # int given for a float parameter is accepted and stored as float (YAML writes 1 for 1.0)
    assert create_attack("dlg", lr=1).params()["lr"] == 1.0
    rebuilt = create_attack("gradinversion", **create_attack("gradinversion", tv=0.01).params())
    assert rebuilt.params()["tv"] == 0.01


def test_attacks_are_frozen() -> None:
    attack = create_attack("idlg")
    with pytest.raises(dataclasses.FrozenInstanceError):
        attack.iterations = 3  # type: ignore[misc]
