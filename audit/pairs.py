"""The PNG pairs of a scored update, in the SemSim release naming: `{index}_{label}_ori.png`
beside `{index}_{label}_rec.png`, the reconstruction the scorer matched to that original.

Written by scoring (which alone holds both the originals and the matching) into the update's
reconstruction folder and sealed with the scoring's other outputs; report.md and TensorBoard read them back, verified.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from attacks.store import ReconstructionStore
from flaudit.errors import CaptureCorruptError
from flaudit.io import atomic_write_bytes
from flaudit.rundir import CaptureKey


def png_bytes(image: torch.Tensor) -> bytes:
    """An 8-bit PNG of a (C, H, W) [0, 1] image (grey for one channel)."""
    array = (image.detach().cpu().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    if array.shape[2] == 1:
        array = array[:, :, 0]
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, format="PNG")
    return buffer.getvalue()


def pair_paths(folder: Path, position: int, label: int) -> tuple[Path, Path]:
    return folder / f"{position}_{label}_ori.png", folder / f"{position}_{label}_rec.png"


def write_pairs(
    store: ReconstructionStore,
    key: CaptureKey,
    originals: torch.Tensor,
    labels: torch.Tensor,
    matched_reconstructions: torch.Tensor,
    perm: torch.Tensor,
) -> tuple[list[Path], list[Path]]:
    """Write an update's pairs, replacing an earlier audit's; returns (written, removed) for the seal.

    Args:
        store: the attack's reconstructions.
        key: the update.
        originals: (B, C, H, W) the client's batch, [0, 1].
        labels: (B,) its true labels.
        matched_reconstructions: (M, C, H, W) the reconstructions matched to the originals with `perm >= 0`, in batch order.
        perm: (B,) per original, the index of its match (-1 where none).
    """
    folder = store.folder(key)
    removed = sorted([*folder.glob("*_ori.png"), *folder.glob("*_rec.png")])
    for path in removed:
        path.unlink()
    written = []
    matched = iter(matched_reconstructions)
    for position, (original, label) in enumerate(zip(originals, labels.tolist(), strict=True)):
        ori_path, rec_path = pair_paths(folder, position, int(label))
        written.append(atomic_write_bytes(ori_path, png_bytes(original.float())))
        if int(perm[position]) >= 0:
            written.append(atomic_write_bytes(rec_path, png_bytes(next(matched))))
    return written, [path for path in removed if path not in written]


def read_pair(store: ReconstructionStore, key: CaptureKey, position: int, label: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(original, reconstruction) of one pair as (C, H, W) [0, 1] tensors, read from its verified PNGs."""
    return tuple(_read_png(store.verified(path)) for path in pair_paths(store.folder(key), position, label))  # type: ignore[return-value]


def _read_png(path: Path) -> torch.Tensor:
    try:
        with Image.open(path) as image:
            array = np.asarray(image.convert("L" if image.mode in ("L", "I", "I;16") else "RGB"), dtype=np.float32) / 255.0
    except OSError as err:
        raise CaptureCorruptError(f"{path}: unreadable PNG ({err})") from None
    tensor = torch.from_numpy(array.copy())
    return tensor.unsqueeze(0) if tensor.ndim == 2 else tensor.permute(2, 0, 1)
