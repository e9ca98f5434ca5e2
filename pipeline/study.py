"""The SemSim paper's metric study, end to end: `flaudit study scenarios/metric_study.yaml`.

Protocol (Sun et al., NeurIPS 2023, Section 4, scaled to the embedded datasets):

1. For each dataset and architecture, train classifier variants: vanilla, one per
   augmentation policy (the client trains, and shares gradients of, transformed images),
   and defended ones (Gaussian noise on the gradient, gradient pruning).
2. Attack every variant with every attack on the same client images (FedSGD, batch of
   `attack_batch`; known labels, an explicit threat-model choice recorded in the results).
3. Annotate every reconstruction with the machine oracle (`semsim.oracle`), or with people when
   a human annotation file is given.
4. Score every reconstruction with MSE, PSNR, SSIM, LPIPS, FID (per variant), the oracle's
   true-class confidence, and SemSim trained leave-one-out (hold out one attack or one
   architecture: the SemSim that scores a reconstruction never saw its group in training).
5. Per dataset, Spearman's rho and Kendall's tau between each metric's per-variant leakage and
   the per-variant recognition rate; a markdown table, CSV/JSONL data and a plot.

Metrics whose weights cannot be had offline (LPIPS's AlexNet, FID's Inception) are reported
as unavailable with the file to provide, never as a number.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from audit.functional.fid import fid
from audit.scorer import ScoredRun
from audit.summary import summarise
from fl_sim.data import DatasetBundle
from fl_sim.offline import ClientBatch
from flaudit.errors import FlauditError, WeightsUnavailableError
from flaudit.io import atomic_write_json, atomic_write_text
from flaudit.models import ModelSpec
from pipeline.study_scenario import ALL_METRICS, CLASSIC_METRICS, POLICIES, StudyScenario, VariantConfig
from semsim.oracle import Oracle

# --------------------------------------------------------------------------- pieces


def apply_policy(images01: torch.Tensor, policy: str | None) -> torch.Tensor:
    """The augmentation policies of the study (deterministic transforms of a [0, 1] batch)."""
    if policy is None:
        return images01
    if policy == "flip":
        return torch.flip(images01, dims=[-1])
    if policy == "shift":
        step = max(1, images01.shape[-1] // 8)
        return torch.roll(images01, shifts=(step, step), dims=(-2, -1))
    if policy == "rotate":
        return torch.rot90(images01, 1, dims=(-2, -1))
    if policy == "invert":
        return 1.0 - images01
    raise FlauditError(f"unknown augmentation policy {policy!r}; known: {', '.join(POLICIES)}")


def train_classifier(spec: ModelSpec, bundle: DatasetBundle, *, epochs: int, lr: float, policy: str | None, seed: int) -> torch.nn.Module:
    """A classifier variant: `fl_sim.training.local_train` over the whole training split (SGD,
    momentum 0.9, batches of 64); an augmentation policy is applied to every other batch."""
    from fl_sim.training import local_train
    from flaudit.models import build_model

    model = build_model(spec, seed=seed)
    local_train(
        model, bundle, np.arange(len(bundle.train_labels)), epochs=epochs, steps=None, batch_size=64, learning_rate=lr,
        momentum=0.9, generator=torch.Generator().manual_seed(seed),
        transform=None if policy is None else lambda images, step: apply_policy(images, policy) if step % 2 == 0 else images,
    )
    return model.eval()


def _inception(device: torch.device) -> tuple[Any, str | None]:
    """FID's network when its weights are on this machine, else the reason."""
    from audit.functional.fid import load_inception

    try:
        # 64-dim features: a variant's few dozen images cannot support a 2048-dim covariance.
        return load_inception(dims=64, device=device, download=False), None
    except WeightsUnavailableError as err:
        return None, str(err)


