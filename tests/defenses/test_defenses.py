"""Defenses and the privacy accountant against hand-computed values."""

from __future__ import annotations

import ast
import math

import numpy as np
import pytest
import torch

from defenses import DEFENSES, apply_defenses, clip_noise, gaussian, gaussian_epsilon, global_norm, prune, validate_defense
from defenses.accounting import ORDERS
from flaudit.errors import ScenarioError
from tests.conftest import REPO


def test_prune_keeps_exactly_the_largest_magnitude_share_per_tensor():
    a = torch.tensor([0.5, -3.0, 0.1, 2.0, -0.2, 4.0, 0.0, -1.0, 0.3, 0.05])
    b = torch.tensor([[1.0, -2.0], [3.0, -4.0]])
    pa, pb = prune((a, b), ratio=0.7)
    # 10 entries, 70% pruned: the 3 largest magnitudes (4, -3, 2) survive with their values.
    assert torch.equal(pa, torch.tensor([0, -3.0, 0, 2.0, 0, 4.0, 0, 0, 0, 0]))
    # 4 entries: floor(0.7*4) = 2 zeroed, the two largest (3, -4) kept.
    assert torch.equal(pb, torch.tensor([[0.0, 0.0], [3.0, -4.0]]))
    big = torch.randn(1000)
    kept = prune((big,), ratio=0.9)[0]
    assert int((kept != 0).sum()) == 100
    assert float(kept.abs()[kept != 0].min()) >= float(big.abs().topk(100).values.min())


def test_prune_edges_and_input_untouched():
    x = torch.randn(50)
    original = x.clone()
    assert torch.equal(prune((x,), ratio=0.0)[0], x)
    assert int((prune((x,), ratio=1.0)[0] != 0).sum()) == 0
    assert torch.equal(x, original)
    with pytest.raises(ValueError):
        prune((x,), ratio=1.5)


def test_gaussian_empirical_std_within_5_percent():
    generator = torch.Generator().manual_seed(0)
    for sigma in (1e-3, 1e-1, 2.0):
        noise = gaussian((torch.zeros(100_000),), sigma=sigma, generator=generator)[0]
        assert abs(float(noise.std()) / sigma - 1) < 0.05
        assert abs(float(noise.mean())) < 5 * sigma / math.sqrt(100_000)


def test_gaussian_is_reproducible_under_a_seed():
    x = (torch.zeros(10),)
    a = gaussian(x, sigma=1.0, generator=torch.Generator().manual_seed(3))[0]
    b = gaussian(x, sigma=1.0, generator=torch.Generator().manual_seed(3))[0]
    assert torch.equal(a, b)


def test_clip_noise_bounds_the_norm_before_noise():
    generator = torch.Generator().manual_seed(0)
    update = (torch.full((30,), 2.0), torch.full((2, 5), -1.0))  # norm sqrt(120 + 10)
    clipped = clip_noise(update, clip_norm=1.5, noise_multiplier=0.0, generator=generator)
    assert float(global_norm(clipped)) == pytest.approx(1.5, rel=1e-6)
    # Direction is kept: clipping is a scaling of the whole update.
    scale = 1.5 / math.sqrt(130.0)
    assert torch.allclose(clipped[0], update[0] * scale) and torch.allclose(clipped[1], update[1] * scale)
    small = (torch.full((4,), 0.1),)
    assert torch.allclose(clip_noise(small, clip_norm=1.5, noise_multiplier=0.0, generator=generator)[0], small[0])
    # With noise z*C the result's deviation from the clipped update has std z*C.
    noisy = clip_noise((torch.zeros(100_000),), clip_norm=2.0, noise_multiplier=0.5, generator=generator)[0]
    assert abs(float(noisy.std()) / 1.0 - 1) < 0.05


# Opacus' default Renyi orders (RDPAccountant.DEFAULT_ALPHAS), written out: 1.1, 1.2, ..., 10.9, then 12, ..., 63.
HAND_ORDERS = np.array([1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)), dtype=np.float64)


def hand_epsilon(z: float, steps: int, delta: float, orders: np.ndarray = HAND_ORDERS) -> tuple[float, float]:
    """(epsilon, best order) of `steps` releases of the Gaussian mechanism, sampling rate 1, by hand.

    RDP of one release at order a is a / (2 z^2) (Mironov 2017, Prop. 7); composition adds it up.
    (eps, delta) by the conversion of Balle et al. 2020 (Thm. 21), the one Opacus' get_privacy_spent uses:
    eps(a) = rdp(a) - (log(delta) + log(a)) / (a - 1) + log((a - 1) / a), minimised over the orders.
    """
    rdp = steps * orders / (2 * z**2)
    eps = rdp - (np.log(delta) + np.log(orders)) / (orders - 1) + np.log((orders - 1) / orders)
    best = int(np.argmin(eps))
    return float(eps[best]), float(orders[best])


