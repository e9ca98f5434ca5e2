"""Embedded datasets, partitioning, unavailable datasets, and the model zoo."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from flaudit.errors import DatasetUnavailableError
from fl_sim.data import dataset_availability, load_dataset, partition_indices
from flaudit.models import MODELS, LeNet, ModelSpec, build_model
from fl_sim.scenario import DataConfig


def test_digits_and_lfw_are_embedded():
    digits = load_dataset(DataConfig(dataset="digits"))
    assert digits.shape == (1, 8, 8) and digits.num_classes == 10
    assert len(digits.train) + len(digits.test) == 1797
    images, labels = digits.images([0, 5, 9])
    assert images.shape == (3, 1, 8, 8) and 0 <= float(images.min()) and float(images.max()) <= 1
    faces = load_dataset(DataConfig(dataset="lfw-faces", image_size=32))
    assert faces.shape == (1, 32, 32) and faces.num_classes == 2 and len(faces.train) == 160
    # Names for people (the annotation page's buttons).
    assert digits.class_names == tuple("0123456789") and faces.class_names == ("face", "not a face")


@pytest.mark.parametrize("scheme", ["iid", "dirichlet"])
def test_partitions_are_disjoint_complete_and_reproducible(scheme):
    labels = load_dataset(DataConfig()).train_labels
    parts = partition_indices(labels, clients=7, scheme=scheme, alpha=0.3, seed=11)
    joined = np.concatenate(parts)
    assert len(joined) == len(labels) and len(np.unique(joined)) == len(labels)
    again = partition_indices(labels, clients=7, scheme=scheme, alpha=0.3, seed=11)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again))
    other = partition_indices(labels, clients=7, scheme=scheme, alpha=0.3, seed=12)
    assert not all(np.array_equal(a, b) for a, b in zip(parts, other))


def test_dirichlet_small_alpha_skews_labels():
    labels = load_dataset(DataConfig()).train_labels
    iid = partition_indices(labels, clients=5, scheme="iid", alpha=1.0, seed=0)
    skew = partition_indices(labels, clients=5, scheme="dirichlet", alpha=0.05, seed=0)

    def top_share(parts):
        return np.mean([np.bincount(labels[p], minlength=10).max() / len(p) for p in parts])

    assert top_share(skew) > 2 * top_share(iid)


def test_unavailable_dataset_says_what_to_provide(tmp_path, network_attempts):
    # Offline (FLAUDIT_OFFLINE=1 in every test): the files are not there, so the clear error at once, no download tried.
    with pytest.raises(DatasetUnavailableError, match=r"'cifar10' is unavailable.*Put cifar-10-batches-py/ under " + re.escape(str(tmp_path))
                       + r" \(from https://www\.cs\.toronto\.edu/~kriz/cifar-10-python\.tar\.gz\), or choose an embedded dataset: digits, lfw-faces"):
        load_dataset(DataConfig(dataset="cifar10", root=str(tmp_path)))
    assert network_attempts == [] and list(tmp_path.iterdir()) == []
    # The default root is under HOME, which the tests point at a temporary folder: never the real cache.
    default_root = Path(DataConfig().root).expanduser()
    assert default_root == Path(os.environ["HOME"]) / ".cache" / "flaudit" / "datasets"
    with pytest.raises(DatasetUnavailableError, match=re.escape(f"under {default_root} ")):
        load_dataset(DataConfig(dataset="cifar100"))
    status = dataset_availability(str(tmp_path))
    assert status["digits"] is None and status["lfw-faces"] is None
    assert status["cifar100"] == (f"not found: put cifar-100-python/ under {tmp_path} (from https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz); "
                                  "FLAUDIT_OFFLINE is set, so it will not download")
    assert all(status[name] is not None for name in ("cifar10", "caltech101", "celeba", "imagenette", "stanford-dogs"))
    with pytest.raises(DatasetUnavailableError, match="not a folder"):
        load_dataset(DataConfig(dataset=f"imagefolder:{tmp_path / 'nothing'}"))
    assert network_attempts == []


def test_failed_dataset_download_is_unavailable_too(tmp_path, online):
    # Downloads allowed, no network: torchvision's download fails and the same clear error names the cause.
    with pytest.raises(DatasetUnavailableError, match=r"'cifar10' is unavailable: could not load or download it \(URLError: .*blocked in the tests"):
        load_dataset(DataConfig(dataset="cifar10", root=str(tmp_path / "data")))
    assert online and set(online) == {"www.cs.toronto.edu:443"}


def test_imagefolder(tmp_path):
    from PIL import Image

    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(5):
            Image.fromarray(np.full((20, 20, 3), 40 * i, dtype=np.uint8)).save(tmp_path / cls / f"{i}.png")
    bundle = load_dataset(DataConfig(dataset=f"imagefolder:{tmp_path}", image_size=16))
    assert bundle.num_classes == 2 and bundle.shape == (3, 16, 16) and len(bundle.train) == 8
    assert bundle.class_names == ("cat", "dog")


@pytest.mark.parametrize("name", MODELS.names())
@pytest.mark.parametrize("channels, size", [(1, 8), (3, 32)])
def test_models_take_any_size_and_channels(name, channels, size):
    model = build_model(ModelSpec(name, 7, channels, size, width=8 if name in ("convnet", "lenet") else None), seed=0)
    assert model(torch.rand(2, channels, size, size)).shape == (2, 7)


def test_lenet_is_dlgs_sigmoid_lenet():
    model = build_model(ModelSpec("lenet", 10, 3, 32), seed=0)
    assert isinstance(model, LeNet) and model.fc.in_features == 768
    assert sum(isinstance(m, torch.nn.Sigmoid) for m in model.modules()) == 3
    values = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert float(values.min()) >= -0.5 and float(values.max()) <= 0.5 and float(values.std()) > 0.25
    same = build_model(ModelSpec("lenet", 10, 3, 32), seed=0)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), same.parameters()))


def test_bn_switch():
    with_bn = build_model(ModelSpec("resnet20", 10, 3, 32, bn=True))
    without = build_model(ModelSpec("resnet20", 10, 3, 32, bn=False))
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in with_bn.modules())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in without.modules())


def test_the_torch_free_model_names_are_the_models_built() -> None:
    from flaudit.models import MODELS
    from fl_sim.scenario import MODEL_NAMES

    assert MODELS.names() == MODEL_NAMES
