"""LPIPS and FID when their weights are present (stand-in files where the real ones go) or their package is missing.

The real files are ImageNet AlexNet and pytorch-fid's FID Inception; the tests cannot download
them (tests/conftest.py keeps them offline), so they put randomly initialised networks of the
same architecture, seeded, at `ALEXNET.path` and `FID_INCEPTION.path` in a private TORCH_HOME.
What is checked is the path the product takes when the files are there: the networks load from
those files, the scorer reports the metrics, nothing is listed as unavailable.
"""

from __future__ import annotations

import math
import shutil
import sys
from pathlib import Path

import pytest
import torch
import torchvision

from audit.functional import ALEXNET, FID_INCEPTION, fid, inception_features, load_inception, load_lpips, lpips
from audit.scorer import build_metrics, score_run
from fl_sim.run_store import RunStore
from fl_sim.vault import GroundTruth
from flaudit.rundir import CaptureKey
from flaudit.io import atomic_write_json, save_tensors


def _alexnet_stand_in(seed: int) -> torchvision.models.AlexNet:
    torch.manual_seed(seed)
    return torchvision.models.alexnet()


def _fid_inception_stand_in(seed: int) -> torch.nn.Module:
    """pytorch-fid's own FID Inception graph (`fid_inception_v3`), with random weights instead of the download."""
    import pytorch_fid.inception as fid_inception

    not_downloaded = object()

    def keep_random_init(self, state_dict, *args, **kwargs):  # type: ignore[no-untyped-def]
        assert state_dict is not_downloaded
        return None

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fid_inception, "load_state_dict_from_url", lambda *args, **kwargs: not_downloaded)
        mp.setattr(torchvision.models.Inception3, "load_state_dict", keep_random_init)
        torch.manual_seed(seed)
        net = fid_inception.fid_inception_v3()
    # torch's default init shrinks the signal layer by layer to nothing over Inception's depth;
    # He init keeps the pool features varied, so a distance between image sets is not trivially 0.
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=g) * math.sqrt(2.0 / fan_in))
    return net


@pytest.fixture(scope="module")
def stand_in_home(tmp_path_factory):  # type: ignore[no-untyped-def]
    """A TORCH_HOME whose hub/checkpoints holds the stand-in AlexNet and FID Inception files."""
    home = tmp_path_factory.mktemp("torch_home")
    checkpoints = home / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.save(_alexnet_stand_in(0).state_dict(), checkpoints / ALEXNET.filename)
    torch.save(_fid_inception_stand_in(0).state_dict(), checkpoints / FID_INCEPTION.filename)
    yield home
    shutil.rmtree(home, ignore_errors=True)  # some 340 MB


@pytest.fixture
def weights_present(stand_in_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(stand_in_home))
    assert ALEXNET.path.is_file() and FID_INCEPTION.path.is_file()
    return stand_in_home


def _write_run(root: Path, digits, rounds: tuple[int, ...]) -> RunStore:  # type: ignore[no-untyped-def]
    """One client, two 8x8 digits per round. Round 1: exact reconstructions (shuffled); round 2: noisy."""
    _, _, test_x, test_y = digits
    store = RunStore(root)
    store.create("name: small\n", seed=0)
    g = torch.Generator().manual_seed(3)
    for rnd in rounds:
        images, labels = test_x[2 * rnd : 2 * rnd + 2], test_y[2 * rnd : 2 * rnd + 2]
        key = CaptureKey(rnd, 0)
        store.vault.write(GroundTruth(rnd, 0, images, labels, torch.arange(2)))
        rec = images.clone() if rnd == 1 else (images + 0.3 * torch.randn(images.shape, generator=g)).clamp(0, 1)
        folder = store.reconstructions("dlg").folder(key)
        save_tensors(folder / "reconstruction.safetensors", {"images": rec.flip(0), "labels": labels.flip(0)})
        atomic_write_json(folder / "record.json", {"attack": "dlg", "iterations": 1, "labels_known": False, "defenses": []})
    store.seal(store.files())
    return store


@pytest.fixture(scope="module")
def small_run(digits, tmp_path_factory) -> RunStore:  # type: ignore[no-untyped-def]
    return _write_run(tmp_path_factory.mktemp("run") / "small", digits, (1, 2))


@pytest.fixture(scope="module")
def noisy_round(digits, tmp_path_factory) -> RunStore:  # type: ignore[no-untyped-def]
    """Round 2 of `small_run` alone: a 2048-dim FID costs two 2048x2048 matrix square roots per round."""
    return _write_run(tmp_path_factory.mktemp("run") / "noisy", digits, (2,))


def _images(seed: int, n: int = 3, channels: int = 3, side: int = 32) -> torch.Tensor:
    return torch.rand(n, channels, side, side, generator=torch.Generator().manual_seed(seed))


# --- LPIPS ---------------------------------------------------------------------------------------------