@dataclass(frozen=True)
class StudyImage:
    """One scored reconstruction of the study (a line of per_image.jsonl).

    Args:
        dataset, architecture, variant, attack: where it comes from (`variant` is `architecture/variant`).
        index: the original's index in the dataset's training split; `label` its class.
        original: the original's PNG (shared by every model and attack); `reconstruction` the
            matched reconstruction's PNG, as scoring wrote it in the cell's run directory.
        metrics: per metric, its value (NaN: not scored).
        oracle_recognised: the machine annotator's judgement; `recognised` the judgement the
            study uses (a person's when human annotations are given).
    """

    dataset: str
    architecture: str
    variant: str
    attack: str
    index: int
    label: int
    original: str
    reconstruction: str
    metrics: Mapping[str, float]
    oracle_recognised: bool
    recognised: bool

    def to_dict(self) -> dict[str, Any]:
        row = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "metrics"}
        return {**row, **{m: self.metrics.get(m, math.nan) for m in ALL_METRICS if m != "fid"}}


@dataclass(frozen=True)
class VariantScores:
    """A variant's leakage under every attack (a line of per_variant.csv): per metric the mean over its
    images (`audit.summary.summarise`), FID over all of them, and the recognition rate."""

    dataset: str
    variant: str
    images: int
    metrics: Mapping[str, float]
    recognition_rate: float

    def to_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "variant": self.variant, "images": self.images,
                "recognition_rate": self.recognition_rate, **{m: self.metrics.get(m, math.nan) for m in ALL_METRICS}}


@dataclass(frozen=True)
class StudyResult:
    """Where the study wrote its results, its tables and its wall time."""

    folder: Path
    tables: dict[str, str]
    correlations: dict[str, list[Any]]
    wall_time_s: float


@dataclass(frozen=True)
class _Clients:
    """A dataset's attacked clients (the same for every model) and its machine annotator."""

    bundle: DatasetBundle
    batches: tuple[ClientBatch, ...]
    originals: Mapping[int, str]  # dataset index -> PNG of the original
    oracle: Oracle


# --------------------------------------------------------------------------- the study


