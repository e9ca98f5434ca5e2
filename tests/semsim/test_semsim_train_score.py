"""Training reduces the triplet loss; checkpoints load with weights_only; scoring pairs by name."""

from __future__ import annotations

import random
import re
import shutil
from pathlib import Path

import pytest
import torch

from flaudit.errors import CaptureCorruptError, WeightsUnavailableError
from semsim.data import Annotation, load_image, save_image
from semsim.model import BackboneSpec, build_backbone, load_checkpoint
from semsim.score import load_scorer, pair_by_name, semsim
from semsim.train import TrainConfig, _ImageBank, _triplet_ids, build_triplets, evaluate_triplets, train_semsim

CONFIG = TrainConfig(backbone="lenet", width=8, input_size=16, epochs=12, batch_size=8, lr=0.05, val_fraction=0.25, device="cpu", pretrained="none")



def _train(tmp_path: Path, annotations: list[Annotation]):  # type: ignore[no-untyped-def]
    return train_semsim(annotations, config=CONFIG, out=tmp_path / "semsim.pt")


def test_training_reduces_triplet_loss_and_checkpoint_is_weights_only(tmp_path: Path, synthetic_factory) -> None:  # type: ignore[no-untyped-def]
    annotations = synthetic_factory(tmp_path / "data", originals=8)
    result = _train(tmp_path, annotations)
    # Loss of the same training triplets under the untrained and the trained network.
    triplets = build_triplets([a for a in annotations], seed=0)
    model = load_checkpoint(result.path)
    bank = _ImageBank([p for a in annotations for p in (a.original, a.reconstruction)], model.preprocess)
    ids = _triplet_ids(bank, triplets)
    untrained, _ = build_backbone(model.spec, pretrained="none", seed=CONFIG.seed)
    before = evaluate_triplets(untrained, bank.tensor, ids, margin=1.0)
    after = evaluate_triplets(model.network, bank.tensor, ids, margin=1.0)
    assert after["loss"] < 0.6 * before["loss"], (before, after)
    assert after["accuracy"] >= 0.9
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert "val_loss" in result.history[0]

    raw = torch.load(result.path, weights_only=True)
    assert raw["init"] == "scratch"
    assert raw["preprocess"]["input_size"] == 16 and len(raw["preprocess"]["mean"]) == 3
    assert raw["info"]["val_originals"] == 2 and raw["info"]["train_originals"] == 6
    assert raw["info"]["config"]["margin"] == 1.0


def test_checkpoint_errors(tmp_path: Path) -> None:
    with pytest.raises(WeightsUnavailableError, match="flaudit semsim train"):
        load_checkpoint(tmp_path / "none.pt")
    bad = tmp_path / "bad.pt"
    torch.save({"format": "other"}, bad)
    with pytest.raises(CaptureCorruptError):
        load_checkpoint(bad)


def test_imagenet_required_but_absent(torch_home: Path) -> None:
    # torch_home: an empty private TORCH_HOME (tests/conftest.py), so the weights are absent on every machine.
    with pytest.raises(WeightsUnavailableError, match=re.escape(f"put resnet18-f37072fd.pth (torchvision's) at {torch_home / 'resnet18-f37072fd.pth'}")):
        build_backbone(BackboneSpec("resnet18", width=64), pretrained="imagenet")
    _, init = build_backbone(BackboneSpec("resnet18", width=64), pretrained="auto")
    assert init == "scratch"
    _, init = build_backbone(BackboneSpec("resnet18", width=8), pretrained="auto")
    assert init == "scratch"


def test_imagenet_weights_present_are_loaded(torch_home: Path) -> None:
    """A stand-in for torchvision's resnet18 file (random, seeded) where the real one goes: its weights are used."""
    import torchvision

    torch.manual_seed(0)
    stand_in = torchvision.models.resnet18().state_dict()
    torch.save(stand_in, torch_home / "resnet18-f37072fd.pth")
    net, init = build_backbone(BackboneSpec("resnet18", width=64, input_size=32), pretrained="imagenet", seed=1)
    assert init == "imagenet"
    own = net.state_dict()
    # The 32-px CIFAR stem's 3x3 conv1 cannot take the 7x7 kernel; every other tensor (fc is dropped) is the file's.
    assert own["conv1.weight"].shape == (64, 3, 3, 3)
    transferred = [k for k in own if k in stand_in and own[k].shape == stand_in[k].shape]
    assert len(transferred) == len(own) - 1
    assert all(torch.equal(own[k], stand_in[k]) for k in transferred)
    _, init = build_backbone(BackboneSpec("resnet18", width=64), pretrained="auto")
    assert init == "imagenet"


