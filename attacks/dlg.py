"""Deep Leakage from Gradients (Zhu et al. 2019) and iDLG (Zhao et al. 2020).

DLG minimises the squared L2 distance between the candidate's gradient and the observed
one with L-BFGS (step 1, torch's defaults), optimising the labels jointly as soft labels
(softmax of free logits); iDLG first reads the label from the last layer's gradient and
optimises only the image. Restarts run as one batch (`optimize.lbfgs_batched`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import ClassVar

import torch

from attacks.base import Attack, Reconstruction, ServerView
from attacks.functional import model_device, num_images
from attacks.matching import MatchingProblem, ObjectiveTerms, initial_images, reconstruction, resolve_labels
from attacks.objectives import LAYER_WEIGHTINGS
from attacks.optimize import lbfgs_batched
from attacks.params import hyper, validate


@dataclass(frozen=True)
class DLG(Attack):
    """DLG with its paper's settings: L-BFGS, step 1, 300 iterations, L2 distance, joint soft labels."""

    name: ClassVar[str] = "dlg"

    iterations: int = hyper(300, low=1, doc="L-BFGS steps (each up to max_iter inner iterations)")
    lr: float = hyper(1.0, low=0.0, low_open=True, doc="L-BFGS step size")
    max_iter: int = hyper(20, low=1, doc="L-BFGS inner iterations per step (torch's default)")
    history_size: int = hyper(100, low=1, doc="L-BFGS curvature pairs kept")
    restarts: int = hyper(1, low=1, high=4096, doc="random restarts, run as one batch; the best by loss is kept")
    label_mode: str = hyper("joint", choices=("joint", "recovered"), doc="optimise soft labels or read them analytically")
    distance: str = hyper("l2", choices=("l2", "cosine"), doc="gradient distance")
    layer_weighting: str = hyper("equal", choices=LAYER_WEIGHTINGS, doc="per-tensor weights of the distance")
    tv: float = hyper(0.0, low=0.0, doc="total-variation weight (DLG has none)")
    init: str = hyper("randn", choices=("randn", "rand"), doc="initial candidates (normalised space)")

    def __post_init__(self) -> None:
        validate(self, self.name)

    def reconstruct(
        self,
        view: ServerView,
        *,
        generator: torch.Generator,
        labels: torch.Tensor | None = None,
    ) -> Reconstruction:
        """Reconstruct the client's batch; `labels` is the explicit known-labels threat model."""
        start = time.perf_counter()
        joint = labels is None and self.label_mode == "joint"
        terms = ObjectiveTerms(
            distance=self.distance, layer_weighting=self.layer_weighting, tv=self.tv, soft_labels=joint
        )
        problem = MatchingProblem(view, terms)
        device = model_device(view.model)
        if joint:
            count = num_images(view)
            y = None
            known = False
        else:
            y, known = resolve_labels(view, labels)
            count = len(y)
        shape = problem.image_shape(count)
        x0 = initial_images((self.restarts, *shape), init=self.init, generator=generator, device=device)
        numel = x0[0].numel()
        if joint:
            k = view.meta.num_classes
            logits0 = torch.randn((self.restarts, count, k), generator=generator, device=generator.device).to(device)
            flat0 = torch.cat([x0.flatten(1), logits0.flatten(1)], dim=1)
            step_joint = problem.batched_value_and_grad(None)

            def value_and_grad(flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
                x = flat[:, :numel].reshape(self.restarts, *shape)
                logits = flat[:, numel:].reshape(self.restarts, count, k)
                loss, (gx, gy) = step_joint(x, logits)  # type: ignore[misc]
                return loss, torch.cat([gx.flatten(1), gy.flatten(1)], dim=1)

        else:
            flat0 = x0.flatten(1)
            step_fixed = problem.batched_value_and_grad(y)

            def value_and_grad(flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
                loss, gx = step_fixed(flat.reshape(self.restarts, *shape))  # type: ignore[misc]
                return loss, gx.flatten(1)  # type: ignore[union-attr]

        result = lbfgs_batched(
            value_and_grad,
            flat0,
            steps=self.iterations,
            lr=self.lr,
            max_iter=self.max_iter,
            history_size=self.history_size,
            desc=self.name,
        )
        best = int(torch.argmin(result.best_loss))
        images = result.best[best, :numel].reshape(shape)
        if joint:
            y = result.best[best, numel:].reshape(count, view.meta.num_classes).argmax(dim=-1)
        assert y is not None
        return reconstruction(
            view, images, y, restart_losses=result.best_loss, iterations=result.iterations, started=start, labels_known=known,
        )


@dataclass(frozen=True)
class IDLG(DLG):
    """iDLG: DLG with the label read from the last layer's gradient (the sign rule), then L-BFGS on the image."""

    name: ClassVar[str] = "idlg"

    label_mode: str = hyper("recovered", choices=("recovered",), doc="iDLG always recovers the labels analytically")


__all__ = ["DLG", "IDLG"]