def test_accountant_uses_opacus_default_orders():
    assert np.array_equal(np.asarray(ORDERS, dtype=np.float64), HAND_ORDERS)


@pytest.mark.parametrize("z, steps, delta", [(1.0, 1, 1e-5), (1.1, 10, 1e-5), (0.7, 50, 1e-6), (2.0, 100, 1e-5)])
def test_epsilon_equals_hand_computed_rdp_conversion(z, steps, delta):
    # Compared: gaussian_epsilon (which takes no orders argument) against the hand formula over the
    # same order grid, Opacus' defaults written out above.
    expected, order = hand_epsilon(z, steps, delta)
    got = gaussian_epsilon(noise_multiplier=z, steps=steps, delta=delta)
    assert got.epsilon == pytest.approx(expected, rel=1e-12)
    assert got.best_order == order and got.delta == delta and got.steps == steps


def test_epsilon_known_value_and_composition():
    # z = 1, one release, delta = 1e-5: on the grid the best order is 5.4, where
    # eps = 5.4/2 + log(4.4/5.4) - (log(1e-5) + log(5.4))/4.4 = 2.7 - 0.20479 + 2.23330 = 4.72851.
    one = gaussian_epsilon(noise_multiplier=1.0, steps=1, delta=1e-5)
    assert one.epsilon == pytest.approx(4.72851, abs=1e-5) and one.best_order == 5.4
    # The continuous optimum over all orders (a ~ 5.432) is only just below the grid's: 4.72839.
    fine = np.linspace(1.01, 63, 620_000)
    assert hand_epsilon(1.0, 1, 1e-5, fine)[0] == pytest.approx(4.728387, abs=2e-6)
    assert 4.72838 < one.epsilon < 4.72852
    # Tighter than the classic conversion eps = min_a rdp(a) + log(1/delta)/(a-1) = c + 2 sqrt(c log(1/delta)), c = 1/2.
    classic = 0.5 + 2 * math.sqrt(0.5 * math.log(1e5))
    assert classic == pytest.approx(5.29853, abs=1e-5) and one.epsilon < classic - 0.5
    # RDP depends on steps / z^2 only: 4 releases at z = 2 cost what 1 release at z = 1 does.
    assert gaussian_epsilon(noise_multiplier=2.0, steps=4, delta=1e-5).epsilon == pytest.approx(one.epsilon, rel=1e-12)
    assert gaussian_epsilon(noise_multiplier=1.0, steps=10, delta=1e-5).epsilon > one.epsilon
    assert math.isinf(gaussian_epsilon(noise_multiplier=0.0, steps=1, delta=1e-5).epsilon)
    with pytest.raises(ValueError, match="delta"):
        gaussian_epsilon(noise_multiplier=1.0, steps=1, delta=0.0)


def test_registry_validates_parameters():
    assert set(DEFENSES.names()) == {"gaussian", "prune", "clip_noise"}
    assert validate_defense("clip_noise", {"clip_norm": 1, "noise_multiplier": 1.1}, where="f.yaml: defenses[0]")["delta"] == 1e-5
    with pytest.raises(ScenarioError, match=r"defenses\[0\]\.ratio: 1\.5 is out of range; allowed: float in \[0, 1\] - share of entries zeroed per tensor$"):
        validate_defense("prune", {"ratio": 1.5}, where="f.yaml: defenses[0]")
    with pytest.raises(ScenarioError, match=r"f\.yaml: defenses\[0\]\.sigm: unknown key \(did you mean 'sigma'\?\); allowed here: sigma$"):
        validate_defense("gaussian", {"sigm": 0.1}, where="f.yaml: defenses[0]")
    with pytest.raises(ScenarioError, match="known: clip_noise, gaussian, prune"):
        validate_defense("dropout", {}, where="f.yaml: defenses[0]")
    with pytest.raises(ScenarioError, match=r"defenses\[0\]\.sigma: required key is missing; allowed: float in \[0, 1000\]"):
        validate_defense("gaussian", {}, where="f.yaml: defenses[0]")


def test_apply_defenses_runs_in_order():
    x = (torch.tensor([1.0, -5.0, 0.5, 3.0]),)
    out = apply_defenses(x, [("prune", {"ratio": 0.5}), ("gaussian", {"sigma": 0.0})], generator=torch.Generator())
    assert torch.equal(out[0], torch.tensor([0.0, -5.0, 0.0, 3.0]))


def test_defenses_import_no_federated_learning_framework():
    # The defenses are pure functions on tensors; Flower's mod that applies them lives in fl_sim.mods.
    imported = set()
    for path in sorted((REPO / "defenses").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported |= {(alias.name.split(".")[0], path.name) for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add((node.module.split(".")[0], path.name))
    assert "torch" in {name for name, _ in imported}
    assert [(name, where) for name, where in sorted(imported) if name == "flwr"] == []
