"""Deep Leakage from Gradients (Zhu et al. 2019) and iDLG (Zhao et al. 2020).

DLG minimises the squared L2 distance between the candidate's gradient and the observed
one with L-BFGS (step 1, torch's defaults), optimising the labels jointly as soft labels
(softmax of free logits); iDLG first reads the label from the last layer's gradient and
optimises only the image. Restarts, and the captured updates of any clients and rounds, run as one batch (`optimize.lbfgs_batched`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from attacks.base import BatchedAttack, Reconstruction, ServerView
from attacks.functional import num_images
from attacks.matching import MatchingProblem, ObjectiveTerms, initial_images, reconstructions, resolve_many
from attacks.optimize import lbfgs_batched
from attacks.params import DLGPaperParams, DLGParams, IDLGPaperParams, IDLGParams


@dataclass(frozen=True)
class DLG(DLGParams, BatchedAttack):
    """DLG with its paper's settings (`attacks.params.DLGParams`)."""

    def reconstruct_many(
        self,
        views: Sequence[ServerView],
        *,
        generators: Sequence[torch.Generator],
        labels: Sequence[torch.Tensor | None] | None = None,
    ) -> list[Reconstruction]:
        """Every view and restart as one batched L-BFGS (views `batch_groups` puts together)."""
        start = time.perf_counter()
        given = [None] * len(views) if labels is None else list(labels)
        joint = all(y is None for y in given) and self.label_mode == "joint"
        terms = ObjectiveTerms(
            distance=self.distance, layer_weighting=self.layer_weighting, tv=self.tv, soft_labels=joint
        )
        problem = MatchingProblem(views, terms)
        view = problem.view
        n, r = problem.clients, self.restarts
        if joint:
            count = num_images(view)
            y = None
            known: tuple[bool, ...] = (False,) * n
        else:
            y, known = resolve_many(views, given)
            count = y.shape[1]
        shape = problem.image_shape(count)
        numel = math.prod(shape)
        k = view.meta.num_classes
        per_client = []
        for g in generators:  # each client's draws from its own generator: images, then label logits
            x0 = initial_images((r, *shape), init=self.init, generator=g, device=problem.device).flatten(1)
            if joint:
                logits0 = torch.randn((r, count, k), generator=g, device=g.device).to(problem.device)
                x0 = torch.cat([x0, logits0.flatten(1)], dim=1)
            per_client.append(x0)
        flat0 = torch.cat(per_client)
        rows = n * r
        if joint:
            step_joint = problem.batched_value_and_grad(None, compile=self.compile)

            def value_and_grad(flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
                x = flat[:, :numel].reshape(rows, *shape)
                logits = flat[:, numel:].reshape(rows, count, k)
                loss, (gx, gy) = step_joint(x, logits)  # type: ignore[misc]
                return loss, torch.cat([gx.flatten(1), gy.flatten(1)], dim=1)

        else:
            step_fixed = problem.batched_value_and_grad(y, compile=self.compile)

            def value_and_grad(flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
                loss, gx = step_fixed(flat.reshape(rows, *shape))  # type: ignore[misc]
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

        def row_labels(client: int, row: int) -> torch.Tensor:
            if y is not None:
                return y[client]
            return result.best[row, numel:].reshape(count, k).argmax(dim=-1)

        return reconstructions(
            problem,
            lambda row: result.best[row, :numel].reshape(shape),
            row_labels,
            losses=result.best_loss,
            iterations=result.iterations,
            started=start,
            known=known,
        )


@dataclass(frozen=True)
class IDLG(IDLGParams, DLG):
    """iDLG: DLG with the label read from the last layer's gradient (the sign rule), then L-BFGS on the image."""


@dataclass(frozen=True)
class DLGPaper(DLGPaperParams, DLG):
    """DLG with the paper's single restart."""


@dataclass(frozen=True)
class IDLGPaper(IDLGPaperParams, IDLG):
    """iDLG with the paper's single restart."""


__all__ = ["DLG", "DLGPaper", "IDLG", "IDLGPaper"]
