"""Tiny synthetic annotation sets written as PNG files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from semsim.data import Annotation, save_image


def make_set(root: Path, *, originals: int = 6, positives: int = 2, negatives: int = 2, size: int = 16, seed: int = 0) -> list[Annotation]:
    """Originals are distinct smooth patterns; recognisable reconstructions are the original
    plus mild noise; unrecognisable ones are mostly noise with a faint trace of it."""
    g = torch.Generator().manual_seed(seed)
    records: list[Annotation] = []
    for i in range(originals):
        coarse = torch.rand(3, 4, 4, generator=g)
        ori = torch.nn.functional.interpolate(coarse[None], size=(size, size), mode="bilinear", align_corners=False)[0]
        ori_path = save_image(root / f"{i}_{i % 3}_ori.png", ori)
        for k in range(positives):
            rec = (ori + 0.08 * torch.randn(ori.shape, generator=g)).clamp(0, 1)
            path = save_image(root / "rec" / f"v{k}" / f"{i}_{i % 3}_rec.png", rec)
            records.append(Annotation(str(ori_path), str(path), "synthetic", f"v{k}", "dlg", True))
        for k in range(negatives):
            rec = (0.15 * ori + 0.85 * torch.rand(ori.shape, generator=g)).clamp(0, 1)
            path = save_image(root / "rec" / f"n{k}" / f"{i}_{i % 3}_rec.png", rec)
            records.append(Annotation(str(ori_path), str(path), "synthetic", f"n{k}", "dlg", False))
    return records


@pytest.fixture()
def synthetic(tmp_path: Path) -> list[Annotation]:
    return make_set(tmp_path / "data")


@pytest.fixture()
def synthetic_factory():  # type: ignore[no-untyped-def]
    return make_set
