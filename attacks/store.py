"""The attacker's side of a run directory: the captures it reads and the reconstructions it writes.

`CaptureStore` reads what the honest-but-curious server received (`captures/`), as
`ServerView`s; the server writes them through it. `ReconstructionStore` holds one attack's
outputs (`attacks/ATTACK/`). Neither can read the ground-truth vault: that is
`fl_sim.vault.Vault`, which this package never imports, so the attack stage cannot be handed it.
Every read is verified against manifest.json (`flaudit.rundir.RunDir.verified`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from attacks.base import ServerView, SharedMetadata
from flaudit.errors import CaptureCorruptError
from flaudit.io import atomic_write_json, load_tensors, read_json, save_tensors
from flaudit.limits import check_capture_sizes
from flaudit.models import ModelSpec, build_model
from flaudit.rundir import CaptureKey, RunDir

CAPTURES = "captures"
ATTACKS = "attacks"
RECORD = "record.json"
TENSORS = "reconstruction.safetensors"


class CaptureStore(RunDir):
    """The server's captures of a run: `captures/round_RRR/client_CCC.safetensors` (global.<name>
    as sent, update.<name>, buffers.<name>) and `.json` (model spec, shared metadata, tensor names)."""

    def capture_path(self, key: CaptureKey) -> Path:
        return self.root / CAPTURES / f"{key.stem}.safetensors"

    def info_path(self, key: CaptureKey) -> Path:
        return self.capture_path(key).with_suffix(".json")

    def write_view(
        self,
        key: CaptureKey,
        *,
        spec: ModelSpec,
        global_state: Mapping[str, torch.Tensor],
        update: Mapping[str, torch.Tensor],
        buffers: Mapping[str, torch.Tensor],
        meta: SharedMetadata,
    ) -> list[Path]:
        """Record what the server saw of one client in one round; returns the files (to seal)."""
        tensors = {f"global.{k}": v for k, v in global_state.items()}
        tensors.update({f"update.{k}": v for k, v in update.items()})
        tensors.update({f"buffers.{k}": v for k, v in buffers.items()})
        path = self.capture_path(key)
        save_tensors(path, tensors)
        atomic_write_json(
            self.info_path(key),
            {"round": key.round, "client": key.client, "model": spec.to_dict(), "meta": meta.to_dict(),
             "update_keys": list(update), "buffer_keys": list(buffers)},
        )
        return [path, self.info_path(key)]

    def capture_keys(self) -> list[CaptureKey]:
        """Every captured (round, client), sorted: those on disk and those manifest.json lists (a
        listed capture that is gone is still a key, so that reading it reports it missing)."""
        names = [self.relative(path) for path in (self.root / CAPTURES).glob("round_*/client_*.safetensors")]
        names += [name for name in self.listed(CAPTURES) if name.endswith(".safetensors")]
        keys = {key for key in map(CaptureKey.parse, names) if key is not None}
        return sorted(keys, key=lambda k: (k.round, k.client))

    def read_capture_info(self, key: CaptureKey) -> dict[str, Any]:
        """The capture's JSON (model spec, shared metadata, tensor names), verified against the manifest."""
        return read_json(self.verified(self.info_path(key)))

    def check(self, key: CaptureKey) -> None:
        """Raise CaptureCorruptError when either file of the capture is missing or altered."""
        self.verified(self.capture_path(key))
        self.verified(self.info_path(key))

    def read_view(self, key: CaptureKey, *, device: str | torch.device = "cpu") -> ServerView:
        """Rebuild the ServerView of one capture: the global model as sent, the update, the metadata.

        Raises:
            CaptureCorruptError: a file of the capture is missing or differs from manifest.json, or
                records sizes past the cost limits (`flaudit.limits`).
        """
        info = self.read_capture_info(key)
        check_capture_sizes(info, path=self.info_path(key))  # before any tensor or model is made from it
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

    def reconstructions(self, attack: str) -> ReconstructionStore:
        """Where `attack` writes its results in this run."""
        return ReconstructionStore(self.root, attack)


