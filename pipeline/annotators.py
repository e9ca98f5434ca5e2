"""The machine annotator for a run: `semsim.oracle` trained on the run's own dataset, cached."""

from __future__ import annotations

from pathlib import Path

import torch

from fl_sim.run_store import RunStore
from semsim.oracle import (
    ORACLE_FORMAT_VERSION,
    Oracle,
    default_epochs,
    default_width,
    train_oracle,
)


def oracle_for_run(
    store: RunStore,
    *,
    cache_dir: str | Path | None = None,
    device: str | torch.device = "cpu",
    epochs: int | None = None,
) -> Oracle:
    """The oracle for a run's dataset: loaded from the cache, or trained on its clean training split.

    Reads the dataset settings from the run's scenario.yaml (`fl_sim.scenario`) and loads the
    split with `fl_sim.data.load_dataset`, at the image size the run used.

    Args:
        store: the run directory.
        cache_dir: where the oracle is cached (default: the run's cache/; pass a shared folder
            so that the variants of a sweep train it once).
        device: where to train and run it.
        epochs: training epochs (default `default_epochs` of the split's size).

    Raises:
        DatasetUnavailableError: the dataset cannot be loaded here.
    """
    from fl_sim.data import load_dataset
    from fl_sim.scenario import parse_scenario

    scenario = parse_scenario(store.scenario_path.read_text(encoding="utf-8"), source=str(store.scenario_path))
    bundle = load_dataset(scenario.data)
    train_x, train_y = bundle.images(list(range(len(bundle.train))))
    test_items = [bundle.test[i] for i in range(len(bundle.test))]
    val_x = torch.stack([x for x, _ in test_items]) if test_items else None
    val_y = torch.tensor([int(y) for _, y in test_items], dtype=torch.int64) if test_items else None
    channels, height, width = bundle.shape
    folder = Path(cache_dir) if cache_dir is not None else store.cache_dir
    # The format version in the name keeps older oracles' files apart (they would be retrained anyway).
    path = folder / f"oracle_v{ORACLE_FORMAT_VERSION}_{bundle.name}_{channels}x{height}x{width}.safetensors"
    return train_oracle(
        train_x, train_y, num_classes=bundle.num_classes, cache_path=path,
        mode="identity" if bundle.identity else "classes", val_images01=val_x, val_labels=val_y,
        epochs=epochs if epochs is not None else default_epochs(len(train_x)), net_width=default_width(height, width),
        device=device,
    )
