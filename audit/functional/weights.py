"""Where the metrics' pretrained weights live, and loading them with a useful error.

The weights come from the usual caches: torch hub's `checkpoints/` folder (torchvision's
AlexNet for LPIPS, pytorch-fid's Inception for FID), downloading on first use where the
machine has internet. Where the file cannot be had, `WeightsUnavailableError` names the exact
file and the folder to put it in.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from flaudit.errors import WeightsUnavailableError
from flaudit.offline import downloads_allowed


@dataclass(frozen=True)
class WeightFile:
    """A pretrained weight file a metric needs.

    Args:
        metric: the metric that needs it.
        filename: the file name in the torch hub cache.
        url: where it downloads from.
        purpose: what it is, for messages.
    """

    metric: str
    filename: str
    url: str
    purpose: str

    @property
    def path(self) -> Path:
        """Where torch hub keeps (and looks for) it: `$TORCH_HOME/hub/checkpoints/<file>`."""
        return Path(torch.hub.get_dir()) / "checkpoints" / self.filename

    def available(self) -> bool:
        return self.path.is_file()

    def missing_message(self, reason: str = "") -> str:
        why = f" ({reason})" if reason else ""
        return (
            f"{self.metric} unavailable: {self.purpose} {self.filename} is not in the torch hub cache and could not "
            f"be downloaded{why}; download {self.url} and put it at {self.path}"
        )

    def not_cached_message(self) -> str:
        when = "FLAUDIT_OFFLINE is set, so it will not download" if not downloads_allowed() else \
            "it downloads on first use where there is internet"
        return f"{self.purpose} {self.filename} is not cached; {when}, else download {self.url} and put it at {self.path}"

    def ensure(self, *, download: bool = True) -> Path:
        """The local path of the file, downloading it first when missing and allowed.

        Raises:
            WeightsUnavailableError: the file is missing and could not be downloaded.
        """
        if self.path.is_file():
            return self.path
        if not download:
            raise WeightsUnavailableError(self.missing_message("download disabled"))
        if not downloads_allowed():
            raise WeightsUnavailableError(self.missing_message("FLAUDIT_OFFLINE is set"))
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(self.url, str(self.path), progress=False)
        except Exception as err:  # URLError, HTTPError, OSError, ...: all mean "not here"
            self.path.with_name(self.path.name + ".partial").unlink(missing_ok=True)
            raise WeightsUnavailableError(self.missing_message(f"{type(err).__name__}: {err}")) from None
        return self.path


ALEXNET = WeightFile(
    metric="lpips",
    filename="alexnet-owt-7be5be79.pth",
    url="https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
    purpose="the ImageNet AlexNet backbone (torchvision)",
)

FID_INCEPTION = WeightFile(
    metric="fid",
    filename="pt_inception-2015-12-05-6726825d.pth",
    url="https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth",
    purpose="pytorch-fid's FID Inception-v3 weights",
)

WEIGHT_FILES: dict[str, WeightFile] = {"lpips": ALEXNET, "fid": FID_INCEPTION}


def lpips_linear_layers_path(version: str = "0.1", net: str = "alex") -> Path:
    """The LPIPS linear-layer weights that ship inside the `lpips` package."""
    import lpips

    return Path(lpips.__file__).parent / "weights" / f"v{version}" / f"{net}.pth"
