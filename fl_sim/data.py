"""Datasets by name and their partitioning across clients.

Embedded datasets ship with a dependency and work offline: `digits` (scikit-learn's 1,797
8x8 handwritten digits, 10 classes) and `lfw-faces` (scikit-image's LFW subset: 200 25x25
grey images, 100 faces and 100 non-faces, 2 classes). The torchvision datasets download on
first use into `data.root`; where that cannot happen, `DatasetUnavailableError` says what to
put where. Images are float tensors in [0, 1]; normalisation (the public `mean`/`std`) is
applied by whoever feeds the model.
"""

from __future__ import annotations

import functools
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from flaudit.errors import DatasetUnavailableError
from flaudit.offline import downloads_allowed
from flaudit.registry import Registry
from fl_sim.preflight import EMBEDDED, EXPECTED_FILES, dataset_files_problem
from fl_sim.scenario import DATASET_NAMES, DataConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class DatasetBundle:
    """A dataset ready for the federation.

    Args:
        name: registry name.
        train: items are (image (C, H, W) float in [0, 1], label int).
        test: held-out split for the server's evaluation.
        train_labels: labels of `train`, for partitioning.
        num_classes: number of classes.
        shape: (C, H, W) of one image.
        mean: per-channel normalisation mean (public).
        std: per-channel normalisation std (public).
        identity: labels are identities (same/different judgements instead of classes).
        class_names: a name per class, for people (the annotation page's buttons); () when the
            classes have none.
    """

    name: str
    train: Dataset
    test: Dataset
    train_labels: np.ndarray
    num_classes: int
    shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    identity: bool = False
    class_names: tuple[str, ...] = ()

    def images(self, indices: np.ndarray | torch.Tensor | list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Stack the training images and labels at `indices` (tensors in memory are indexed directly)."""
        index = torch.as_tensor(np.asarray(indices), dtype=torch.long)
        if isinstance(self.train, TensorImages):
            return self.train.images[index], self.train.labels[index]
        items = [self.train[int(i)] for i in index]
        return torch.stack([x for x, _ in items]), torch.tensor([int(y) for _, y in items], dtype=torch.long)


class TensorImages(Dataset):
    """Images and labels held in memory."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images = images
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], int(self.labels[index])


DATASETS: Registry[Callable[[DataConfig], DatasetBundle]] = Registry("dataset")


def load_dataset(config: DataConfig) -> DatasetBundle:
    """Load the dataset `config.dataset` names (cached per process)."""
    return _load_cached(config)


@functools.lru_cache(maxsize=4)
def _load_cached(config: DataConfig) -> DatasetBundle:
    name = config.dataset
    if name.startswith("imagefolder:"):
        return _imagefolder(config, Path(name.split(":", 1)[1]).expanduser(), name="imagefolder")
    return DATASETS.get(name)(config)


def dataset_availability(root: str = DataConfig.root) -> dict[str, str | None]:
    """For every registered dataset: None when it loads here, else why not (for `flaudit doctor`)."""
    status: dict[str, str | None] = {}
    for name in DATASETS:
        try:
            if name in EMBEDDED:
                DATASETS.get(name)(DataConfig(dataset=name, root=root))
                status[name] = None
            else:
                status[name] = dataset_files_problem(name, Path(root).expanduser())
        except DatasetUnavailableError as err:
            status[name] = str(err)
    return status


# --- partitioning ----------------------------------------------------------------------------------


def partition_indices(labels: np.ndarray, *, clients: int, scheme: str, alpha: float, seed: int, min_size: int = 2) -> list[np.ndarray]:
    """Split example indices among clients, reproducibly.

    `iid`: a seeded permutation cut into near-equal parts. `dirichlet`: for each class, its
    examples are split by proportions drawn from Dirichlet(alpha) (Hsu et al. 2019), redrawn
    until every client holds at least `min_size` examples.
    """
    rng = np.random.default_rng(seed)
    n = len(labels)
    if clients * min_size > n:
        raise DatasetUnavailableError(f"{n} training examples cannot give {clients} clients {min_size} each; use fewer clients")
    if scheme == "iid":
        return [np.sort(part) for part in np.array_split(rng.permutation(n), clients)]
    if scheme != "dirichlet":
        raise ValueError(f"unknown partition scheme {scheme!r}")
    classes = np.unique(labels)
    for _ in range(1000):
        parts: list[list[int]] = [[] for _ in range(clients)]
        for cls in classes:
            members = rng.permutation(np.flatnonzero(labels == cls))
            shares = rng.dirichlet(np.full(clients, alpha))
            cuts = (np.cumsum(shares)[:-1] * len(members)).astype(int)
            for client, chunk in enumerate(np.split(members, cuts)):
                parts[client].extend(chunk.tolist())
        if min(len(p) for p in parts) >= min_size:
            return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]
    raise DatasetUnavailableError(f"Dirichlet(alpha={alpha}) left a client with fewer than {min_size} examples in 1000 draws; raise alpha or use fewer clients")