def run_study(scenario: StudyScenario, *, output: str | Path | None = None) -> StudyResult:
    """Run the whole study (see the module docstring) and write its results.

    Every (dataset, architecture, variant) is a run directory, `runs/DATASET/ARCH/VARIANT/`,
    filled by the stages a federation's run goes through: `fl_sim.offline.fedsgd_round` (captures
    and vault), `pipeline.stages.attack_run` and `audit.scorer.score_run` (metrics.jsonl,
    rounds.jsonl, the PNG pairs). A re-run keeps a cell's finished attacks.

    Also writes to `output` (default `scenario.output/scenario.name`): `originals/`,
    `annotations.jsonl`, `per_image.jsonl`, `per_variant.csv`, `semsim/*.pt` (one checkpoint per
    fold), `results.md`, `correlations.json`, `study.png`.
    """
    from flaudit.device import resolve_device
    from semsim.data import Annotation, now_iso, read_annotations, write_annotations

    started = time.perf_counter()
    device = resolve_device(scenario.device)
    folder = Path(output) if output is not None else Path(scenario.output) / scenario.name
    folder.mkdir(parents=True, exist_ok=True)
    inception, fid_missing = _inception(device)
    images: list[StudyImage] = []
    fid_values: dict[tuple[str, str], float] = {}
    unavailable: dict[str, str] = {"fid": fid_missing} if fid_missing else {}
    oracle_info: dict[str, Any] = {}
    identity: dict[str, bool] = {}

    for dataset in scenario.datasets:
        clients = _clients(scenario, dataset, folder, device)
        identity[dataset] = clients.bundle.identity
        config = clients.oracle.config
        oracle_info[dataset] = {"clean_accuracy": config.clean_accuracy, "split": config.accuracy_split,
                                "candidates": min(clients.bundle.num_classes, config.max_candidates)}
        for arch in scenario.architectures:
            bundle = clients.bundle
            spec = ModelSpec(arch.name, bundle.num_classes, bundle.shape[0], bundle.shape[1], width=arch.width, bn=arch.bn)
            trained: dict[str | None, torch.nn.Module] = {}
            for variant in scenario.variants:
                if variant.augment not in trained:
                    trained[variant.augment] = train_classifier(spec, bundle, epochs=scenario.classifier_epochs,
                                                                lr=scenario.classifier_lr, policy=variant.augment, seed=scenario.seed)
                cell, scored = _run_cell(scenario, folder, dataset, spec, variant, trained[variant.augment], clients, device)
                images += cell
                unavailable.update({k: v for a in scored.audits for k, v in a.unavailable.items()})
                if inception is not None:
                    originals = torch.cat([u.originals for _, u in scored.updates])
                    matched = torch.cat([u.reconstructions for _, u in scored.updates])
                    fid_values[(dataset, f"{arch.name}/{variant.name}")] = fid(originals, matched, model=inception).value

    annotations = [
        Annotation(i.original, i.reconstruction, i.dataset, i.variant, i.attack, i.oracle_recognised, "oracle", now_iso(), identity[i.dataset])
        for i in images
    ]
    write_annotations(folder / "annotations.oracle.jsonl", annotations)
    judged = annotations
    if scenario.human_annotations:
        human = read_annotations(scenario.human_annotations)
        by_rec = {a.reconstruction: a for a in human.annotations}
        judged = [by_rec.get(a.reconstruction, a) for a in annotations]
    write_annotations(folder / "annotations.jsonl", judged)
    judgement = {a.reconstruction: a.recognisable for a in judged}
    images = [dataclasses.replace(image, recognised=judgement[image.reconstruction]) for image in images]

    # SemSim, leave-one-out: the fold that scores a group never trained on it.
    distances, semsim_info = _semsim_folds(scenario, judged, images, folder)
    images = [dataclasses.replace(image, metrics={**image.metrics, "semsim": distances.get(image.reconstruction, math.nan)})
              for image in images]

    per_variant = _aggregate(images, fid_values)
    from semsim.correlate import correlate, markdown_table

    tables: dict[str, str] = {}
    correlations: dict[str, list[Any]] = {}
    for dataset in scenario.datasets:
        members = [v for v in per_variant if v.dataset == dataset]
        metrics = {m: [v.metrics[m] for v in members] for m in ALL_METRICS}
        results = correlate(metrics, [v.recognition_rate for v in members], dataset=dataset, n_boot=scenario.n_boot, seed=scenario.seed)
        correlations[dataset] = results
        tables[dataset] = markdown_table(results, title=f"{dataset}: per-variant leakage vs {'human' if scenario.human_annotations else 'oracle'} recognition rate ({len(members)} variants, leave-one-{scenario.holdout}-out SemSim)")
    wall = time.perf_counter() - started
    _write_outputs(folder, scenario, images, per_variant, tables, correlations, unavailable, oracle_info, semsim_info, wall)
    return StudyResult(folder, tables, correlations, wall)


def _clients(scenario: StudyScenario, dataset: str, folder: Path, device: torch.device) -> _Clients:
    """The dataset, its machine annotator and the attacked clients: `images` drawn once, `attack_batch` per client."""
    from fl_sim.data import load_dataset
    from fl_sim.scenario import DataConfig
    from semsim.data import save_image
    from semsim.oracle import train_oracle

    bundle = load_dataset(DataConfig(dataset=dataset))
    train_x, train_y = bundle.images(list(range(len(bundle.train_labels))))
    oracle = train_oracle(
        train_x, train_y, num_classes=bundle.num_classes, cache_path=folder / f"oracle_{dataset}.safetensors",
        epochs=scenario.oracle_epochs, seed=scenario.seed, device=device,
    )
    pick = torch.randperm(train_x.shape[0], generator=torch.Generator().manual_seed(scenario.seed))[: scenario.images]
    originals = {
        int(index): str(save_image(folder / "originals" / dataset / f"{int(index)}_{int(train_y[index])}_ori.png", train_x[index]))
        for index in pick
    }
    batches = tuple(
        ClientBatch(client, train_x[chunk], train_y[chunk], chunk.to(torch.int64))
        for client, chunk in enumerate(pick.split(scenario.attack_batch))
    )
    return _Clients(bundle, batches, originals, oracle)


