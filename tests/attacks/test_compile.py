"""`compile=True`: torch.compile of the batched objective gives the eager results, and falls back when it cannot compile."""

import warnings

import pytest
import torch

from attacks import create_attack
from attacks.simulate import fedsgd_view
from flaudit.models import ModelSpec, build_model

from attack_cases import make_meta, smooth_images


def _view():
    model = build_model(ModelSpec("lenet", 10, 3, 8), seed=0)
    return fedsgd_view(model, smooth_images(1, side=8, seed=1), torch.tensor([3]), make_meta(batch=1, side=8))


def test_compiled_equals_eager() -> None:
    view = _view()
    params = dict(iterations=4, restarts=2, tv=1e-3)
    eager = create_attack("inverting_gradients", **params).reconstruct(view, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compiled = create_attack("inverting_gradients", compile=True, **params).reconstruct(
            view, generator=torch.Generator().manual_seed(0)
        )
    # Had compilation failed, the attack would have run eagerly and the comparison below would prove nothing.
    fallbacks = [str(w.message) for w in caught if "torch.compile failed" in str(w.message)]
    assert fallbacks == [], f"torch.compile did not work on this machine, so nothing was compared: {fallbacks}"
    # Eager rows run through `attacks.rows`, compiled ones through vmap: equal to float rounding.
    assert torch.allclose(eager.images, compiled.images, atol=1e-4)
    for a, b in zip(eager.restart_losses, compiled.restart_losses):
        assert abs(a - b) <= 1e-4


def test_compile_failure_falls_back_to_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(fn, **kwargs):
        def fail(*args):
            raise RuntimeError("no C++ compiler")

        return fail

    monkeypatch.setattr(torch, "compile", broken)
    view = _view()
    eager = create_attack("idlg", iterations=2, max_iter=3, restarts=2).reconstruct(view, generator=torch.Generator().manual_seed(0))
    with pytest.warns(UserWarning, match="torch.compile failed"):
        fallback = create_attack("idlg", iterations=2, max_iter=3, restarts=2, compile=True).reconstruct(
            view, generator=torch.Generator().manual_seed(0)
        )
    # The fallback is the vmapped function run eagerly; the eager attack's rows run through `attacks.rows`.
    assert torch.allclose(eager.images, fallback.images, atol=1e-4)