@dataclass(frozen=True)
class StoredReconstruction:
    """One update's reconstruction as the attack stage wrote it.

    Args:
        key: the capture it inverts.
        images: (N, C, H, W) float32 in [0, 1], in the attack's own order.
        labels: (N,) int64 labels the attack used (recovered, or given under the known-labels threat model).
        record: record.json: the attack's settings, threat model, timings.
    """

    key: CaptureKey
    images: torch.Tensor
    labels: torch.Tensor | None
    record: Mapping[str, Any]


class ReconstructionStore(RunDir):
    """One attack's outputs in a run: `attacks/ATTACK/round_RRR/client_CCC/{reconstruction.safetensors, record.json}`."""

    def __init__(self, root: str | Path, attack: str) -> None:
        super().__init__(root)
        self.attack = attack

    def folder(self, key: CaptureKey) -> Path:
        return self.root / ATTACKS / self.attack / key.stem

    def keys(self) -> list[CaptureKey]:
        """The updates with a reconstruction: on disk or listed in manifest.json (then reading reports it missing)."""
        base = f"{ATTACKS}/{self.attack}/"
        names = [self.relative(path) for path in (self.root / ATTACKS / self.attack).glob(f"round_*/client_*/{TENSORS}")]
        names += [name for name in self.listed(f"{ATTACKS}/{self.attack}") if name.endswith(f"/{TENSORS}")]
        keys = {key for key in (CaptureKey.parse(name[len(base):]) for name in names) if key is not None}
        return sorted(keys, key=lambda k: (k.round, k.client))

    def read_record(self, key: CaptureKey) -> dict[str, Any]:
        return read_json(self.verified(self.folder(key) / RECORD))

    def altered(self, key: CaptureKey) -> str | None:
        """Why the update's recorded result cannot be trusted (a file the manifest lists is missing or
        altered), or None when it is intact or was never written."""
        folder = self.folder(key)
        for path in (folder / TENSORS, folder / RECORD):
            if path.exists() or self.relative(path) in self.manifest_files():
                try:
                    self.verified(path)
                except CaptureCorruptError as err:
                    return f"{err}; re-attack it with --force"
        return None

    def current_record(self, key: CaptureKey, settings: Mapping[str, Any]) -> dict[str, Any] | None:
        """The update's record when its result exists and was made with these settings, else None
        (check `altered` first: this reads the record, verified, and trusts the tensors beside it)."""
        folder = self.folder(key)
        if not ((folder / RECORD).is_file() and (folder / TENSORS).is_file()):
            return None
        record = self.read_record(key)
        return record if all(record.get(name) == value for name, value in settings.items()) else None

    def read(self, key: CaptureKey) -> StoredReconstruction:
        """The verified reconstruction of one update.

        Raises:
            CaptureCorruptError: a file is missing, altered, or holds no images.
        """
        folder = self.folder(key)
        tensors = load_tensors(self.verified(folder / TENSORS))
        if "images" not in tensors:
            raise CaptureCorruptError(f"{folder / TENSORS}: no 'images' tensor; re-run `flaudit attack`")
        record = self.read_record(key)
        return StoredReconstruction(key, tensors["images"].to(torch.float32).clamp(0, 1), tensors.get("labels"), record)

    def write(self, key: CaptureKey, images: torch.Tensor, labels: torch.Tensor, record: Mapping[str, Any]) -> None:
        """Replace every output of the update with this reconstruction, and seal it.

        A re-attack leaves no file of an earlier setting behind (the audit's PNG pairs included),
        so one report never mixes results of different attack settings.
        """
        folder = self.folder(key)
        removed = sorted(path for path in folder.iterdir() if path.is_file()) if folder.is_dir() else []
        for path in removed:
            path.unlink()
        save_tensors(folder / TENSORS, {"images": images.detach().float().cpu().clamp(0, 1),
                                        "labels": labels.detach().cpu().to(torch.int64)})
        atomic_write_json(folder / RECORD, record)
        self.seal([folder / TENSORS, folder / RECORD], removed=removed)


def attack_names(run: RunDir, only: Sequence[str] | None = None) -> list[str]:
    """The attacks with an output folder in the run (or listed in its manifest), sorted."""
    folder = run.root / ATTACKS
    names = {path.name for path in folder.iterdir() if path.is_dir()} if folder.is_dir() else set()
    names |= {name.split("/")[1] for name in run.listed(ATTACKS)}
    return sorted(name for name in names if only is None or name in only)
