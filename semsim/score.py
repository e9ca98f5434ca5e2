"""SemSim as a metric: the L2 distance between the embeddings of an original and its reconstruction.

Lower = more leakage (the reconstruction is semantically closer to the original). Folders are
paired by file name, `{i}_{label}_ori.png` with `{i}_{label}_rec.png`, never by listing order.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from flaudit.errors import DatasetUnavailableError, FlauditError
from semsim.data import Problem, is_image, load_image
from semsim.model import SemSimModel, load_checkpoint

Checkpoint = str | Path | dict[str, Any] | SemSimModel
ImagesLike = torch.Tensor | Sequence[str | Path] | str | Path

_ORI = re.compile(r"^(?P<key>.+)_ori$")
_REC = re.compile(r"^(?P<key>.+)_rec$")


@dataclass(frozen=True)
class Pair:
    """An original and its reconstruction, matched by their shared `{i}_{label}` key."""

    key: str
    original: Path
    reconstruction: Path


def _natural(key: str) -> tuple[object, ...]:
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", key))


def pair_by_name(ori_dir: str | Path, rec_dir: str | Path) -> tuple[list[Pair], list[Problem]]:
    """Pair `{key}_ori.*` in `ori_dir` with `{key}_rec.*` in `rec_dir` (the two may be one folder).

    Returns:
        The pairs in natural key order, and problems: files with no partner, names that
        follow neither pattern.

    Raises:
        DatasetUnavailableError: a folder does not exist.
    """
    ori_dir, rec_dir = Path(ori_dir), Path(rec_dir)
    for folder in (ori_dir, rec_dir):
        if not folder.is_dir():
            raise DatasetUnavailableError(f"{folder}: folder not found; pass the folders holding *_ori.png and *_rec.png")
    problems: list[Problem] = []

    same = ori_dir.resolve() == rec_dir.resolve()

    def collect(folder: Path, pattern: re.Pattern[str], other: re.Pattern[str], suffix: str, report_strays: bool) -> dict[str, Path]:
        found: dict[str, Path] = {}
        for file in folder.iterdir():
            if not is_image(file):
                continue
            match = pattern.match(file.stem)
            if match is None:
                # In a shared folder the partner's files are expected; anything else is a stray.
                stray = not (same and other.match(file.stem))
                if stray and report_strays:
                    problems.append(Problem(str(file), f"name is not {{i}}_{{label}}{suffix}.<ext>; skipped"))
                continue
            key = match.group("key")
            if key in found:
                problems.append(Problem(str(file), f"second image for key {key!r} (first: {found[key].name}); skipped"))
                continue
            found[key] = file
        return found

    originals = collect(ori_dir, _ORI, _REC, "_ori", True)
    reconstructions = collect(rec_dir, _REC, _ORI, "_rec", not same)
    pairs = [Pair(key, originals[key], reconstructions[key]) for key in sorted(set(originals) & set(reconstructions), key=_natural)]
    for key in sorted(set(originals) - set(reconstructions), key=_natural):
        problems.append(Problem(str(originals[key]), f"no reconstruction {key}_rec.* in {rec_dir}; skipped"))
    for key in sorted(set(reconstructions) - set(originals), key=_natural):
        problems.append(Problem(str(reconstructions[key]), f"no original {key}_ori.* in {ori_dir}; skipped"))
    return pairs, problems


def _as_images(images: torch.Tensor | Sequence[str | Path]) -> torch.Tensor:
    if isinstance(images, torch.Tensor):
        if images.dim() == 3:
            images = images.unsqueeze(0)
        if images.dim() != 4:
            raise FlauditError(f"images must be (N, C, H, W) in [0, 1]; got shape {tuple(images.shape)}")
        return images
    loaded = [load_image(path) for path in images]
    if not loaded:
        return torch.zeros(0, 3, 1, 1)
    size = loaded[0].shape[-2:]
    if any(img.shape[-2:] != size for img in loaded):
        # Different sizes: the network resizes anyway, so bring them to the first one's size here.
        loaded = [torch.nn.functional.interpolate(img.unsqueeze(0), size=size, mode="bilinear", align_corners=False)[0] for img in loaded]
    return torch.stack(loaded)


def semsim(
    originals: ImagesLike,
    reconstructions: ImagesLike,
    checkpoint: Checkpoint,
    *,
    batch_size: int = 128,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """SemSim distance of each (original, reconstruction) pair; lower = more leakage.

    Args:
        originals: (N, C, H, W) images in [0, 1], a list of image files, or a folder.
        reconstructions: the same kind: tensor/list aligned with `originals`; when both are
            folders, pairs are matched by name (`{i}_{label}_ori` <-> `{i}_{label}_rec`) and
            returned in natural key order (see `pair_by_name` for the keys and problems).
        checkpoint: a checkpoint path, its loaded dict, or a `SemSimModel`.
        batch_size: images per forward pass.
        device: where to run (None: cuda when available).

    Returns:
        (N,) distances: L2 between L2-normalised embeddings, in [0, 2].

    Raises:
        FlauditError: the two inputs have different lengths, or no pair matched.
    """
    if isinstance(originals, (str, Path)) or isinstance(reconstructions, (str, Path)):
        if not (isinstance(originals, (str, Path)) and isinstance(reconstructions, (str, Path))):
            raise FlauditError("pass both originals and reconstructions as folders, or neither")
        pairs, _ = pair_by_name(originals, reconstructions)
        if not pairs:
            raise FlauditError(f"no {{i}}_{{label}}_ori / _rec pair matched between {originals} and {reconstructions}")
        originals = [p.original for p in pairs]
        reconstructions = [p.reconstruction for p in pairs]
    model = load_checkpoint(checkpoint, device=device)
    ori = _as_images(originals)
    rec = _as_images(reconstructions)
    if ori.shape[0] != rec.shape[0]:
        raise FlauditError(f"{ori.shape[0]} originals but {rec.shape[0]} reconstructions; SemSim scores aligned pairs")
    return (model.embed(ori, batch_size=batch_size) - model.embed(rec, batch_size=batch_size)).norm(dim=1).cpu()


def load_scorer(checkpoint: Checkpoint, *, device: str | torch.device | None = None, batch_size: int = 128) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """SemSim as an audit metric: `scorer(originals01, reconstructions01) -> (N,) distances`.

    The checkpoint is loaded once; the returned function takes aligned (N, C, H, W) batches
    in [0, 1] (any size and 1 or 3 channels: the checkpoint's preprocessing adapts them).
    """
    model = load_checkpoint(checkpoint, device=device)

    def scorer(originals01: torch.Tensor, reconstructions01: torch.Tensor) -> torch.Tensor:
        return semsim(originals01, reconstructions01, model, batch_size=batch_size)

    scorer.__name__ = "semsim"
    return scorer