def _run_cell(
    scenario: StudyScenario,
    folder: Path,
    dataset: str,
    spec: ModelSpec,
    variant: VariantConfig,
    model: torch.nn.Module,
    clients: _Clients,
    device: torch.device,
) -> tuple[list[StudyImage], ScoredRun]:
    """One (dataset, architecture, variant): capture its clients' updates, attack them with every
    attack, score the reconstructions; its images, and the scoring's result."""
    from audit.pairs import pair_paths
    from audit.scorer import score_run
    from fl_sim.offline import fedsgd_round
    from fl_sim.run_store import RunStore
    from pipeline.stages import attack_run

    store = RunStore(folder / "runs" / dataset / spec.name / variant.name)
    described = _describe_cell(scenario, dataset, spec, variant)
    if store.scenario_path.is_file() and store.scenario_path.read_text(encoding="utf-8") != described:
        shutil.rmtree(store.root)  # the study changed: nothing of the old cell may be kept
    store.create(described, seed=scenario.seed)
    fedsgd_round(store, model, spec, clients.bundle, clients.batches, learning_rate=scenario.classifier_lr,
                 defenses=[(d.name, dict(d.params)) for d in variant.defenses], seed=scenario.seed,
                 transform=None if variant.augment is None else lambda images: apply_policy(images, variant.augment))
    for config in scenario.attacks:
        run = attack_run(store, config, device=device)
        if run.corrupt:
            raise FlauditError(f"{store.root}: {config.name}: " + "; ".join(run.corrupt))
    scored = score_run(store, metrics=("mse", "psnr", "ssim", "lpips"), oracle=clients.oracle, device=device, download=False)
    if any(audit.corrupt for audit in scored.audits):
        raise FlauditError(f"{store.root}: " + "; ".join(c for a in scored.audits for c in a.corrupt))
    variant_id = f"{spec.name}/{variant.name}"
    images = []
    for attack, update in scored.updates:
        truth, matched = update.truth, update.perm >= 0
        labels, indices = truth.labels[matched], truth.indices[matched]
        confidence = clients.oracle.confidence(update.reconstructions, labels, keys=indices)
        folder_of = store.reconstructions(attack).folder(update.key)
        for row, position in enumerate(torch.nonzero(matched).flatten().tolist()):
            index, label = int(truth.indices[position]), int(truth.labels[position])
            values = {name: float(v[row]) for name, v in update.values.items()}
            judged = bool(update.recognised[row]) if update.recognised is not None else False
            images.append(StudyImage(
                dataset, spec.name, variant_id, attack, index, label, clients.originals[index],
                str(pair_paths(folder_of, position, label)[1]), {**values, "oracle": float(confidence[row])}, judged, judged,
            ))
    return images, scored


def _describe_cell(scenario: StudyScenario, dataset: str, spec: ModelSpec, variant: VariantConfig) -> str:
    """The cell's scenario.yaml: everything that determines its files."""
    described = {
        "study": scenario.name, "seed": scenario.seed, "dataset": dataset, "model": spec.to_dict(),
        "variant": dataclasses.asdict(variant), "attacks": [dataclasses.asdict(a) for a in scenario.attacks],
        "images": scenario.images, "attack_batch": scenario.attack_batch, "classifier_epochs": scenario.classifier_epochs,
        "classifier_lr": scenario.classifier_lr,
    }
    return f"# One cell of the metric study {scenario.name!r} (flaudit study), not a federation scenario.\n" + yaml.safe_dump(
        json.loads(json.dumps(described)), sort_keys=False
    )


