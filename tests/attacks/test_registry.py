import dataclasses

import pytest

from attacks import ATTACKS, AttackParameterError, create_attack
from attacks.registry import attack_parameters
from flaudit.errors import FlauditError, UnknownNameError


def test_known_attacks() -> None:
    assert set(ATTACKS.names()) == {"analytic_linear", "dlg", "idlg", "inverting_gradients", "gradinversion"}


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
    message = str(err.value)
    assert "'inverting_gradients'" in message and "'total_variation'" in message
    assert "tv:" in message and "iterations:" in message
    assert isinstance(err.value, FlauditError)


@pytest.mark.parametrize(
    ("name", "params", "bad"),
    [
        ("dlg", {"lr": -1.0}, "lr"),
        ("dlg", {"iterations": 0}, "iterations"),
        ("dlg", {"iterations": 2.5}, "iterations"),
        ("inverting_gradients", {"tv": "1e-4"}, "tv"),
        ("inverting_gradients", {"distance": "l1"}, "distance"),
        ("inverting_gradients", {"signed": 1}, "signed"),
        ("idlg", {"label_mode": "joint"}, "label_mode"),
        ("gradinversion", {"bn": 0.0}, "bn"),
    ],
)
def test_bad_values_name_parameter_and_range(name: str, params: dict, bad: str) -> None:
    with pytest.raises(AttackParameterError) as err:
        create_attack(name, **params)
    message = str(err.value)
    assert f"'{name}'" in message and f"'{bad}'" in message and "allowed" in message


def test_defaults_and_params_roundtrip() -> None:
    ig = create_attack("inverting_gradients")
    assert ig.params() == attack_parameters("inverting_gradients")
    assert ig.params()["iterations"] == 24_000 and ig.params()["lr"] == 0.1 and ig.params()["tv"] == 0.2
    dlg = create_attack("dlg")
    assert dlg.params()["iterations"] == 300 and dlg.params()["label_mode"] == "joint"
    # int given for a float parameter is accepted and stored as float (YAML writes 1 for 1.0)
    assert create_attack("dlg", lr=1).params()["lr"] == 1.0
    rebuilt = create_attack("gradinversion", **create_attack("gradinversion", tv=0.01).params())
    assert rebuilt.params()["tv"] == 0.01


def test_attacks_are_frozen() -> None:
    attack = create_attack("idlg")
    with pytest.raises(dataclasses.FrozenInstanceError):
        attack.iterations = 3  # type: ignore[misc]