def test_lpips_loads_the_backbone_file_and_matches_the_package(weights_present, network_attempts) -> None:
    import lpips as lpips_package

    net = load_lpips(download=False)
    # Reference: the package's network with a random trunk, into which the stand-in AlexNet's
    # feature layers are copied by hand (lpips.pretrained_networks.alexnet slices features[i] as str(i)).
    torch.manual_seed(99)
    ref = lpips_package.LPIPS(net="alex", version="0.1", pnet_rand=True, verbose=False).eval()
    features = _alexnet_stand_in(0).features
    for k in range(1, 6):
        for name, module in getattr(ref.net, f"slice{k}").named_children():
            module.load_state_dict(features[int(name)].state_dict())
    x, y = _images(1), _images(2)
    ours = lpips(y, x, net=net)
    with torch.no_grad():
        expected = ref(2 * y - 1, 2 * x - 1).flatten().double()
    assert torch.allclose(ours, expected, atol=1e-6)
    assert bool(torch.isfinite(ours).all()) and bool((ours > 1e-3).all())
    assert torch.allclose(lpips(x, x, net=net), torch.zeros(3, dtype=torch.float64), atol=1e-6)
    # ... and it is the file that made the difference: another random trunk gives other values.
    other = lpips(y, x, net=load_lpips(pretrained_backbone=False))
    assert not torch.allclose(ours, other, atol=1e-4)
    assert network_attempts == []


def test_scorer_reports_lpips_when_the_backbone_is_present(weights_present, small_run) -> None:
    built, unavailable = build_metrics(("mse", "lpips"), device=torch.device("cpu"), download=False)
    assert set(built) == {"mse", "lpips"} and unavailable == {}
    audits = score_run(small_run, metrics=("mse", "lpips"), device="cpu", download=False, write=False).audits
    exact, noisy = audits
    for audit in audits:
        assert audit.unavailable == {} and audit.metrics["lpips"].count == 2
        assert math.isfinite(audit.metrics["lpips"].mean) and not audit.metrics["lpips"].higher_is_leakier
    assert exact.metrics["lpips"].mean == pytest.approx(0.0, abs=1e-6)  # alignment undid the flip
    assert noisy.metrics["lpips"].mean > 0.01


# --- FID -----------------------------------------------------------------------------------------------


def test_scorer_reports_fid_when_the_inception_file_is_present(weights_present, noisy_round) -> None:
    """2048-dim pool features (the default), one round of two noisy reconstructions: a finite, positive FID."""
    model = load_inception(dims=2048, download=False)
    feats = inception_features(noisy_round.vault.read(CaptureKey(2, 0)).images, model=model)
    assert feats.shape == (2, 2048) and float(feats.std(0).mean()) > 1e-3  # the stand-in's features vary
    audits = score_run(noisy_round, metrics=("mse", "fid"), device="cpu", download=False, write=False, fid_dims=2048).audits
    assert len(audits) == 1
    noisy = audits[0]
    assert noisy.unavailable == {} and noisy.fid is not None
    assert (noisy.fid.dims, noisy.fid.num_real, noisy.fid.num_fake) == (2048, 2, 2)
    assert math.isfinite(noisy.fid.value) and noisy.fid.value > 1e-3
    assert noisy.metrics["mse"].mean > 0.01


def test_fid_at_64_dims_with_the_inception_file_present(weights_present, small_run) -> None:
    model = load_inception(dims=64, download=False)
    x = small_run.vault.read(CaptureKey(2, 0)).images
    # Checked before any covariance: the unpooled features would ask numpy for a 341,056² matrix.
    assert inception_features(x, model=model).shape == (2, 64)
    assert abs(fid(x, x, model=model).value) < 1e-6
    audits = score_run(small_run, metrics=("mse", "fid"), device="cpu", download=False, write=False, fid_dims=64).audits
    assert all("fid" not in a.unavailable and a.fid is not None and a.fid.dims == 64 for a in audits)
    assert audits[1].fid.value > audits[0].fid.value


# --- a missing package --------------------------------------------------------------------------------


def test_missing_pytorch_fid_package_makes_fid_unavailable(weights_present, small_run, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "pytorch_fid", None)
    monkeypatch.setitem(sys.modules, "pytorch_fid.inception", None)
    audits = score_run(small_run, metrics=("mse", "psnr", "fid"), device="cpu", download=False, write=False).audits
    for audit in audits:
        assert set(audit.unavailable) == {"fid"} and "pip install pytorch-fid" in audit.unavailable["fid"]
        assert audit.fid is None
        assert set(audit.metrics) == {"mse", "psnr"} and audit.metrics["mse"].count == 2
    assert audits[0].metrics["mse"].mean == 0.0 and audits[1].metrics["mse"].mean > 0.01


def test_missing_lpips_package_makes_lpips_unavailable(weights_present, small_run, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "lpips", None)
    built, unavailable = build_metrics(("mse", "lpips"), device=torch.device("cpu"), download=False)
    assert set(built) == {"mse"} and set(unavailable) == {"lpips"} and "pip install lpips" in unavailable["lpips"]
    audits = score_run(small_run, metrics=("mse", "ssim", "lpips"), device="cpu", download=False, write=False).audits
    for audit in audits:
        assert set(audit.unavailable) == {"lpips"} and "pip install lpips" in audit.unavailable["lpips"]
        assert set(audit.metrics) == {"mse", "ssim"} and math.isfinite(audit.metrics["ssim"].mean)
    assert audits[0].metrics["ssim"].mean == pytest.approx(1.0)