# --- embedded datasets -------------------------------------------------------------------------------


def _split_tensors(images: torch.Tensor, labels: torch.Tensor, config: DataConfig, name: str, class_names: tuple[str, ...], *,
                   seed: int = 0) -> DatasetBundle:
    images = _resize(images, config.image_size)
    # A fixed, stratified hold-out split: the server's test set never changes with the run's seed.
    from sklearn.model_selection import train_test_split

    train_idx, test_idx = train_test_split(
        np.arange(len(labels)), test_size=config.test_fraction, random_state=seed, stratify=labels.numpy()
    )
    if config.max_examples is not None:
        train_idx = train_idx[: config.max_examples]
    train = TensorImages(images[train_idx], labels[train_idx])
    mean = tuple(float(v) for v in train.images.mean(dim=(0, 2, 3)))
    std = tuple(float(v) for v in train.images.std(dim=(0, 2, 3)))
    return DatasetBundle(
        name=name, train=train, test=TensorImages(images[test_idx], labels[test_idx]),
        train_labels=labels[train_idx].numpy(), num_classes=len(class_names),
        shape=tuple(images.shape[1:]), mean=mean, std=std, class_names=class_names,  # type: ignore[arg-type]
    )


def _resize(images: torch.Tensor, size: int | None) -> torch.Tensor:
    if size is None or images.shape[-1] == size:
        return images
    return torch.nn.functional.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)


@DATASETS.register("digits")
def _digits(config: DataConfig) -> DatasetBundle:
    from sklearn.datasets import load_digits

    raw = load_digits()
    images = torch.tensor(raw.images, dtype=torch.float32).unsqueeze(1) / 16.0
    return _split_tensors(images, torch.tensor(raw.target, dtype=torch.long), config, "digits", tuple(str(digit) for digit in range(10)))


@DATASETS.register("lfw-faces")
def _lfw_faces(config: DataConfig) -> DatasetBundle:
    from skimage.data import lfw_subset

    images = torch.tensor(np.asarray(lfw_subset()), dtype=torch.float32).unsqueeze(1)
    # scikit-image's subset: the first 100 are faces, the last 100 non-faces.
    labels = torch.cat([torch.zeros(100, dtype=torch.long), torch.ones(100, dtype=torch.long)])
    return _split_tensors(images.clamp(0, 1), labels, config, "lfw-faces", ("face", "not a face"))



# --- torchvision datasets ----------------------------------------------------------------------------

def _unavailable(name: str, root: Path, err: Exception) -> DatasetUnavailableError:
    target, origin = EXPECTED_FILES[name]
    return DatasetUnavailableError(
        f"dataset {name!r} is unavailable: could not load or download it ({type(err).__name__}: {err}). "
        f"Put {target} under {root} (from {origin}), or choose an embedded dataset: {', '.join(EMBEDDED)}"
    )


def _transform(size: int | None, channels: int | None = None) -> Callable:
    from torchvision import transforms

    steps: list[Callable] = []
    if channels == 3:
        steps.append(transforms.Lambda(lambda img: img.convert("RGB")))
    if size is not None:
        steps += [transforms.Resize(size), transforms.CenterCrop(size)]
    steps.append(transforms.ToTensor())
    return transforms.Compose(steps)


def _download(fn: Callable[[bool], Dataset], name: str, root: Path) -> Dataset:
    """Load with download=False when the files are there, else try to download (bounded wait)."""
    try:
        return fn(False)
    except Exception as err:
        if not downloads_allowed():
            raise _unavailable(name, root, err) from None
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(30)
    try:
        return fn(True)
    except Exception as err:  # no internet, checksum failure, partial archive, ...
        raise _unavailable(name, root, err) from None
    finally:
        socket.setdefaulttimeout(previous)


def _bundle(name: str, train: Dataset, test: Dataset, labels: np.ndarray, num_classes: int, config: DataConfig,
            mean: tuple[float, ...], std: tuple[float, ...], identity: bool = False, class_names: Sequence[str] = ()) -> DatasetBundle:
    if config.max_examples is not None and config.max_examples < len(labels):
        keep = np.arange(config.max_examples)
        train, labels = Subset(train, keep.tolist()), labels[keep]
    shape = tuple(train[0][0].shape)
    return DatasetBundle(name, train, test, np.asarray(labels), num_classes, shape, mean, std, identity,  # type: ignore[arg-type]
                         tuple(str(c) for c in class_names))