def _checkpoint(tmp_path: Path) -> dict:  # type: ignore[type-arg]
    from semsim.model import IMAGENET_MEAN, IMAGENET_STD, Preprocess, checkpoint_dict

    spec = BackboneSpec("lenet", width=4, input_size=16)
    net, init = build_backbone(spec, pretrained="none", seed=0)
    return checkpoint_dict(net, spec, Preprocess(16, 3, IMAGENET_MEAN, IMAGENET_STD), init=init, info={})


def test_score_pairs_by_name_not_listing_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    g = torch.Generator().manual_seed(0)
    ori_dir, rec_dir = tmp_path / "ori", tmp_path / "rec"
    keys = [f"{i}_{i % 4}" for i in range(12)]
    for key in keys:
        save_image(ori_dir / f"{key}_ori.png", torch.rand(3, 16, 16, generator=g))
        save_image(rec_dir / f"{key}_rec.png", torch.rand(3, 16, 16, generator=g))
    save_image(ori_dir / "99_1_ori.png", torch.rand(3, 16, 16, generator=g))  # no partner
    save_image(rec_dir / "stray.png", torch.rand(3, 16, 16, generator=g))
    checkpoint = _checkpoint(tmp_path)
    expected = semsim(
        torch.stack([load_image(ori_dir / f"{k}_ori.png") for k in keys]),
        torch.stack([load_image(rec_dir / f"{k}_rec.png") for k in keys]),
        checkpoint,
    )
    original_iterdir = Path.iterdir
    for order in ("reversed", "shuffled"):
        def iterdir(self: Path, order: str = order):  # type: ignore[no-untyped-def]
            items = list(original_iterdir(self))
            items.sort(reverse=True) if order == "reversed" else random.Random(5).shuffle(items)
            return iter(items)

        monkeypatch.setattr(Path, "iterdir", iterdir)
        pairs, problems = pair_by_name(ori_dir, rec_dir)
        assert [p.key for p in pairs] == keys  # natural order: 10 after 9
        assert all(p.original.name[: -len("_ori.png")] == p.reconstruction.name[: -len("_rec.png")] for p in pairs)
        assert sorted(Path(p.path).name for p in problems) == ["99_1_ori.png", "stray.png"]
        got = semsim(ori_dir, rec_dir, checkpoint)
        assert torch.allclose(got, expected, atol=1e-6)
    monkeypatch.undo()
    # Sanity: scoring in listing order of a shuffled folder would differ (the check above can fail).
    shuffled = semsim(
        torch.stack([load_image(ori_dir / f"{k}_ori.png") for k in keys]),
        torch.stack([load_image(rec_dir / f"{k}_rec.png") for k in reversed(keys)]),
        checkpoint,
    )
    assert not torch.allclose(shuffled, expected)


def test_scorer_matches_semsim_and_adapts_inputs(tmp_path: Path) -> None:
    checkpoint = _checkpoint(tmp_path)
    scorer = load_scorer(checkpoint)
    ori = torch.rand(5, 1, 8, 8)  # grey, another size: the checkpoint's preprocessing adapts it
    rec = torch.rand(5, 1, 8, 8)
    d = scorer(ori, rec)
    assert d.shape == (5,) and bool((d >= 0).all()) and bool((d <= 2 + 1e-6).all())
    assert torch.allclose(scorer(ori, ori), torch.zeros(5), atol=1e-5)
    assert torch.allclose(d, semsim(ori, rec, checkpoint))


def test_trained_semsim_ranks_recognisable_closer(tmp_path: Path, synthetic_factory) -> None:  # type: ignore[no-untyped-def]
    annotations = synthetic_factory(tmp_path / "data", originals=8)
    result = _train(tmp_path, annotations)
    fresh = synthetic_factory(tmp_path / "fresh", originals=4, seed=99)  # unseen originals
    d = semsim([a.original for a in fresh], [a.reconstruction for a in fresh], result.path)
    good = torch.tensor([a.recognisable for a in fresh])
    assert d[good].mean() < d[~good].mean()
