"""Inverting Gradients (Geiping et al. 2020) and GradInversion's BN prior (Yin et al. 2021).

Inverting Gradients minimises `1 - cos(simulated update, observed update) + tv * TV(x)` with
Adam on the sign of the gradient, a step decay at 3/8, 5/8 and 7/8 of the iterations and a box
constraint to the valid image range, from several random restarts, keeping the best by loss.
For a FedAvg update the client's local steps are unrolled (`meta.local_steps` SGD steps of
`meta.batch_size` at `meta.learning_rate`) and the weight change is matched.
GradInversion adds `bn * sum_l ||mu_l(x) - mu_l|| + ||var_l(x) - var_l||` against the BN
layers' running statistics in the model the server sent. Restarts, and the clients of one
round, run as one batch (`optimize.adam_batched` over vmapped rows).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from attacks.base import BatchedAttack, Reconstruction, ServerView
from attacks.matching import MatchingProblem, ObjectiveTerms, initial_rows, reconstructions, resolve_many
from attacks.optimize import adam_batched
from attacks.params import GradInversionParams, InvertingGradientsParams


@dataclass(frozen=True)
class InvertingGradients(InvertingGradientsParams, BatchedAttack):
    """Inverting Gradients, with breaching 0.1.2's `invertinggradients` defaults.

    Geiping et al. 2020 (and breaching): Adam, step 0.1, signed gradients, step decay,
    box constraint, 24,000 iterations, cosine distance, TV weight 0.2 (breaching's TV
    definition, see `objectives.total_variation`), one restart.
    """

    def terms(self) -> ObjectiveTerms:
        return ObjectiveTerms(distance=self.distance, layer_weighting=self.layer_weighting, tv=self.tv)

    def reconstruct_many(
        self,
        views: Sequence[ServerView],
        *,
        generators: Sequence[torch.Generator],
        labels: Sequence[torch.Tensor | None] | None = None,
    ) -> list[Reconstruction]:
        """Every client and restart as one batched Adam (views `batch_groups` puts together)."""
        start = time.perf_counter()
        problem = MatchingProblem(views, self.terms())
        y, known = resolve_many(views, labels)
        init = initial_rows(
            problem.image_shape(y.shape[1]), restarts=self.restarts, init=self.init, generators=generators,
            device=problem.device,
        )
        return self._run(problem, init, y, known, start)

    def reconstruct_from(self, view: ServerView, init: torch.Tensor, *, labels: torch.Tensor) -> Reconstruction:
        """Run from given starting candidates (R, B, C, H, W) in the normalised space with known labels."""
        start = time.perf_counter()
        problem = MatchingProblem(view, self.terms())
        y, known = resolve_many([view], [labels])
        return self._run(problem, init.to(problem.device), y, known, start)[0]

    def _run(
        self, problem: MatchingProblem, init: torch.Tensor, labels: torch.Tensor, known: Sequence[bool], start: float
    ) -> list[Reconstruction]:
        step = problem.batched_value_and_grad(labels, compile=self.compile)
        result = adam_batched(
            step,  # type: ignore[arg-type]
            init,
            iterations=self.iterations,
            lr=self.lr,
            signed=self.signed,
            lr_decay=self.lr_decay,
            low=problem.low if self.boxed else None,
            high=problem.high if self.boxed else None,
            desc=self.name,
        )
        return reconstructions(
            problem,
            lambda row: result.best[row],
            lambda client, row: labels[client],
            losses=result.best_loss,
            iterations=result.iterations,
            started=start,
            known=known,
        )


@dataclass(frozen=True)
class GradInversion(GradInversionParams, InvertingGradients):
    """Inverting Gradients plus GradInversion's batch-statistics prior (Yin et al. 2021).

    The BN prior's weight 0.1 and first-layer multiplier 10 are breaching's
    `seethroughgradients` / DeepInversion defaults; the rest are Inverting Gradients'.
    Yin et al.'s group-consistency term is not implemented.
    """

    def terms(self) -> ObjectiveTerms:
        return ObjectiveTerms(
            distance=self.distance,
            layer_weighting=self.layer_weighting,
            tv=self.tv,
            bn=self.bn,
            bn_first_multiplier=self.bn_first_multiplier,
        )


__all__ = ["GradInversion", "InvertingGradients"]