def _cifar(name: str, config: DataConfig) -> DatasetBundle:
    """CIFAR-10 / CIFAR-100 with their official train/test splits and the usual channel statistics."""
    from torchvision.datasets import CIFAR10, CIFAR100

    cls, classes, mean, std = {
        "cifar10": (CIFAR10, 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
        "cifar100": (CIFAR100, 100, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    }[name]
    root = Path(config.root).expanduser()
    t = _transform(config.image_size)
    train = _download(lambda d: cls(str(root), train=True, transform=t, download=d), name, root)
    test = _download(lambda d: cls(str(root), train=False, transform=t, download=d), name, root)
    return _bundle(name, train, test, np.asarray(train.targets), classes, config, mean, std, class_names=train.classes)


DATASETS.add("cifar10", lambda config: _cifar("cifar10", config))
DATASETS.add("cifar100", lambda config: _cifar("cifar100", config))


def _holdout(dataset: Dataset, labels: np.ndarray, fraction: float) -> tuple[Subset, Subset, np.ndarray]:
    rng = np.random.default_rng(0)
    order = rng.permutation(len(labels))
    cut = int(len(labels) * (1 - fraction))
    return Subset(dataset, order[:cut].tolist()), Subset(dataset, order[cut:].tolist()), labels[order[:cut]]


@DATASETS.register("caltech101")
def _caltech101(config: DataConfig) -> DatasetBundle:
    from torchvision.datasets import Caltech101

    root = Path(config.root).expanduser()
    full = _download(lambda d: Caltech101(str(root), transform=_transform(config.image_size or 64, 3), download=d), "caltech101", root)
    train, test, labels = _holdout(full, np.asarray(full.y), config.test_fraction)
    return _bundle("caltech101", train, test, labels, 101, config, IMAGENET_MEAN, IMAGENET_STD, class_names=full.categories)


@DATASETS.register("celeba")
def _celeba(config: DataConfig) -> DatasetBundle:
    from torchvision.datasets import CelebA

    root = Path(config.root).expanduser()
    t = _transform(config.image_size or 64)
    train = _download(lambda d: CelebA(str(root), split="train", target_type="identity", transform=t, download=d), "celeba", root)
    test = CelebA(str(root), split="test", target_type="identity", transform=t)
    labels = train.identity.squeeze(1).numpy() - 1  # CelebA identities are 1-based
    return _bundle("celeba", train, test, labels, int(labels.max()) + 1, config, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), identity=True)


@DATASETS.register("imagenette")
def _imagenette(config: DataConfig) -> DatasetBundle:
    from torchvision.datasets import Imagenette

    root = Path(config.root).expanduser()
    t = _transform(config.image_size or 64, 3)
    train = _download(lambda d: Imagenette(str(root), split="train", size="160px", transform=t, download=d), "imagenette", root)
    test = Imagenette(str(root), split="val", size="160px", transform=t)
    labels = np.asarray([label for _, label in train._samples])
    # Each class is a tuple of synonyms ("tench", "Tinca tinca"); the first is the common name.
    names = [c[0] if isinstance(c, tuple) else c for c in train.classes]
    return _bundle("imagenette", train, test, labels, 10, config, IMAGENET_MEAN, IMAGENET_STD, class_names=names)


@DATASETS.register("stanford-dogs")
def _stanford_dogs(config: DataConfig) -> DatasetBundle:
    root = Path(config.root).expanduser() / "stanford-dogs" / "Images"
    if not root.is_dir():
        raise _unavailable("stanford-dogs", Path(config.root).expanduser(), FileNotFoundError(str(root)))
    return _imagefolder(config, root, name="stanford-dogs")


def _imagefolder(config: DataConfig, path: Path, *, name: str) -> DatasetBundle:
    from torchvision.datasets import ImageFolder

    if not path.is_dir():
        raise DatasetUnavailableError(f"imagefolder: {path} is not a folder; it must hold one sub-folder of images per class")
    full = ImageFolder(str(path), transform=_transform(config.image_size or 64, 3))
    if not full.samples:
        raise DatasetUnavailableError(f"imagefolder: {path} holds no images in class sub-folders")
    train, test, labels = _holdout(full, np.asarray(full.targets), config.test_fraction)
    return _bundle(name, train, test, labels, len(full.classes), config, IMAGENET_MEAN, IMAGENET_STD, class_names=full.classes)

# The scenario schema names the datasets without importing this module; both lists must agree.
assert DATASETS.names() == DATASET_NAMES, (DATASETS.names(), DATASET_NAMES)