def _semsim_folds(scenario: StudyScenario, judged: list[Any], images: list[StudyImage], folder: Path) -> tuple[dict[str, float], dict[str, Any]]:
    """SemSim trained leave-one-out; the distance of every reconstruction it scored, and the folds' record."""
    from semsim.score import semsim
    from semsim.train import TrainConfig, train_semsim

    key = "attack" if scenario.holdout == "attack" else "architecture"
    settings = {"backbone": "resnet18", "width": 16, "input_size": 16, "epochs": 10, "batch_size": 32, "lr": 0.05, "seed": scenario.seed, "device": scenario.device}
    settings.update(scenario.semsim)
    config = TrainConfig(**settings)
    group_of_rec = {image.reconstruction: getattr(image, key) for image in images}
    info: dict[str, Any] = {"config": dataclasses.asdict(config), "folds": []}
    distances: dict[str, float] = {}
    for dataset in scenario.datasets:
        groups = sorted({getattr(image, key) for image in images if image.dataset == dataset})
        for group in groups:
            train = [a for a in judged if a.dataset == dataset and group_of_rec[a.reconstruction] != group]
            test = [image for image in images if image.dataset == dataset and getattr(image, key) == group]
            try:
                result = train_semsim(train, config=config, out=folder / "semsim" / f"{dataset}_without_{group}.pt")
            except FlauditError as err:
                # Too few recognisable reconstructions to form a triplet: no SemSim for this fold, said so.
                info["folds"].append({"dataset": dataset, "held_out": group, "train_annotations": len(train), "scored": 0,
                                      "init": "none", "final_train_loss": math.nan, "val_accuracy": None, "error": str(err)})
                continue
            scores = semsim([i.original for i in test], [i.reconstruction for i in test], result.checkpoint, device=scenario.device)
            distances.update(zip((i.reconstruction for i in test), scores.tolist()))
            last = result.history[-1]
            info["folds"].append({"dataset": dataset, "held_out": group, "train_annotations": len(train), "scored": len(test),
                                  "init": result.checkpoint["init"], "final_train_loss": last["train_loss"], "val_accuracy": last.get("val_accuracy")})
    return distances, info


def _aggregate(images: list[StudyImage], fid_values: Mapping[tuple[str, str], float]) -> list[VariantScores]:
    """Per variant: each metric's mean over its images (`audit.summary.summarise`: NaN, e.g. a SemSim
    fold with no training triplet, is left out; +inf counts), FID, the recognition rate."""
    groups: dict[tuple[str, str], list[StudyImage]] = defaultdict(list)
    for image in images:
        groups[(image.dataset, image.variant)].append(image)
    out = []
    for (dataset, variant), members in sorted(groups.items()):
        metrics = {}
        for metric in ALL_METRICS:
            if metric == "fid":
                continue
            mean = summarise([m.metrics.get(metric, math.nan) for m in members], higher_is_leakier=metric in ("psnr", "ssim", "oracle")).mean
            metrics[metric] = math.nan if mean is None else mean
        metrics["fid"] = fid_values.get((dataset, variant), math.nan)
        out.append(VariantScores(dataset, variant, len(members), metrics, sum(m.recognised for m in members) / len(members)))
    return out


