"""Triplets from annotations, and SemSim's triplet training.

A triplet is (anchor = an original, positive = one of its recognisable reconstructions,
negative = one of its unrecognisable reconstructions). An original without unrecognisable
reconstructions borrows a reconstruction of another original (or an extra negative, the
release's `others/`) as negative. The loss is the triplet margin loss with margin 1 on
L2-normalised embeddings, as in the paper; training is SGD with a step schedule, and a
held-out set of originals (never seen in training) measures validation loss and accuracy.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from flaudit.device import resolve_device
from flaudit.errors import FlauditError
from flaudit.progress import progress
from semsim.config import TrainConfig
from semsim.data import Annotation, load_image
from semsim.model import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    BackboneSpec,
    Preprocess,
    build_backbone,
    checkpoint_dict,
    embed_train,
    save_checkpoint,
)


@dataclass(frozen=True)
class Triplet:
    """Image paths of one training triplet."""

    anchor: str
    positive: str
    negative: str


def build_triplets(
    annotations: Sequence[Annotation],
    *,
    extra_negatives: Sequence[str] = (),
    seed: int = 0,
) -> list[Triplet]:
    """One triplet per recognisable reconstruction.

    Anchor = its original; positive = the reconstruction; negative = a random unrecognisable
    reconstruction of the same original, or, when it has none, a random reconstruction of a
    different original or an extra negative. An original is never its own negative, a
    positive never comes from another original, and the negative is never one of the
    anchor's recognisable reconstructions.

    Args:
        annotations: judged reconstructions (several originals).
        extra_negatives: images of no original, usable as fallback negatives.
        seed: the random choice of negatives (resample per epoch with another seed).
    """
    rng = random.Random(seed)
    positives: dict[str, list[str]] = defaultdict(list)
    negatives: dict[str, list[str]] = defaultdict(list)
    for record in annotations:
        if record.reconstruction == record.original:
            continue  # an original listed as its own reconstruction is neither positive nor negative
        (positives if record.recognisable else negatives)[record.original].append(record.reconstruction)
    originals = sorted(set(positives) | set(negatives))
    triplets: list[Triplet] = []
    for original in originals:
        own = set(positives[original]) | {original}
        candidates = [n for n in negatives[original] if n not in own]
        if not candidates:
            candidates = [
                rec
                for other in originals
                if other != original
                for rec in positives[other] + negatives[other]
                if rec not in own
            ] + [e for e in extra_negatives if e not in own]
        if not candidates:
            continue
        for positive in sorted(set(positives[original])):
            if positive == original:
                continue
            triplets.append(Triplet(original, positive, rng.choice(candidates)))
    return triplets


def split_originals(annotations: Sequence[Annotation], *, val_fraction: float, seed: int) -> tuple[list[Annotation], list[Annotation]]:
    """Split annotations by original, so no validation original (nor its reconstructions) is trained on."""
    originals = sorted({a.original for a in annotations})
    rng = random.Random(seed)
    rng.shuffle(originals)
    n_val = int(round(val_fraction * len(originals)))
    if val_fraction > 0 and len(originals) >= 4:
        n_val = max(1, n_val)
    val = set(originals[:n_val])
    return [a for a in annotations if a.original not in val], [a for a in annotations if a.original in val]


@dataclass(frozen=True)
class TrainResult:
    """A trained SemSim model: its checkpoint (plain dict), per-epoch history and where it was saved."""

    checkpoint: dict[str, Any]
    history: tuple[dict[str, float], ...]
    path: Path | None


class _ImageBank:
    """Every image the triplets use, loaded once and preprocessed to the network's input."""

    def __init__(self, paths: Sequence[str], preprocess: Preprocess) -> None:
        self.index = {path: i for i, path in enumerate(sorted(set(paths)))}
        images = [preprocess(load_image(path, channels=3).unsqueeze(0))[0] for path in self.index]
        self.tensor = torch.stack(images) if images else torch.zeros(0)

    def ids(self, paths: Sequence[str]) -> torch.Tensor:
        return torch.tensor([self.index[p] for p in paths], dtype=torch.long)


def triplet_loss(anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, *, margin: float = 1.0) -> torch.Tensor:
    """Mean of max(0, |a - p| - |a - n| + margin) with L2 distances (inputs already normalised)."""
    d_pos = (anchor - positive).norm(dim=1)
    d_neg = (anchor - negative).norm(dim=1)
    return torch.clamp(d_pos - d_neg + margin, min=0).mean()


def _triplet_ids(bank: _ImageBank, triplets: Sequence[Triplet]) -> torch.Tensor:
    return torch.stack([bank.ids([t.anchor for t in triplets]), bank.ids([t.positive for t in triplets]), bank.ids([t.negative for t in triplets])], dim=1)


@torch.no_grad()
def evaluate_triplets(network: nn.Module, images: torch.Tensor, ids: torch.Tensor, *, margin: float, batch_size: int = 256) -> dict[str, float]:
    """Triplet loss and accuracy (share of triplets with d(a, p) < d(a, n)) in eval mode."""
    network.eval()
    device = next(network.parameters()).device
    losses, correct = [], 0
    for start in range(0, ids.shape[0], batch_size):
        chunk = ids[start : start + batch_size]
        emb = embed_train(network, images[chunk.flatten()].to(device)).view(chunk.shape[0], 3, -1)
        a, p, n = emb[:, 0], emb[:, 1], emb[:, 2]
        losses.append(triplet_loss(a, p, n, margin=margin).item() * chunk.shape[0])
        correct += int(((a - p).norm(dim=1) < (a - n).norm(dim=1)).sum())
    count = max(1, ids.shape[0])
    return {"loss": sum(losses) / count, "accuracy": correct / count}


