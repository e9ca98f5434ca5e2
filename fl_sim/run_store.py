"""The run directory: one documented layout, atomic writes, a manifest of SHA-256 hashes.

```
RUN_DIR/
  manifest.json                      scenario, versions, seed, per-file SHA-256 (sealed after each step)
  scenario.yaml                      the scenario exactly as run
  history.json                       per-round server evaluation (accuracy, loss), train metrics, privacy
  captures/round_RRR/client_CCC.safetensors   the ServerView: global.<name> (state sent), update.<name>,
  captures/round_RRR/client_CCC.json          buffers.<name>; the JSON holds the model spec and metadata
  ground_truth/round_RRR/client_CCC.safetensors   the vault: images [0,1], labels, indices (audit only)
  attacks/ATTACK/round_RRR/client_CCC/        {i}_{label}_rec.png, {i}_{label}_ori.png, record.json
  metrics.jsonl, rounds.jsonl, report.md, tb/   written by the audit
```

The captures hold only what the server received; the vault is written by the simulated
clients, on the side, for scoring. Tensors are safetensors files, so loading never unpickles.
"""

from __future__ import annotations

import platform
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from attacks.base import ServerView, SharedMetadata
from flaudit import __version__
from flaudit.errors import CaptureCorruptError
from flaudit.io import atomic_write_json, atomic_write_text, load_tensors, read_json, save_tensors, sha256_file
from fl_sim.models import ModelSpec, build_model

# Not covered by the manifest: TensorBoard rewrites its events, caches are re-derivable.
UNSEALED = ("tb", "cache")
_KEY = re.compile(r"round_(\d+)/client_(\d+)\.safetensors$")


@dataclass(frozen=True)
class GroundTruth:
    """A client's true batch in one round: the vault's record, read only by the audit.

    Args:
        round: server round.
        client: partition id.
        images: (B, C, H, W) in [0, 1], as the client's data loader produced them (before normalisation).
        labels: (B,) int64.
        indices: (B,) int64 indices into the dataset's training split.
    """

    round: int
    client: int
    images: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor


@dataclass(frozen=True)
class CaptureKey:
    round: int
    client: int

    @property
    def stem(self) -> str:
        return f"round_{self.round:03d}/client_{self.client:03d}"


