"""The machine annotator on sklearn digits: accurate on clean data, recognises clean images, rejects noise."""

from __future__ import annotations

import time

import pytest
import torch

from audit.oracle import Oracle, candidate_classes, train_oracle


def test_oracle_accuracy_recognition_and_noise(digits, digits_oracle) -> None:
    _, _, test_x, test_y = digits
    assert digits_oracle.config.clean_accuracy >= 0.95
    assert digits_oracle.config.accuracy_split == "validation"
    assert digits_oracle.recognised(test_x, test_y).float().mean() >= 0.95
    noise = torch.rand(400, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    labels = torch.randint(0, 10, (400,), generator=torch.Generator().manual_seed(4))
    # Noise is recognised only at chance (1 in 10 candidates), as a guessing person would be.
    assert digits_oracle.recognised(noise, labels).float().mean() <= 0.2
    # heavy blur destroys recognisability less than noise, but a blank image is not a digit
    blank = torch.zeros(50, 1, 8, 8)
    assert digits_oracle.recognised(blank, torch.arange(50) % 10).float().mean() <= 0.2


def test_oracle_cache_reused(digits, digits_oracle, tmp_path) -> None:
    train_x, train_y, test_x, test_y = digits
    path = tmp_path / "o.safetensors"
    digits_oracle.save(path)
    start = time.perf_counter()
    again = train_oracle(train_x, train_y, num_classes=10, cache_path=path, val_images01=test_x, val_labels=test_y, epochs=10, net_width=16)
    assert time.perf_counter() - start < 2.0
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