def train_semsim(
    annotations: Sequence[Annotation],
    *,
    config: TrainConfig = TrainConfig(),
    extra_negatives: Sequence[str] = (),
    out: str | Path | None = None,
) -> TrainResult:
    """Train a SemSim embedding on annotated reconstructions.

    Args:
        annotations: judgements (human or oracle); originals are split into training and
            held-out validation sets.
        config: training settings.
        extra_negatives: images of no original, used only when an original has no
            unrecognisable reconstruction.
        out: where to save the checkpoint (torch.save of plain tensors and dicts; loads with
            `torch.load(weights_only=True)`), or None to only return it.

    Raises:
        FlauditError: the annotations give no training triplet (no recognisable reconstruction,
            or a single original with no negative).
    """
    started = time.perf_counter()
    device = resolve_device(config.device)
    train_set, val_set = split_originals(annotations, val_fraction=config.val_fraction, seed=config.seed)
    train_triplets = build_triplets(train_set, extra_negatives=extra_negatives, seed=config.seed)
    if not train_triplets:
        raise FlauditError(
            f"no training triplet from {len(annotations)} annotations ({len(train_set)} in the training split): "
            "SemSim needs originals with at least one recognisable reconstruction and some negative"
        )
    val_triplets = build_triplets(val_set, extra_negatives=extra_negatives, seed=config.seed + 10_000)

    spec = BackboneSpec(config.backbone, in_channels=config.in_channels, input_size=config.input_size, width=config.width)
    network, init = build_backbone(spec, pretrained=config.pretrained, seed=config.seed)
    preprocess = Preprocess(config.input_size, config.in_channels, IMAGENET_MEAN[: config.in_channels] if config.in_channels == 3 else (0.5,), IMAGENET_STD[: config.in_channels] if config.in_channels == 3 else (0.5,))
    all_paths = [p for a in annotations for p in (a.original, a.reconstruction)] + list(extra_negatives)
    bank = _ImageBank(all_paths, preprocess)
    images = bank.tensor
    network.to(device)

    optimizer = torch.optim.SGD(network.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    step_size = config.step_size or max(1, config.epochs // 3)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=config.gamma)
    val_ids = _triplet_ids(bank, val_triplets) if val_triplets else None
    generator = torch.Generator().manual_seed(config.seed)

    history: list[dict[str, float]] = []
    best_state: dict[str, torch.Tensor] | None = None
    best_val = float("inf")
    bar = progress(range(config.epochs), desc="semsim train", unit="epoch")
    for epoch in bar:
        # Fresh negatives every epoch: more distinct triplets from the same annotations.
        triplets = train_triplets if epoch == 0 else build_triplets(train_set, extra_negatives=extra_negatives, seed=config.seed + epoch)
        ids = _triplet_ids(bank, triplets)
        ids = ids[torch.randperm(ids.shape[0], generator=generator)]
        network.train()
        total, seen = 0.0, 0
        for start in range(0, ids.shape[0], config.batch_size):
            chunk = ids[start : start + config.batch_size]
            if chunk.shape[0] < 2 and seen > 0:
                continue  # BatchNorm cannot train on a single-triplet remainder
            emb = embed_train(network, images[chunk.flatten()].to(device)).view(chunk.shape[0], 3, -1)
            loss = triplet_loss(emb[:, 0], emb[:, 1], emb[:, 2], margin=config.margin)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * chunk.shape[0]
            seen += chunk.shape[0]
        scheduler.step()
        row: dict[str, float] = {"epoch": float(epoch + 1), "train_loss": total / max(1, seen), "lr": optimizer.param_groups[0]["lr"]}
        if val_ids is not None:
            val = evaluate_triplets(network, images, val_ids, margin=config.margin)
            row["val_loss"], row["val_accuracy"] = val["loss"], val["accuracy"]
            if val["loss"] < best_val:
                best_val = val["loss"]
                best_state = {k: v.detach().cpu().clone() for k, v in network.state_dict().items()}
        history.append(row)
        bar.set_postfix({k: round(v, 4) for k, v in row.items() if k.endswith(("loss", "accuracy"))})
    if best_state is not None:
        # Keep the epoch with the lowest held-out loss (the validation originals were never trained on).
        network.load_state_dict(best_state)

    info = {
        "config": asdict(config),
        "history": history,
        "best_val_loss": best_val if best_state is not None else None,
        "train_originals": len({a.original for a in train_set}),
        "val_originals": len({a.original for a in val_set}),
        "train_triplets": len(train_triplets),
        "val_triplets": len(val_triplets),
        "annotations": len(annotations),
        "annotators": sorted({a.annotator for a in annotations}),
        "datasets": sorted({a.dataset for a in annotations}),
        "attacks": sorted({a.attack for a in annotations}),
        "variants": sorted({a.variant for a in annotations}),
        "extra_negatives": len(extra_negatives),
        "wall_time_s": time.perf_counter() - started,
    }
    checkpoint = checkpoint_dict(network.cpu(), spec, preprocess, init=init, info=info)
    path = save_checkpoint(out, checkpoint) if out is not None else None
    return TrainResult(checkpoint, tuple(history), path)