class RunStore:
    """Reads and writes one run directory (see the module docstring for the layout)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        # manifest.json's `files`, with the (mtime, size, inode) they were read at: every verified read
        # needs them, and a run has one entry per file.
        self._manifest_cache: tuple[tuple[int, int, int], dict[str, str]] | None = None

    # --- paths ---------------------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    @property
    def scenario_path(self) -> Path:
        return self.root / "scenario.yaml"

    @property
    def history_path(self) -> Path:
        return self.root / "history.json"

    def capture_path(self, key: CaptureKey) -> Path:
        return self.root / "captures" / f"{key.stem}.safetensors"

    def ground_truth_path(self, key: CaptureKey) -> Path:
        return self.root / "ground_truth" / f"{key.stem}.safetensors"

    def attack_dir(self, attack: str, key: CaptureKey) -> Path:
        return self.root / "attacks" / attack / key.stem

    @property
    def tensorboard_dir(self) -> Path:
        return self.root / "tb"

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"

    # --- creation ------------------------------------------------------------------------
    def create(self, scenario_text: str, *, seed: int) -> None:
        """Start a run directory: the scenario as run and a first manifest."""
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.scenario_path, scenario_text)
        self.seal([self.scenario_path], seed=seed)

    # --- captures (the server's side) ----------------------------------------------------
    def write_view(
        self,
        key: CaptureKey,
        *,
        spec: ModelSpec,
        global_state: Mapping[str, torch.Tensor],
        update: Mapping[str, torch.Tensor],
        buffers: Mapping[str, torch.Tensor],
        meta: SharedMetadata,
    ) -> None:
        """Record what the server saw of one client in one round."""
        tensors = {f"global.{k}": v for k, v in global_state.items()}
        tensors.update({f"update.{k}": v for k, v in update.items()})
        tensors.update({f"buffers.{k}": v for k, v in buffers.items()})
        path = self.capture_path(key)
        save_tensors(path, tensors)
        atomic_write_json(
            path.with_suffix(".json"),
            {"round": key.round, "client": key.client, "model": spec.to_dict(), "meta": meta.to_dict(),
             "update_keys": list(update), "buffer_keys": list(buffers)},
        )

    def capture_keys(self) -> list[CaptureKey]:
        """Every captured (round, client), sorted: those on disk and those manifest.json lists (a
        listed capture that is gone is still a key, so that reading it reports it missing)."""
        names = [path.relative_to(self.root).as_posix() for path in (self.root / "captures").glob("round_*/client_*.safetensors")]
        names += [name for name in self.manifest_files() if name.startswith("captures/")]
        keys = set()
        for name in names:
            match = _KEY.search(name)
            if match:
                keys.add(CaptureKey(int(match.group(1)), int(match.group(2))))
        return sorted(keys, key=lambda k: (k.round, k.client))

    def read_capture_info(self, key: CaptureKey) -> dict[str, Any]:
        """The capture's JSON (model spec, shared metadata, tensor names), verified against the manifest."""
        return read_json(self.verified(self.capture_path(key).with_suffix(".json")))

    def read_spec(self, key: CaptureKey) -> ModelSpec:
        return ModelSpec.from_dict(self.read_capture_info(key)["model"])

    def read_view(self, key: CaptureKey, *, device: str | torch.device = "cpu") -> ServerView:
        """Rebuild the ServerView of one capture: the global model as sent, the update, the metadata.

        Raises:
            CaptureCorruptError: a file of the capture is missing or differs from manifest.json.
        """
        info = self.read_capture_info(key)
        tensors = load_tensors(self.verified(self.capture_path(key)), device=device)
        spec = ModelSpec.from_dict(info["model"])
        model = build_model(spec).to(device)
        state = {k[len("global."):]: v for k, v in tensors.items() if k.startswith("global.")}
        try:
            model.load_state_dict(state)
        except RuntimeError as err:
            raise CaptureCorruptError(f"{self.capture_path(key)}: weights do not fit model {spec.name!r} ({err})") from None
        model.eval()
        update = {name: tensors[f"update.{name}"] for name in info["update_keys"]}
        buffers = {name: tensors[f"buffers.{name}"] for name in info["buffer_keys"]}
        return ServerView(
            round=key.round, client=key.client, model=model, update=update,
            meta=SharedMetadata.from_dict(info["meta"]), buffers=buffers,
        )

    # --- the ground-truth vault (the simulation's side, audit only) -----------------------
    def write_ground_truth(self, truth: GroundTruth) -> None:
        save_tensors(
            self.ground_truth_path(CaptureKey(truth.round, truth.client)),
            {"images": truth.images, "labels": truth.labels.to(torch.int64), "indices": truth.indices.to(torch.int64)},
        )

    def read_ground_truth(self, key: CaptureKey) -> GroundTruth:
        """The vault's record of one capture, verified against the manifest (raises CaptureCorruptError)."""
        tensors = load_tensors(self.verified(self.ground_truth_path(key)))
        return GroundTruth(key.round, key.client, tensors["images"], tensors["labels"], tensors["indices"])

    # --- history and manifest ----------------------------------------------------------------
    def write_history(self, history: Mapping[str, Any]) -> None:
        atomic_write_json(self.history_path, history)

    def read_history(self) -> dict[str, Any]:
        return read_json(self.verified(self.history_path))

    def files(self, *folders: str) -> Iterator[Path]:
        """The run's files that the manifest covers (TensorBoard events, caches and temp files aside).

        Args:
            folders: only files under these top-level entries (e.g. "captures", "history.json").
        """
        for path in sorted(self.root.rglob("*")):
            relative = path.relative_to(self.root).parts
            if not path.is_file() or path.name == "manifest.json" or path.name.startswith("."):
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

    def verified(self, path: Path) -> Path:
        """`path`, after checking that it exists and that its SHA-256 is the one manifest.json recorded.

        Raises:
            CaptureCorruptError: the file is missing, was never sealed, or its content changed.
        """
        relative = path.relative_to(self.root).as_posix()
        expected = self.manifest_files().get(relative)
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
            files.pop(Path(path).relative_to(self.root).as_posix(), None)
        for path in paths:
            files[Path(path).relative_to(self.root).as_posix()] = sha256_file(path)
        manifest = {
            **previous,
            "flaudit_version": __version__,
            "versions": _versions(),
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
            if path.relative_to(self.root).as_posix() not in recorded:
                problems.append(f"{path}: unexpected (not in manifest.json)")
        return problems


def _versions() -> dict[str, str]:
    import flwr
    import numpy

    return {"python": platform.python_version(), "torch": torch.__version__, "flwr": flwr.__version__, "numpy": numpy.__version__}
