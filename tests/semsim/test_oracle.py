"""The machine annotator on sklearn digits: accurate on clean data, recognises clean images, rejects noise."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from semsim.oracle import (
    ORACLE_FORMAT_VERSION,
    REJECT_KINDS,
    Oracle,
    candidate_classes,
    reject_examples,
    train_oracle,
)
from flaudit.io import save_tensors


def _noise_sets(n: int, side: int, *, seed: int) -> dict[str, torch.Tensor]:
    """Uniform noise and blurred noise (3x3 box filter: not the Gaussian blur the oracle trains on)."""
    g = torch.Generator().manual_seed(seed)
    uniform = torch.rand(n, 1, side, side, generator=g)
    blurred = F.avg_pool2d(F.pad(torch.rand(n, 1, side, side, generator=g), (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    return {"uniform": uniform, "blurred": blurred}


def _max_rate_over_classes(oracle: Oracle, images: torch.Tensor, num_classes: int = 10) -> float:
    """The worst case over true labels: every image labelled c, for each class c."""
    return max(float(oracle.recognised(images, torch.full((len(images),), c)).float().mean()) for c in range(num_classes))


def test_oracle_accuracy_recognition_and_noise(digits, digits_oracle) -> None:
    _, _, test_x, test_y = digits
    assert digits_oracle.config.reject_class and digits_oracle.config.format_version == ORACLE_FORMAT_VERSION
    assert digits_oracle.config.clean_accuracy >= 0.97
    assert digits_oracle.config.accuracy_split == "validation"
    assert digits_oracle.recognised(test_x, test_y).float().mean() >= 0.97
    assert digits_oracle.config.noise_reject_rate is not None and digits_oracle.config.noise_reject_rate >= 0.9
    noise = torch.rand(400, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    labels = torch.randint(0, 10, (400,), generator=torch.Generator().manual_seed(4))
    # A person says "can't tell" for noise; without the reject class this was chance (~0.1) and,
    # for the class the classifier favours, over 0.5.
    assert digits_oracle.recognised(noise, labels).float().mean() <= 0.05
    assert _max_rate_over_classes(digits_oracle, noise) <= 0.10
    blank = torch.zeros(50, 1, 8, 8)
    assert digits_oracle.recognised(blank, torch.arange(50) % 10).float().mean() <= 0.05


@pytest.mark.parametrize("side", [8, 16])
def test_oracle_rejects_noise_on_fl_sim_digits(side) -> None:
    """Through fl_sim.data: clean held-out >= 97% recognised, noise <= 5% (<= 10% for the worst label).

    Training time is a benchmark, not a test: benchmarks/oracle_speed.py prints it."""
    from fl_sim.data import load_dataset
    from fl_sim.scenario import DataConfig

    bundle = load_dataset(DataConfig(dataset="digits", image_size=None if side == 8 else side))
    train_x, train_y = bundle.images(list(range(len(bundle.train))))
    test_x = torch.stack([bundle.test[i][0] for i in range(len(bundle.test))])
    test_y = torch.tensor([bundle.test[i][1] for i in range(len(bundle.test))])
    oracle = train_oracle(train_x, train_y, num_classes=10, val_images01=test_x, val_labels=test_y, epochs=10, net_width=16)
    assert oracle.recognised(test_x, test_y).float().mean() >= 0.97
    labels = torch.randint(0, 10, (1000,), generator=torch.Generator().manual_seed(5))
    for name, noise in _noise_sets(1000, side, seed=side).items():
        assert oracle.recognised(noise, labels).float().mean() <= 0.05, name
        assert _max_rate_over_classes(oracle, noise) <= 0.10, name


def test_recognition_falls_with_noise_share(digits, digits_oracle) -> None:
    """DLG-style partial reconstructions: a mostly clean digit is recognised, a faint one in noise is not."""
    _, _, test_x, test_y = digits
    noise = torch.rand(test_x.shape, generator=torch.Generator().manual_seed(6))
    rate = {a: float(digits_oracle.recognised(a * test_x + (1 - a) * noise, test_y).float().mean()) for a in (0.9, 0.5, 0.1)}
    assert rate[0.9] >= 0.9
    assert rate[0.9] > rate[0.5] > rate[0.1]
    assert rate[0.1] <= 0.05


def test_predict_reject_option(digits, digits_oracle) -> None:
    _, _, test_x, test_y = digits
    noise = torch.rand(200, 1, 8, 8, generator=torch.Generator().manual_seed(7))
    assert digits_oracle.reject_index == 10
    assert digits_oracle.logits(noise).shape == (200, 11)
    # Default: always a class, for callers that need one.
    assert digits_oracle.predict(noise).max() < 10
    assert (digits_oracle.predict(noise, allow_reject=True) == 10).float().mean() >= 0.9
    assert (digits_oracle.predict(test_x, allow_reject=True) == test_y).float().mean() >= 0.97
    cands = torch.tensor([[1, 4, 7]]).expand(200, 3)
    assert set(digits_oracle.predict(noise, candidates=cands).tolist()) <= {1, 4, 7}
    assert set(digits_oracle.predict(noise, candidates=cands, allow_reject=True).tolist()) <= {1, 4, 7, 10}


def test_reject_examples_shape_range_and_determinism() -> None:
    pool = torch.rand(30, 3, 12, 10)
    make = lambda kinds=REJECT_KINDS: reject_examples(  # noqa: E731
        64, pool=pool, mean=pool.mean(dim=(0, 2, 3)), generator=torch.Generator().manual_seed(1), kinds=kinds
    )
    out = make()
    assert out.shape == (64, 3, 12, 10) and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 1
    assert torch.equal(out, make())
    for kind in REJECT_KINDS:
        assert make((kind,)).shape == (64, 3, 12, 10)
    with pytest.raises(ValueError, match="unknown reject kinds"):
        make(("pink",))


def test_old_format_cache_is_retrained(digits, tmp_path) -> None:
    """An oracle cached before the reject class (no format_version in its metadata) is not reused."""
    train_x, train_y, _, _ = digits
    x, y = train_x[:200], train_y[:200]
    old = train_oracle(x, y, num_classes=10, epochs=1, net_width=8, reject_class=False)
    assert old.logits(x[:3]).shape == (3, 10) and old.reject_index is None
    legacy = json.loads(old.config.to_json())
    for key in ("reject_class", "format_version", "noise_reject_rate"):
        legacy.pop(key)
    path = tmp_path / "old.safetensors"
    save_tensors(path, dict(old.net.state_dict()), metadata={"oracle_config": json.dumps(legacy)})
    loaded = Oracle.load(path)
    assert loaded.config.format_version == 1 and not loaded.config.reject_class
    assert torch.equal(loaded.predict(x), old.predict(x))
    new = train_oracle(x, y, num_classes=10, cache_path=path, epochs=1, net_width=8)
    assert new.config.reject_class and new.config.format_version == ORACLE_FORMAT_VERSION
    assert Oracle.load(path).config == new.config


def test_oracle_cache_reused(digits, digits_oracle, tmp_path, monkeypatch) -> None:
    import semsim.oracle

    train_x, train_y, test_x, test_y = digits
    path = tmp_path / "o.safetensors"
    digits_oracle.save(path)
    saved = path.read_bytes()

    def no_training(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("the cached oracle was retrained")

    monkeypatch.setattr(semsim.oracle, "_train", no_training)
    again = train_oracle(train_x, train_y, num_classes=10, cache_path=path, val_images01=test_x, val_labels=test_y, epochs=10, net_width=16)
    assert path.read_bytes() == saved and not hasattr(again, "train_seconds")
    # Other training data: the fingerprint differs, so the cache is not taken (and training is asked for).
    with pytest.raises(AssertionError, match="retrained"):
        train_oracle(train_x[:-1], train_y[:-1], num_classes=10, cache_path=path, epochs=10, net_width=16)
    assert torch.equal(again.predict(test_x), digits_oracle.predict(test_x))
    loaded = Oracle.load(path)
    assert loaded.config == digits_oracle.config
    with pytest.raises(ValueError, match="trained on 1x8x8"):
        loaded.recognised(torch.rand(2, 3, 8, 8), torch.zeros(2, dtype=torch.int64))


def test_candidate_classes_deterministic_and_contain_truth() -> None:
    labels = torch.tensor([0, 5, 99, 42, 42])
    keys = torch.tensor([10, 11, 12, 13, 14])
    cands = candidate_classes(labels, num_classes=100, keys=keys, seed=7)
    assert cands.shape == (5, 20)
    assert torch.equal(cands, candidate_classes(labels, num_classes=100, keys=keys, seed=7))
    assert all(int(l) in row.tolist() for l, row in zip(labels, cands))
    assert all(len(set(row.tolist())) == 20 for row in cands)
    assert not torch.equal(cands[3], cands[4])  # same class, different images: different distractors
    assert candidate_classes(labels, num_classes=10).shape == (5, 10)


def test_identity_oracle_separates_same_from_different(digits) -> None:
    train_x, train_y, test_x, test_y = digits
    oracle = train_oracle(train_x[:600], train_y[:600], num_classes=10, mode="identity", val_images01=test_x,
                          val_labels=test_y, epochs=8)
    assert oracle.config.threshold is not None and oracle.config.threshold_accuracy > 0.85
    assert oracle.recognised(test_x, test_y, originals01=test_x).all()
    other = test_x.roll(1, dims=0)
    different = test_y.roll(1) != test_y
    assert oracle.recognised(other, test_y, originals01=test_x)[different].float().mean() < 0.3
