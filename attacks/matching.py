"""The shared machinery of optimisation-based gradient inversion.

`MatchingProblem` turns the `ServerView`s of one round into a per-row objective
`(candidate images, labels, observed update) -> distance(simulated update, observed update) + priors`
and its batched value-and-gradient (`torch.func.vmap` of `grad_and_value`), a row being one
(client, restart) pair, so every client and restart of a round runs in one computation
(`batch_groups` says which views can share one; `reconstruct_in_groups` runs them).
The attacks (DLG, iDLG, Inverting Gradients, GradInversion) differ only in the objective's
terms, the optimiser and the label handling.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.func import grad_and_value, vmap

from attacks.base import Attack, Reconstruction, ServerView
from attacks.functional import (
    ClientModel,
    model_device,
    normalization,
    num_images,
    observed_target,
    running_statistics,
    to_unit_range,
)
from attacks.labels import recover_labels
from attacks.objectives import (
    bn_statistics_loss,
    element_weights,
    flat_cosine_distance,
    flat_l2_distance,
    flatten_gradients,
    layer_weights,
    total_variation,
)
from flaudit.errors import FlauditError


@dataclass(frozen=True)
class ObjectiveTerms:
    """The terms of a matching objective.

    Args:
        distance: `l2` (DLG) or `cosine` (Inverting Gradients).
        layer_weighting: `equal`, `linear` or `exp` per-tensor weights of the distance.
        tv: total-variation weight.
        bn: BN-statistics prior weight (GradInversion); 0 disables.
        bn_first_multiplier: extra weight of the first BN layer.
        soft_labels: labels are per-image logits optimised jointly (DLG); softmax is applied.
    """

    distance: str = "cosine"
    layer_weighting: str = "equal"
    tv: float = 0.0
    bn: float = 0.0
    bn_first_multiplier: float = 10.0
    soft_labels: bool = False


def batch_groups(views: Sequence[ServerView]) -> list[list[int]]:
    """Indices of `views` grouped so that each group can be inverted as one batched computation.

    Views batch together when they share the model's architecture (the same parameter and
    buffer names and shapes), the protocol's metadata and the image count: then one functional
    model serves them all, and only the observed update, the labels and, for views of different
    rounds, the global weights differ per row.
    """
    groups: list[list[int]] = []
    for index, view in enumerate(views):
        for group in groups:
            if _compatible(views[group[0]], view):
                group.append(index)
                break
        else:
            groups.append([index])
    return groups


def reconstruct_in_groups(
    attack: Attack,
    views: Sequence[ServerView],
    *,
    generators: Sequence[torch.Generator],
    labels: Sequence[torch.Tensor | None] | None = None,
    max_views: int | None = None,
) -> Iterator[tuple[list[int], list[Reconstruction]]]:
    """Invert `views` group by group (`batch_groups`, at most `max_views` per group).

    Yields (indices into `views`, their reconstructions) as each batched computation finishes,
    so callers can write results as they come.
    """
    given = [None] * len(views) if labels is None else list(labels)
    for group in batch_groups(views):
        step = max_views or len(group)
        for at in range(0, len(group), step):
            chunk = group[at : at + step]
            yield chunk, attack.reconstruct_many(
                [views[i] for i in chunk], generators=[generators[i] for i in chunk], labels=[given[i] for i in chunk]
            )


def _signature(view: ServerView) -> tuple[object, ...]:
    meta = dataclasses.replace(view.meta, num_examples=0)
    state = tuple((k, tuple(v.shape), v.dtype) for k, v in view.model.state_dict().items())
    return (meta, num_images(view), tuple(view.update), type(view.model), state)


def _compatible(a: ServerView, b: ServerView) -> bool:
    return _signature(a) == _signature(b)


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return all(torch.equal(sa[k], sb[k].to(sa[k].device)) for k in sa)


class MatchingProblem:
    """The objective of several views, in functional form, batched over views and restarts.

    Candidates are rows: view-major, `restarts` rows per view, so `x[i * R + r]` is view i's
    restart r. Each view's rows match that view's observed update. Views of one round share the
    global weights; views of different rounds bring their own, which the rows then carry
    (`torch.func.functional_call` with per-row parameters), so a long run's captured updates
    are inverted together however many rounds they span.

    Args:
        views: one view, or several that `batch_groups` puts in one group.
        terms: the objective's terms.
    """

    def __init__(self, views: ServerView | Sequence[ServerView], terms: ObjectiveTerms) -> None:
        views = (views,) if isinstance(views, ServerView) else tuple(views)
        if not views:
            raise FlauditError("nothing to invert: no views given")
        if len(batch_groups(views)) != 1:
            raise FlauditError(
                "these views cannot be inverted together: they need the same model architecture, "
                "the same protocol metadata and the same image count (group them with attacks.matching.batch_groups)"
            )
        view = views[0]
        self.views = views
        self.view = view
        self.terms = terms
        self.device = model_device(view.model)
        names, target = observed_target(view)
        self.client = ClientModel(view.model, names)
        if terms.bn > 0 and not self.client.running_stats:
            raise FlauditError(
                "the BN-statistics prior needs a model with BatchNorm running statistics; "
                "use inverting_gradients for models without BatchNorm"
            )
        # Flattened once: the distance is then a handful of ops per evaluation, not a few per tensor.
        self.flat_targets = torch.stack(
            [flatten_gradients(target)] + [flatten_gradients(observed_target(v)[1]) for v in views[1:]]
        )
        # Views of other rounds: their global weights (and BN running statistics) stacked per view.
        self.shared_weights = all(_same_weights(view.model, v.model) for v in views[1:])
        self.view_params: dict[str, torch.Tensor] | None = None
        self.view_running: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        if not self.shared_weights:
            own = [dict(v.model.named_parameters()) for v in views]
            self.view_params = {name: torch.stack([p[name].detach().to(self.device) for p in own]) for name in self.client.params}
            stats = [running_statistics(v.model) for v in views]
            self.view_running = [
                (torch.stack([s[i][0] for s in stats]).to(self.device), torch.stack([s[i][1] for s in stats]).to(self.device))
                for i in range(len(stats[0]))
            ]
        self.flat_weights = (
            None
            if terms.layer_weighting == "equal"
            else element_weights(target, layer_weights(len(target), scheme=terms.layer_weighting))
        )
        mean, std = normalization(view)
        # The box: the normalised images of [0, 1] pixels.
        self.low = (0.0 - mean) / std
        self.high = (1.0 - mean) / std

    @property
    def clients(self) -> int:
        return len(self.views)

    def image_shape(self, count: int) -> tuple[int, ...]:
        return (count, *self.view.meta.input_shape)

    def objective(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        target: torch.Tensor | None = None,
        params: dict[str, torch.Tensor] | None = None,
        running: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
        *,
        autograd: bool = False,
    ) -> torch.Tensor:
        """The loss of one candidate batch (B, C, H, W) with labels (B,) or label logits (B, K).

        `target` is the flat observed update to match (default: the only view's); `params` and
        `running` the global weights and BN running statistics of the candidate's view (default:
        the first view's). `autograd=True` builds the client's gradient with plain autograd (for
        one restart outside any torch.func transform); the value is the same.
        """
        if target is None:
            if self.clients != 1:
                raise FlauditError("objective of a several-client problem needs the client's target")
            target = self.flat_targets[0]
        meta = self.view.meta
        if self.terms.soft_labels:
            labels = torch.softmax(labels, dim=-1)
        if meta.protocol == "fedsgd":
            simulated, stats = self.client.gradient(images, labels, params=params, autograd=autograd)
        else:
            simulated, stats = self.client.fedavg_delta(
                images,
                labels,
                local_steps=meta.local_steps,
                learning_rate=meta.learning_rate,
                batch_size=meta.batch_size,
                params=params,
                autograd=autograd,
            )
        return self._loss(images, flatten_gradients(simulated), target, stats, running)

    def row_objective(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        targets: torch.Tensor,
        params: dict[str, torch.Tensor],
        running: list[tuple[torch.Tensor, torch.Tensor]] | None,
    ) -> torch.Tensor:
        """`objective` of R rows at once without vmap (`attacks.rows`): images (R, B, C, H, W),
        labels (R, B) or logits (R, B, K), targets (R, N), per-row `params` (R, ...) -> (R,)."""
        meta = self.view.meta
        if self.terms.soft_labels:
            labels = torch.softmax(labels, dim=-1)
        if meta.protocol == "fedsgd":
            simulated, stats = self.client.row_gradients(images, labels, params)
        else:
            simulated, stats = self.client.row_fedavg_deltas(
                images, labels, params,
                local_steps=meta.local_steps, learning_rate=meta.learning_rate, batch_size=meta.batch_size,
            )
        flat = torch.cat([g.reshape(g.shape[0], -1) for g in simulated], dim=1)
        return self._loss(images, flat, targets, stats, running)

    def _loss(
        self,
        images: torch.Tensor,
        flat: torch.Tensor,
        target: torch.Tensor,
        stats: list[tuple[torch.Tensor, torch.Tensor]],
        running: list[tuple[torch.Tensor, torch.Tensor]] | None,
    ) -> torch.Tensor:
        # The terms reduce over their last dims, so one candidate gives a scalar and R rows (R,).
        if self.terms.distance == "l2":
            loss = flat_l2_distance(flat, target, weights=self.flat_weights)
        else:
            loss = flat_cosine_distance(flat, target, weights=self.flat_weights)
        if self.terms.tv > 0:
            loss = loss + self.terms.tv * total_variation(images)
        if self.terms.bn > 0:
            loss = loss + self.terms.bn * bn_statistics_loss(
                stats, self.client.running_stats if running is None else running,
                first_multiplier=self.terms.bn_first_multiplier,
            )
        return loss

    def batched_value_and_grad(
        self, labels: torch.Tensor | None, *, compile: bool = False
    ) -> Callable[..., tuple[torch.Tensor, torch.Tensor | tuple[torch.Tensor, torch.Tensor]]]:
        """vmap over clients and restarts of grad_and_value of the objective.

        With fixed `labels` ((B,) for one client, (N, B) for N): x (N*R, B, C, H, W) ->
        (loss (N*R,), grad (N*R, B, C, H, W)). With `labels=None` (joint labels):
        (x, label_logits (N*R, B, K)) -> (loss, (grad_x, grad_labels)).

        `compile=True` runs the vmapped function through `torch.compile` (see `compiled`):
        a one-time compilation, then fewer, fused kernels per iteration.
        """
        n = self.clients
        targets = self.flat_targets
        joint = labels is None
        if not joint:
            labels = labels.reshape(n, -1)  # type: ignore[union-attr]
        per_row = grad_and_value(self.objective, argnums=(0, 1) if joint else 0)
        # One client: its restarts share labels and target. Several: one flat vmap over all rows
        # with per-row targets (a nested vmap, clients over restarts, measured 2x slower on CPU).
        over_restarts = vmap(per_row, in_dims=(0, 0 if joint else None, None))
        # Views of other rounds: each row also carries its view's weights and running statistics.
        over_rows = vmap(per_row, in_dims=(0, 0, 0) if self.shared_weights else (0, 0, 0, 0, 0))
        if compile:
            over_restarts, over_rows = compiled(over_restarts), compiled(over_rows)
        expanded: dict[int, tuple[Any, ...]] = {}

        def rows_of(per: int) -> tuple[Any, ...]:
            if per not in expanded:
                spread = (
                    targets.repeat_interleave(per, dim=0),
                    None if joint else labels.repeat_interleave(per, dim=0),  # type: ignore[union-attr]
                )
                if not self.shared_weights:
                    params = {k: v.repeat_interleave(per, dim=0) for k, v in self.view_params.items()}  # type: ignore[union-attr]
                    running = [(m.repeat_interleave(per, dim=0), v.repeat_interleave(per, dim=0)) for m, v in self.view_running]  # type: ignore[union-attr]
                    spread = (*spread, params, running)
                expanded[per] = spread
            return expanded[per]

        def single_row(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, object]:
            # One row: vmap is pure overhead, plain autograd is leaner.
            xi = x[0].detach().requires_grad_(True)
            yi = y[0].detach().requires_grad_(True) if joint else y[0]
            value = self.objective(xi, yi, targets[0], autograd=True)
            if joint:
                gx, gy = torch.autograd.grad(value, [xi, yi])
                return value.detach().unsqueeze(0), (gx.unsqueeze(0), gy.unsqueeze(0))
            (gx,) = torch.autograd.grad(value, [xi])
            return value.detach().unsqueeze(0), gx.unsqueeze(0)

        leaves: dict[str, torch.Tensor] = {}

        def row_weights(rows: int) -> tuple[dict[str, torch.Tensor], list[tuple[torch.Tensor, torch.Tensor]] | None]:
            # Each row's weights as a slice of one tensor in the graph: the gradient with respect to
            # it is every row's own. Shared weights are expanded (no copy); other rounds' repeated.
            if not leaves:
                source = self.client.params if self.shared_weights else self.view_params
                leaves.update({k: v.detach().requires_grad_(k in self.client.names) for k, v in source.items()})  # type: ignore[union-attr]
            if self.shared_weights:
                return {k: v.expand(rows, *v.shape) for k, v in leaves.items()}, None
            per = rows // n
            running = [(m.repeat_interleave(per, dim=0), v.repeat_interleave(per, dim=0)) for m, v in self.view_running]  # type: ignore[union-attr]
            return {k: v.repeat_interleave(per, dim=0) for k, v in leaves.items()}, running

        def many_rows(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, object]:
            row_targets, row_labels = rows_of(x.shape[0] // n)[:2]
            xi = x.detach().requires_grad_(True)
            yi = y.detach().requires_grad_(True) if joint else row_labels
            params, running = row_weights(x.shape[0])
            value = self.row_objective(xi, yi, row_targets, params, running)
            if joint:
                gx, gy = torch.autograd.grad(value.sum(), [xi, yi])
                return value.detach(), (gx, gy)
            (gx,) = torch.autograd.grad(value.sum(), [xi])
            return value.detach(), gx

        def step(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, object]:
            rows = x.shape[0]
            if rows % n:
                raise ValueError(f"{rows} candidate rows do not split over {n} clients")
            if rows == 1 and not compile:
                return single_row(x, y)
            if self.client.rows is not None and not compile:
                return many_rows(x, y)
            if n == 1:
                return _swap(over_restarts(x, y if joint else y[0], targets[0]))
            row_targets, row_labels, *weights = rows_of(rows // n)
            return _swap(over_rows(x, y if joint else row_labels, row_targets, *weights))

        if joint:
            return step
        fixed = labels

        def step_fixed(x: torch.Tensor) -> tuple[torch.Tensor, object]:
            return step(x, fixed)  # type: ignore[arg-type]

        return step_fixed


def compiled(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`torch.compile(fn)`, falling back to `fn` (with a warning) if compilation fails.

    Compilation needs a C++ compiler on CPU (Triton on CUDA) and takes tens of seconds on the
    first call; it pays off on long runs (thousands of iterations), where the fused kernels
    cut the per-iteration dispatch overhead that dominates small models.
    """
    state: dict[str, Callable[..., Any]] = {}

    def call(*args: Any) -> Any:
        if "fn" not in state:
            candidate = torch.compile(fn, dynamic=False)
            try:
                result = candidate(*args)
            except Exception as err:  # noqa: BLE001 - any backend failure: the eager path is exact
                warnings.warn(f"torch.compile failed ({type(err).__name__}: {err}); running eagerly", stacklevel=2)
                state["fn"] = fn
                return fn(*args)
            state["fn"] = candidate
            return result
        return state["fn"](*args)

    return call


def best_rows(losses: torch.Tensor, clients: int) -> list[int]:
    """Per client, the row of its lowest-loss restart (rows client-major)."""
    per_client = losses.reshape(clients, -1)
    offsets = torch.arange(clients, device=losses.device) * per_client.shape[1]
    return (per_client.argmin(dim=1) + offsets).tolist()


def _swap(pair: tuple[object, torch.Tensor]) -> tuple[torch.Tensor, object]:
    grads, value = pair
    return value, grads  # type: ignore[return-value]


def initial_images(
    shape: tuple[int, ...], *, init: str, generator: torch.Generator, device: torch.device
) -> torch.Tensor:
    """Starting candidates in the normalised space, drawn from `generator` (deterministic under its seed)."""
    gen_device = generator.device
    if init == "randn":
        x = torch.randn(shape, generator=generator, device=gen_device)
    elif init == "rand":
        # Uniform on [-1, 1]: the spread of normalised natural images.
        x = torch.rand(shape, generator=generator, device=gen_device) * 2 - 1
    elif init == "zeros":
        x = torch.zeros(shape, device=gen_device)
    else:
        raise ValueError(f"unknown init {init!r}")
    return x.to(device)


def resolve_labels(view: ServerView, labels: torch.Tensor | None) -> tuple[torch.Tensor, bool]:
    """(labels, labels_known): given labels are the explicit known-labels threat model."""
    device = model_device(view.model)
    if labels is not None:
        return torch.as_tensor(labels, dtype=torch.long).reshape(-1).to(device), True
    return recover_labels(view, num_images(view)), False


def resolve_many(
    views: Sequence[ServerView], labels: Sequence[torch.Tensor | None] | None
) -> tuple[torch.Tensor, tuple[bool, ...]]:
    """Per-view labels stacked (N, B), and whether each was given (known) or recovered."""
    given = [None] * len(views) if labels is None else list(labels)
    if len(given) != len(views):
        raise ValueError(f"{len(views)} views need {len(views)} label entries, got {len(given)}")
    resolved = [resolve_labels(view, known) for view, known in zip(views, given, strict=True)]
    counts = {len(y) for y, _ in resolved}
    if len(counts) != 1:
        raise FlauditError(f"views batched together need the same image count; their labels count {sorted(counts)}")
    return torch.stack([y for y, _ in resolved]), tuple(known for _, known in resolved)


def initial_rows(
    shape: tuple[int, ...],
    *,
    restarts: int,
    init: str,
    generators: Sequence[torch.Generator],
    device: torch.device,
) -> torch.Tensor:
    """(N * R, *shape) starting candidates, client-major, client i's drawn from `generators[i]`."""
    return torch.cat(
        [initial_images((restarts, *shape), init=init, generator=g, device=device) for g in generators]
    )


def reconstruction(
    view: ServerView,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    restart_losses: torch.Tensor,
    iterations: int,
    started: float,
    labels_known: bool,
) -> Reconstruction:
    """The Reconstruction of the best restart: normalised candidates back to [0, 1], on the CPU."""
    return Reconstruction(
        images=to_unit_range(view, images).detach().cpu(),
        labels=labels.detach().cpu(),
        restart_losses=tuple(float(v) for v in restart_losses.tolist()),
        wall_time_s=time.perf_counter() - started,
        iterations=iterations,
        labels_known=labels_known,
    )


def reconstructions(
    problem: MatchingProblem,
    images: Callable[[int], torch.Tensor],
    labels: Callable[[int, int], torch.Tensor],
    *,
    losses: torch.Tensor,
    iterations: int,
    started: float,
    known: Sequence[bool],
) -> list[Reconstruction]:
    """One Reconstruction per client from its best restart.

    Args:
        problem: the batched problem (its views, in row order).
        images: row -> the row's normalised images (B, C, H, W).
        labels: (client, row) -> the client's labels (B,) for that row.
        losses: (N * R,) the best loss of each row.
    """
    rows = best_rows(losses, problem.clients)
    per_client = losses.reshape(problem.clients, -1)
    return [
        reconstruction(
            view, images(row), labels(i, row), restart_losses=per_client[i], iterations=iterations,
            started=started, labels_known=known[i],
        )
        for i, (view, row) in enumerate(zip(problem.views, rows, strict=True))
    ]


__all__ = [
    "MatchingProblem",
    "ObjectiveTerms",
    "batch_groups",
    "best_rows",
    "initial_images",
    "initial_rows",
    "reconstruct_in_groups",
    "reconstruction",
    "reconstructions",
    "recover_labels",
    "resolve_labels",
    "resolve_many",
]
