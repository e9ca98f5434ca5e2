"""Atomic, hash-checked file I/O for run directories.

Every write goes to a temporary file in the same folder and is renamed into place, so a
crash never leaves a half-written capture. Tensors are stored with safetensors, which holds
only tensors and can never unpickle code.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flaudit.errors import CaptureCorruptError

if TYPE_CHECKING:  # torch loads on the first tensor read or write, so the manifest's checks start at once
    import torch


# An atomic write's temporary file: `.NAME.RANDOM.tmp` beside its target (a dot-file, never one of the run's files).
_TEMP_SUFFIX = ".tmp"


def _temp_file(path: Path) -> tuple[int, str]:
    return tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=_TEMP_SUFFIX)


def remove_temp_files(root: str | os.PathLike[str], *, skip: Callable[[Path], bool] = lambda folder: False) -> list[Path]:
    """Remove the temporary files that atomic writes under `root` left behind (a writer killed mid-write).

    Only for a caller that knows no write is under way there (it holds the run directory's lock).

    Args:
        root: the folder to clean, with its subfolders.
        skip: folders not to enter (e.g. another run directory, with a lock of its own).

    Returns:
        The files removed.
    """
    removed = []
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = [name for name in subfolders if not skip(Path(folder) / name)]
        for name in names:
            if name.startswith(".") and name.endswith(_TEMP_SUFFIX):
                path = Path(folder) / name
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def _umask() -> int:
    """The process's umask, read without changing it where Linux's /proc says it."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write `data` to `path` atomically (temp file in the same folder + fsync + rename).

    The file gets the mode `open()` would give it (0666 less the umask): mkstemp's private 0600
    would make a shared run directory unreadable to the rest of the team.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _temp_file(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Strict JSON: a non-finite number (a diverged loss) is written as null, never as `Infinity` or `NaN`."""
    return atomic_write_text(path, json.dumps(strict_json(obj), indent=2, sort_keys=True, default=_json_default, allow_nan=False) + "\n")


def strict_json(obj: Any) -> Any:
    """`obj` with every non-finite float replaced by None (JSON has no Infinity or NaN)."""
    if isinstance(obj, float):
        return obj if obj == obj and obj not in (float("inf"), float("-inf")) else None
    if isinstance(obj, Mapping):
        return {key: strict_json(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(value) for value in obj]
    return obj


def append_jsonl(path: str | os.PathLike[str], records: list[Mapping[str, Any]]) -> None:
    """Append records to a JSON Lines file (one flush per call)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(strict_json(record), sort_keys=True, default=_json_default, allow_nan=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def read_json(path: str | os.PathLike[str]) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CaptureCorruptError(f"{path}: file is missing") from None
    except json.JSONDecodeError as err:
        raise CaptureCorruptError(f"{path}: not valid JSON ({err}); re-run the step that writes it") from None


def save_tensors(path: str | os.PathLike[str], tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None) -> Path:
    """Save named tensors as safetensors, atomically."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _temp_file(path)
    os.close(fd)
    try:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp, metadata=dict(metadata or {}))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_tensors(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Load named tensors saved by `save_tensors`; a missing or broken file is a CaptureCorruptError."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.exists():
        raise CaptureCorruptError(f"{path}: file is missing")
    try:
        return load_file(str(path), device=str(device))
    except Exception as err:  # safetensors raises its own types for truncated headers
        raise CaptureCorruptError(f"{path}: unreadable safetensors file ({err})") from None


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _json_default(obj: Any) -> Any:
    if type(obj).__module__.split(".")[0] == "torch" and hasattr(obj, "tolist"):  # a tensor, without importing torch
        return strict_json(obj.tolist())
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item"):
        return strict_json(obj.item())
    if isinstance(obj, (set, frozenset, tuple)):
        return strict_json(list(obj))
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
