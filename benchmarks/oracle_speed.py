"""Seconds to train the machine annotator (semsim.oracle) on digits, and to load it back from its cache.

These figures used to be test assertions (training < 20 s, cache load < 2 s); wall time depends
on the machine and its load, so they are measured here instead and the tests check behaviour only.
Same setting as tests/audit/test_audit_oracle.py: fl_sim's digits split, 10 epochs, width 16,
validation on the held-out split, one torch thread (train_oracle's default).

    PYTHONPATH=. python benchmarks/oracle_speed.py [--sides 8 16] [--epochs 10] [--repeats 1]

Prints one line per image side, then `oracle_train_seconds: X.XX` (the largest side's best time).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from semsim.oracle import train_oracle
from fl_sim.data import load_dataset
from fl_sim.scenario import DataConfig
from flaudit.progress import set_quiet


def digits(side: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    bundle = load_dataset(DataConfig(dataset="digits", image_size=None if side == 8 else side))
    train_x, train_y = bundle.images(list(range(len(bundle.train))))
    test_x = torch.stack([bundle.test[i][0] for i in range(len(bundle.test))])
    test_y = torch.tensor([bundle.test[i][1] for i in range(len(bundle.test))])
    return train_x, train_y, test_x, test_y


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sides", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    set_quiet(True)
    last = float("nan")
    for side in args.sides:
        train_x, train_y, test_x, test_y = digits(side)
        train_times, load_times, accuracy = [], [], float("nan")
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as folder:
                cache = Path(folder) / "oracle.safetensors"
                kwargs = dict(num_classes=10, cache_path=cache, val_images01=test_x, val_labels=test_y, epochs=args.epochs, net_width=args.width)
                oracle = train_oracle(train_x, train_y, **kwargs)
                train_times.append(oracle.train_seconds)  # type: ignore[attr-defined]
                accuracy = float(oracle.recognised(test_x, test_y).float().mean())
                start = time.perf_counter()
                train_oracle(train_x, train_y, **kwargs)  # from the cache
                load_times.append(time.perf_counter() - start)
        last = min(train_times)
        print(f"digits {side}x{side}: {len(train_x)} images, {args.epochs} epochs, width {args.width}: "
              f"train {last:.2f} s (best of {args.repeats}), cached load {min(load_times):.3f} s, held-out recognised {accuracy:.3f}")
    print(f"oracle_train_seconds: {last:.2f}")


if __name__ == "__main__":
    main()