def _write_outputs(folder: Path, scenario: StudyScenario, images: list[StudyImage], per_variant: list[VariantScores], tables: dict[str, str],
                   correlations: dict[str, list[Any]], unavailable: dict[str, str], oracle_info: dict[str, Any], semsim_info: dict[str, Any], wall: float) -> None:
    import csv
    import io

    atomic_write_text(folder / "per_image.jsonl", "".join(json.dumps(i.to_dict(), sort_keys=True) + "\n" for i in images))
    buffer = io.StringIO()
    columns = ["dataset", "variant", "images", "recognition_rate", *ALL_METRICS]
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(v.to_dict() for v in per_variant)
    atomic_write_text(folder / "per_variant.csv", buffer.getvalue())
    atomic_write_json(folder / "correlations.json", {d: [c.to_dict() for c in cs] for d, cs in correlations.items()})
    lines = [f"# {scenario.name}", "", f"Wall time: {wall:.0f} s on {torch.get_num_threads()} threads.", ""]
    lines.append(f"Threat model: FedSGD, batch {scenario.attack_batch}, labels known to the attacker; {scenario.images} client images per dataset, the same for every model.")
    lines.append("Signs: a distance (MSE, LPIPS, FID, SemSim) that agrees with the annotations correlates negatively with the recognition rate; a similarity (PSNR, SSIM, oracle confidence) positively. Compare |ρ|.")
    lines.append("`oracle` is the machine annotator's true-class confidence (softmax over the candidate classes); with oracle annotations it is the annotator's own score, not an independent metric.")
    lines.append("")
    for dataset, table in tables.items():
        info = oracle_info.get(dataset, {})
        lines += [table, f"Oracle clean accuracy ({info.get('split')}): {info.get('clean_accuracy', math.nan):.3f}, {info.get('candidates')} candidates.", ""]
        classic = [c for c in correlations[dataset] if c.metric in CLASSIC_METRICS and math.isfinite(c.rho)]
        sem = next((c for c in correlations[dataset] if c.metric == "semsim"), None)
        if sem is not None and math.isfinite(sem.rho) and classic:
            best = max(classic, key=lambda c: abs(c.rho))
            verdict = "higher" if abs(sem.rho) > abs(best.rho) else "not higher"
            lines += [f"SemSim |ρ| = {abs(sem.rho):.3f} is {verdict} than the best available classic metric ({best.metric}, |ρ| = {abs(best.rho):.3f}).", ""]
    for metric, reason in unavailable.items():
        lines.append(f"- {metric}: unavailable ({reason})")
    lines += ["", "SemSim folds:", ""]
    for fold in semsim_info["folds"]:
        if fold.get("error"):
            lines.append(f"- {fold['dataset']}, held out {fold['held_out']}: NOT SCORED ({fold['error']})")
            continue
        lines.append(f"- {fold['dataset']}, held out {fold['held_out']}: trained on {fold['train_annotations']} annotations ({fold['init']} init), scored {fold['scored']}; final train loss {fold['final_train_loss']:.3f}, val accuracy {fold['val_accuracy']}")
    atomic_write_text(folder / "results.md", "\n".join(lines) + "\n")
    atomic_write_json(folder / "study.json", {"scenario": dataclasses.asdict(scenario), "wall_time_s": wall, "unavailable": unavailable, "oracle": oracle_info, "semsim": semsim_info})
    _plot(folder / "study.png", per_variant, scenario.datasets)


def _plot(path: Path, per_variant: list[VariantScores], datasets: tuple[str, ...]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(datasets), len(ALL_METRICS), figsize=(2.6 * len(ALL_METRICS), 2.4 * len(datasets)), squeeze=False)
    for i, dataset in enumerate(datasets):
        members = [v for v in per_variant if v.dataset == dataset]
        for j, metric in enumerate(ALL_METRICS):
            ax = axes[i][j]
            xs = [v.metrics[metric] for v in members]
            ys = [v.recognition_rate for v in members]
            if all(not math.isfinite(x) for x in xs):
                ax.text(0.5, 0.5, "unavailable", ha="center", va="center", transform=ax.transAxes)
            else:
                ax.scatter(xs, ys, s=14)
            ax.set_title(f"{dataset}: {metric}", fontsize=8)
            ax.tick_params(labelsize=6)
            if j == 0:
                ax.set_ylabel("recognition rate", fontsize=7)
    fig.tight_layout()
    buffer = __import__("io").BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    from flaudit.io import atomic_write_bytes

    atomic_write_bytes(path, buffer.getvalue())
