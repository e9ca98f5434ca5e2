"""What a scenario needs of this machine, checked before its federation starts.

The schema (`fl_sim.scenario`) checks what a file says; this checks what the machine has: the
device the attack and the metrics run on, and the dataset's files. `flaudit validate` runs these
quick checks (torch is imported only for a GPU device). At the start of a run
(`check_before_run`) the dataset is also loaded, the files of an image folder opened, and the
data partitioned among the clients, so a run that would fail fails in seconds, not after its
federation.
"""

from __future__ import annotations

from pathlib import Path

from fl_sim.scenario import Scenario
from flaudit.fields import FieldError, combine
from flaudit.offline import downloads_allowed

#: Datasets that ship with a dependency and load everywhere.
EMBEDDED = ("digits", "lfw-faces")
#: name -> (file or folder that must exist under the dataset root, where it comes from)
EXPECTED_FILES = {
    "cifar10": ("cifar-10-batches-py/", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"),
    "cifar100": ("cifar-100-python/", "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"),
    "caltech101": ("caltech101/101_ObjectCategories/", "torchvision.datasets.Caltech101(download=True)"),
    "celeba": ("celeba/img_align_celeba/ and celeba/identity_CelebA.txt", "torchvision.datasets.CelebA(download=True) or the CelebA site"),
    "imagenette": ("imagenette2-160/", "torchvision.datasets.Imagenette(size='160px', download=True)"),
    "stanford-dogs": ("stanford-dogs/Images/<breed>/*.jpg", "http://vision.stanford.edu/aditya86/ImageNetDogs/images.tar"),
}
_SHOWN = 3  # unreadable images named in a message


def dataset_files_problem(name: str, root: Path) -> str | None:
    """None when the files a downloadable dataset needs are under `root`, else what to put where."""
    target, origin = EXPECTED_FILES[name]
    first = root / target.split(" ")[0]
    when = "FLAUDIT_OFFLINE is set, so it will not download" if not downloads_allowed() else "it downloads on first use where there is internet"
    return None if first.exists() else f"not found: put {target} under {root} (from {origin}); {when}"


def environment_problems(scenario: Scenario, *, device: str | None = None, load: bool = False) -> list[FieldError]:
    """Everything this machine lacks for `scenario`, one error per problem (key path: the key to change).

    Args:
        scenario: a valid scenario.
        device: the device the run will use (default: the scenario's `device`; `flaudit run --device`).
        load: also load the dataset, open an image folder's files and partition the data (imports torch).
    """
    problems: list[FieldError] = []
    owner = ""
    missing = device_missing(device or scenario.device)
    if missing:
        problems.append(FieldError(owner, "device", missing))
    data_problem = _dataset_problem(scenario)
    if data_problem:
        problems.append(FieldError(owner, "data.dataset", data_problem))
    elif load:
        problems += [FieldError(owner, key, text) for key, text in _loaded_problems(scenario)]
    return problems


def check_before_run(scenario: Scenario, *, device: str | None = None) -> None:
    """Refuse, before the federation, a run this machine cannot start (see `environment_problems`).

    Raises:
        FieldError: every problem at once, each naming the scenario's key.
    """
    problems = environment_problems(scenario, device=device, load=True)
    if problems:
        raise combine(problems)


def device_missing(name: str) -> str | None:
    """None when device `name` is present here (`flaudit.device.device_problem`), else why not; torch
    is imported only for a GPU device."""
    if name in ("auto", "cpu"):  # auto falls back to the CPU; neither needs torch to say so
        return None
    from flaudit.device import device_problem

    return device_problem(name)


def _dataset_problem(scenario: Scenario) -> str | None:
    """Whether the dataset's files are here (or can be downloaded), without loading it."""
    name = scenario.data.dataset
    root = Path(scenario.data.root).expanduser()
    if name in EMBEDDED:
        return None
    if name.startswith("imagefolder:"):
        return _image_folder_problem(Path(name.split(":", 1)[1]).expanduser(), "imagefolder")
    if name == "stanford-dogs":  # never downloaded: an image folder to provide
        images = root / "stanford-dogs" / "Images"
        return None if images.is_dir() else f"'stanford-dogs' is unavailable: {dataset_files_problem(name, root)}"
    problem = dataset_files_problem(name, root)
    return f"{name!r} is unavailable: {problem}" if problem and not downloads_allowed() else None


def _image_folder_problem(path: Path, kind: str) -> str | None:
    if not path.is_dir():
        return f"{kind} is unavailable: {path} is not a folder; it must hold one sub-folder of images per class"
    try:
        classes = [entry for entry in path.iterdir() if entry.is_dir()]
        if not any(item.is_file() for folder in classes for item in folder.iterdir()):
            return f"{kind} is unavailable: {path} holds no images in class sub-folders"
    except OSError as err:
        return f"{kind} is unavailable: {path} cannot be read ({err.strerror or err})"
    return None


def _loaded_problems(scenario: Scenario) -> list[tuple[str, str]]:
    """The dataset loads, its images can be read, and every client gets a partition."""
    from fl_sim.data import load_dataset, partition_indices
    from flaudit.errors import DatasetUnavailableError

    try:
        bundle = load_dataset(scenario.data)
    except DatasetUnavailableError as err:
        return [("data.dataset", str(err))]
    except (OSError, ValueError, RuntimeError) as err:  # a corrupt first image, an unreadable folder
        return [("data.dataset", f"unavailable: {scenario.data.dataset} cannot be loaded ({type(err).__name__}: {err})")]
    problems = []
    unreadable = _unreadable_images(bundle.train)
    if unreadable:
        problems.append(("data.dataset", unreadable))
    fed = scenario.federation
    try:
        partition_indices(bundle.train_labels, clients=fed.clients, scheme=scenario.data.partition, alpha=scenario.data.alpha, seed=fed.seed)
    except DatasetUnavailableError as err:
        problems.append(("federation.clients", str(err)))
    return problems


def _unreadable_images(dataset: object) -> str | None:
    """The image files of a folder dataset that are not images (training would stop at them)."""
    from PIL import Image

    samples = getattr(getattr(dataset, "dataset", dataset), "samples", None)  # ImageFolder, or a Subset of one
    if not samples:
        return None
    bad = []
    for path, _ in samples:
        try:
            with Image.open(path) as image:
                image.verify()
        except (OSError, SyntaxError, ValueError) as err:  # not an image: OSError; some broken headers: SyntaxError
            bad.append(f"{path} ({type(err).__name__})")
    if not bad:
        return None
    more = f" and {len(bad) - _SHOWN} more" if len(bad) > _SHOWN else ""
    return f"{len(bad)} image file(s) cannot be read: {', '.join(bad[:_SHOWN])}{more}; remove or replace them"


__all__ = ["EMBEDDED", "EXPECTED_FILES", "check_before_run", "dataset_files_problem", "device_missing", "environment_problems"]
