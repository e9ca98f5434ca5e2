"""A run's annotators: the machine oracle (`semsim.oracle` trained on the run's own dataset,
cached), and the items people judge on the annotation page (`semsim.annotate`)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from fl_sim.run_store import RunStore
from flaudit.errors import CaptureCorruptError, FlauditError, ScenarioError
from flaudit.rundir import ANNOTATIONS, CaptureKey
from semsim.annotate.items import Item, Mode, Source
from semsim.annotate.store import DATABASE
from semsim.oracle import (
    MAX_CANDIDATES,
    ORACLE_FORMAT_VERSION,
    Oracle,
    candidate_classes,
    default_epochs,
    default_width,
    train_oracle,
)

if TYPE_CHECKING:
    from fl_sim.data import DatasetBundle
    from fl_sim.scenario import Scenario


def run_scenario(store: RunStore) -> Scenario:
    """The federation scenario a run directory was made from.

    Raises:
        ScenarioError: scenario.yaml is missing or is not a federation scenario (a study cell's, say);
            the audit then scores without the oracle and says why.
    """
    from fl_sim.scenario import parse_scenario

    path = store.scenario_path
    if not path.is_file():
        raise ScenarioError(f"{path}: missing; {store.root} is not a run directory of `flaudit run`")
    try:
        return parse_scenario(path.read_text(encoding="utf-8"), source=str(path))
    except ScenarioError as err:
        raise ScenarioError(f"{path}: not a federation scenario, so the run's dataset is unknown ({err})") from None


def run_dataset(store: RunStore) -> DatasetBundle:
    """The dataset a run used, at the image size it used (`fl_sim.data.load_dataset`).

    Raises:
        DatasetUnavailableError: the dataset cannot be loaded here.
    """
    from fl_sim.data import load_dataset

    return load_dataset(run_scenario(store).data)


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
    bundle = run_dataset(store)
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


def annotation_database(store: RunStore) -> Path:
    """Where a run keeps people's answers (outside the manifest: it changes with every answer)."""
    return store.root / ANNOTATIONS / DATABASE


def annotation_source(store: RunStore, *, mode: Mode | None = None) -> Source:
    """The items people judge in a run: every pair its audit wrote (`audit.pairs`), verified.

    Args:
        store: a scored run directory.
        mode: the question; default "pair" for identity datasets, else "class".

    Returns:
        The run's items in metrics.jsonl's order; a pair whose PNG is missing or altered is left
        out and named in `problems`.

    Raises:
        FlauditError: the run was never scored, its scenario is not a federation's, or class mode
            was asked of an identity dataset.
        DatasetUnavailableError: the run's dataset cannot be loaded here (its classes are needed).
    """
    from audit.pairs import pair_paths
    from audit.scorer import METRICS_FILE, read_image_records

    scenario = run_scenario(store)
    bundle = run_dataset(store)
    chosen: Mode = mode or ("pair" if bundle.identity else "class")
    if chosen == "class" and bundle.identity:
        raise FlauditError(f"{store.root}: {bundle.name} labels identities, not categories a person could pick; use --mode pair")
    try:
        store.verified(store.root / METRICS_FILE)
    except CaptureCorruptError as err:
        raise FlauditError(f"{err}; score the run first (`flaudit audit {store.root}`)") from None
    digests = store.manifest_files()
    found: list[tuple[dict, Path, Path]] = []
    problems: list[str] = []
    for record in read_image_records(store):
        folder = store.reconstructions(record["attack"]).folder(CaptureKey(int(record["round"]), int(record["client"])))
        original, reconstruction = pair_paths(folder, int(record["position"]), int(record["label"]))
        try:
            store.verified(original)
            store.verified(reconstruction)
        except CaptureCorruptError as err:
            problems.append(str(err))
            continue
        found.append((record, original, reconstruction))
    labels = torch.tensor([int(r["label"]) for r, _, _ in found], dtype=torch.int64)
    keys = torch.tensor([int(r["index"]) for r, _, _ in found], dtype=torch.int64)
    # The draw every oracle makes (`train_oracle` keeps MAX_CANDIDATES and candidate seed 0), keyed
    # by dataset index as scoring keys it: people are offered what the machine annotator is offered.
    candidates = (candidate_classes(labels, num_classes=bundle.num_classes, max_candidates=MAX_CANDIDATES, keys=keys).tolist()
                  if chosen == "class" else [[] for _ in found])
    items = []
    for (record, original, reconstruction), offered in zip(found, candidates, strict=True):
        pair = digests[store.relative(original)] + digests[store.relative(reconstruction)]
        digest = hashlib.sha256(pair.encode()).hexdigest()[:12]
        item_id = f"{chosen}:{record['attack']}:{record['round']}:{record['client']}:{record['position']}:{digest}"
        items.append(Item(item_id, original, reconstruction, str(record["attack"]), int(record["label"]), int(record["index"]),
                          tuple(int(c) for c in offered), chosen))
    return Source(store.root, annotation_database(store), bundle.name, scenario.name, bundle.class_names, tuple(items),
                  tuple(problems))


def people_judgements(store: RunStore) -> dict[tuple[str, CaptureKey, int], bool]:
    """People's judgements of a run's images (`flaudit annotate`): (attack, update, position) ->
    the majority of their recognised/not, over the answers that judge the images the run holds
    now (stale answers and even splits are left out). {} when nobody has annotated the run.
    """
    from semsim.annotate.agreement import majority
    from semsim.annotate.report import collect

    if not annotation_database(store).is_file():
        return {}
    bundle = run_dataset(store)
    modes: tuple[Mode, ...] = ("pair",) if bundle.identity else ("class", "pair")
    judged, _ = collect([annotation_source(store, mode=mode) for mode in modes])
    votes: dict[tuple[str, CaptureKey, int], list[bool]] = {}
    for j in judged:
        _, attack, rnd, client, position, _ = j.item.id.split(":")
        votes.setdefault((attack, CaptureKey(int(rnd), int(client)), int(position)), []).append(j.recognised)
    return {key: bool(label) for key, answers in votes.items() if (label := majority(answers)) is not None}
