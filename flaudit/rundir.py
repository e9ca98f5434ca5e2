"""A run directory's manifest: every file a step wrote, with its SHA-256; every read verified against it.

This is the ground floor of the typed stores (`attacks.store.CaptureStore` and
`ReconstructionStore`, `fl_sim.vault.Vault`, `fl_sim.run_store.RunStore`): each is a view of one
part of the same folder, and each read goes through `RunDir.verified`. It imports no torch, so
`flaudit verify` starts at once.

```
RUN_DIR/
  manifest.json                      scenario, versions, seed, per-file SHA-256 (sealed after each step)
  scenario.yaml, history.json        the scenario as run; per-round server evaluation and privacy
  captures/round_RRR/client_CCC.{safetensors,json}   what the server received (attacks.store)
  ground_truth/round_RRR/client_CCC.safetensors      the vault: the true batch (fl_sim.vault, scoring only)
  attacks/ATTACK/round_RRR/client_CCC/               reconstruction.safetensors, record.json (the attack);
                                                     {i}_{label}_ori.png, {i}_{label}_rec.png (the audit's pairs)
  metrics.jsonl, rounds.jsonl, report.md, figures/, tb/   written by the audit
  annotations/answers.sqlite          people's answers (`flaudit annotate`), a live database
```
"""

from __future__ import annotations

import functools
import platform
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from flaudit import __version__
from flaudit.errors import CaptureCorruptError
from flaudit.io import atomic_write_json, read_json, sha256_file

# Not covered by the manifest: TensorBoard rewrites its events, caches are re-derivable, and
# people's answers (`flaudit annotate`) are a database that changes with every answer.
ANNOTATIONS = "annotations"
UNSEALED = ("tb", "cache", ANNOTATIONS)
MANIFEST = "manifest.json"
_KEY = re.compile(r"round_(\d+)/client_(\d+)(?:\.safetensors|/|$)")


@dataclass(frozen=True)
class CaptureKey:
    """One client's update in one round: the key of a capture, its ground truth and its reconstructions."""

    round: int
    client: int

    @property
    def stem(self) -> str:
        return f"round_{self.round:03d}/client_{self.client:03d}"

    @staticmethod
    def parse(path: str) -> CaptureKey | None:
        """The key in a path such as `captures/round_001/client_002.safetensors` (None when there is none)."""
        match = _KEY.search(path)
        return CaptureKey(int(match.group(1)), int(match.group(2))) if match else None


class RunDir:
    """One run directory's manifest: verified reads, seals of what a step wrote, and `verify`."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        # manifest.json's `files`, with the (mtime, size, inode) they were read at: every verified read
        # needs them, and a run has one entry per file.
        self._manifest_cache: tuple[tuple[int, int, int], dict[str, str]] | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.root)!r})"

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST

    @property
    def scenario_path(self) -> Path:
        return self.root / "scenario.yaml"

    def relative(self, path: Path) -> str:
        return Path(path).relative_to(self.root).as_posix()

    def files(self, *folders: str) -> Iterator[Path]:
        """The run's files that the manifest covers (TensorBoard events, caches and temp files aside).

        Args:
            folders: only files under these top-level entries (e.g. "captures", "history.json").
        """
        for path in sorted(self.root.rglob("*")):
            relative = path.relative_to(self.root).parts
            if not path.is_file() or path.name == MANIFEST or path.name.startswith("."):
                continue
            if relative[0] in UNSEALED or (folders and relative[0] not in folders):
                continue
            yield path

    def manifest_files(self) -> dict[str, str]:
        """manifest.json's `files`: relative path -> SHA-256 ({} before the first seal)."""
        try:
            stat = self.manifest_path.stat()
        except FileNotFoundError:
            return {}
        stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        if self._manifest_cache is None or self._manifest_cache[0] != stamp:
            files = read_json(self.manifest_path).get("files", {})
            if not isinstance(files, dict):
                raise CaptureCorruptError(f"{self.manifest_path}: 'files' is not a mapping of path to SHA-256")
            self._manifest_cache = (stamp, files)
        return self._manifest_cache[1]

    def listed(self, folder: str) -> list[str]:
        """The manifest's entries under `folder` (relative paths): a listed file that is gone is still
        listed, so that reading it reports it missing instead of skipping it."""
        prefix = folder.rstrip("/") + "/"
        return [name for name in self.manifest_files() if name.startswith(prefix)]

    def verified(self, path: Path) -> Path:
        """`path`, after checking that it exists and that its SHA-256 is the one manifest.json recorded.

        Raises:
            CaptureCorruptError: the file is missing, was never sealed, or its content changed.
        """
        expected = self.manifest_files().get(self.relative(path))
        if not path.is_file():
            raise CaptureCorruptError(f"{path}: missing" + (" (manifest.json lists it)" if expected else ""))
        if expected is None:
            raise CaptureCorruptError(f"{path}: not in manifest.json (not written by a finished flaudit step); re-run that step")
        if sha256_file(path) != expected:
            raise CaptureCorruptError(f"{path}: SHA-256 differs from manifest.json (altered or corrupt)")
        return path

    def seal(self, paths: Iterable[Path] = (), *, removed: Iterable[Path] = (), seed: int | None = None,
             extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Record in manifest.json the SHA-256 of the files a step wrote (`paths`) and forget `removed`.

        Only those entries change: a file another step wrote is never re-hashed, so a file that
        was altered since stays detectable (`verify`).
        """
        previous = read_json(self.manifest_path) if self.manifest_path.exists() else {}
        files = dict(previous.get("files", {}))
        for path in removed:
            files.pop(self.relative(path), None)
        for path in paths:
            files[self.relative(path)] = sha256_file(path)
        manifest = {
            **previous,
            "flaudit_version": __version__,
            "versions": dict(_versions()),
            "updated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "files": dict(sorted(files.items())),
        }
        manifest.setdefault("created", manifest["updated"])
        if seed is not None:
            manifest["seed"] = seed
        if self.scenario_path.exists():
            manifest["scenario"] = self.scenario_path.read_text(encoding="utf-8")
        manifest.update(extra or {})
        atomic_write_json(self.manifest_path, manifest)
        stat = self.manifest_path.stat()  # this process's own write: no re-read, whatever the clock's grain
        self._manifest_cache = ((stat.st_mtime_ns, stat.st_size, stat.st_ino), manifest["files"])
        return manifest

    def verify(self) -> list[str]:
        """Every problem of the run directory, by path: missing, altered, and unexpected files."""
        problems = []
        recorded = self.manifest_files()
        for name, digest in recorded.items():
            path = self.root / name
            if not path.is_file():
                problems.append(f"{path}: missing")
            elif sha256_file(path) != digest:
                problems.append(f"{path}: SHA-256 differs from manifest.json (altered or corrupt)")
        for path in self.files():
            if self.relative(path) not in recorded:
                problems.append(f"{path}: unexpected (not in manifest.json)")
        return problems


@functools.cache
def _versions() -> dict[str, str]:
    # Read from the installed distributions: sealing must not import torch or Flower (the attack
    # stage seals its outputs and imports neither of the simulation's packages).
    found = {"python": platform.python_version()}
    for name in ("torch", "flwr", "numpy"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found
