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
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from pipeline.study_scenario import ALL_METRICS, CLASSIC_METRICS, POLICIES, StudyScenario, VariantConfig
from flaudit.errors import FlauditError, WeightsUnavailableError
from flaudit.io import atomic_write_json, atomic_write_text
from flaudit.progress import progress

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


def train_classifier(model: torch.nn.Module, images01: torch.Tensor, labels: torch.Tensor, meta: Any, *, epochs: int, lr: float, policy: str | None, seed: int) -> torch.nn.Module:
    """SGD training of a classifier variant; an augmentation policy is applied to every other batch."""
    from attacks.simulate import normalize

    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(images01.shape[0], generator=generator)
        for step, batch in enumerate(order.split(64)):
            x = images01[batch]
            if policy is not None and step % 2 == 0:
                x = apply_policy(x, policy)
            loss = F.cross_entropy(model(normalize(x, meta)), labels[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return model.eval()


def _defense(variant: VariantConfig, generator: torch.Generator) -> Callable[[tuple[torch.Tensor, ...]], tuple[torch.Tensor, ...]] | None:
    from defenses.functional import gaussian, prune

    if variant.kind == "gaussian":
        return lambda update: tuple(gaussian(update, sigma=variant.sigma, generator=generator))
    if variant.kind == "prune":
        return lambda update: tuple(prune(update, ratio=variant.ratio))
    return None


def _optional_networks(device: torch.device) -> tuple[dict[str, Any], dict[str, str]]:
    """LPIPS and FID networks when their weights are on this machine; else the reason."""
    nets: dict[str, Any] = {}
    missing: dict[str, str] = {}
    try:
        from audit.functional.lpips import load_lpips

        nets["lpips"] = load_lpips(device=device, download=False)
    except WeightsUnavailableError as err:
        missing["lpips"] = str(err)
    try:
        from audit.functional.fid import load_inception

        # 64-dim features: a variant's few dozen images cannot support a 2048-dim covariance.
        nets["fid"] = load_inception(dims=64, device=device, download=False)
    except WeightsUnavailableError as err:
        missing["fid"] = str(err)
    return nets, missing


# --------------------------------------------------------------------------- the study


@dataclass(frozen=True)
class StudyResult:
    """Where the study wrote its results, its tables and its wall time."""

    folder: Path
    tables: dict[str, str]
    correlations: dict[str, list[Any]]
    wall_time_s: float


def run_study(scenario: StudyScenario, *, output: str | Path | None = None) -> StudyResult:
    """Run the whole study (see the module docstring) and write its results.

    Writes to `output` (default `scenario.output/scenario.name`): `reconstructions/` (PNG pairs
    in the SemSim naming), `annotations.jsonl`, `per_image.jsonl`, `per_variant.csv`,
    `semsim/*.pt` (one checkpoint per fold), `results.md`, `correlations.json`, `study.png`.
    """
    from attacks.base import SharedMetadata
    from attacks.matching import reconstruct_in_groups
    from attacks.registry import create_attack
    from attacks.simulate import fedsgd_view
    from audit.functional.align import align
    from audit.functional.image import mse, psnr, ssim_auto
    from semsim.oracle import candidate_classes, train_oracle
    from fl_sim.data import load_dataset
    from flaudit.models import ModelSpec, build_model
    from fl_sim.scenario import DataConfig
    from flaudit.device import resolve_device
    from semsim.data import Annotation, now_iso, read_annotations, save_image, write_annotations

    started = time.perf_counter()
    device = resolve_device(scenario.device)
    folder = Path(output) if output is not None else Path(scenario.output) / scenario.name
    folder.mkdir(parents=True, exist_ok=True)
    nets, unavailable = _optional_networks(device)
    rows: list[dict[str, Any]] = []
    annotations: list[Annotation] = []
    fid_values: dict[tuple[str, str], float] = {}
    oracle_info: dict[str, Any] = {}

    for dataset in scenario.datasets:
        bundle = load_dataset(DataConfig(dataset=dataset))
        train_x, train_y = bundle.images(list(range(len(bundle.train_labels))))
        oracle = train_oracle(
            train_x, train_y, num_classes=bundle.num_classes, cache_path=folder / f"oracle_{dataset}.safetensors",
            epochs=scenario.oracle_epochs, seed=scenario.seed, device=device,
        )
        oracle_info[dataset] = {"clean_accuracy": oracle.config.clean_accuracy, "split": oracle.config.accuracy_split, "candidates": min(bundle.num_classes, oracle.config.max_candidates)}
        # The attacked client images: drawn once, the same for every model and attack.
        pick = torch.randperm(train_x.shape[0], generator=torch.Generator().manual_seed(scenario.seed))[: scenario.images]
        client_x, client_y = train_x[pick], train_y[pick]
        meta = SharedMetadata("fedsgd", scenario.attack_batch, scenario.attack_batch, 1, scenario.classifier_lr, tuple(bundle.shape), bundle.num_classes, tuple(bundle.mean), tuple(bundle.std))
        ori_dir = folder / "reconstructions" / dataset / "originals"
        ori_paths = []
        for k in range(scenario.images):
            ori_paths.append(save_image(ori_dir / f"{int(pick[k])}_{int(client_y[k])}_ori.png", client_x[k]))
        for arch in scenario.architectures:
            spec = ModelSpec(arch.name, bundle.num_classes, bundle.shape[0], bundle.shape[1], width=arch.width, bn=arch.bn)
            trained: dict[str | None, torch.nn.Module] = {}
            for variant in scenario.variants:
                policy = variant.policy if variant.kind == "augment" else None
                if policy not in trained:
                    model = build_model(spec, seed=scenario.seed)
                    trained[policy] = train_classifier(model, train_x, train_y, meta, epochs=scenario.classifier_epochs, lr=scenario.classifier_lr, policy=policy, seed=scenario.seed)
                model = trained[policy]
                variant_id = f"{arch.name}/{variant.name}"
                for attack_cfg in scenario.attacks:
                    attack = create_attack(attack_cfg.name, **dict(attack_cfg.params))
                    rec_dir = folder / "reconstructions" / dataset / arch.name / variant.name / attack_cfg.name
                    batches = list(range(0, scenario.images, scenario.attack_batch))
                    # Every batch is one client's update to the same model: invert them all as one
                    # batched computation per group (attacks.matching.reconstruct_in_groups).
                    views, generators = [], []
                    for start in batches:
                        sl = slice(start, start + scenario.attack_batch)
                        generator = torch.Generator().manual_seed(scenario.seed * 7919 + start)
                        shared = apply_policy(client_x[sl], policy)  # what the client actually trains on
                        views.append(fedsgd_view(model, shared, client_y[sl], meta, defense=_defense(variant, generator), client=start))
                        generators.append(generator)
                    known = [client_y[start : start + scenario.attack_batch] for start in batches]
                    recs: dict[int, torch.Tensor] = {}
                    bar = progress(total=len(batches), desc=f"{dataset} {variant_id} {attack_cfg.name}", unit="batch")
                    for indices, results in reconstruct_in_groups(attack, views, generators=generators, labels=known):
                        for i, result in zip(indices, results, strict=True):
                            recs[batches[i]] = result.images.detach().cpu().clamp(0, 1)
                        bar.update(len(indices))
                    bar.close()
                    for start in batches:
                        sl = slice(start, start + scenario.attack_batch)
                        x, y = client_x[sl], client_y[sl]
                        rec = recs[start]
                        aligned, _ = align(x, rec)  # scored against the untransformed originals
                        probs = torch.softmax(oracle.logits(aligned).cpu(), dim=1)
                        cands = candidate_classes(y, num_classes=bundle.num_classes, keys=pick[sl])
                        cand_probs = probs.gather(1, cands)
                        # The annotator's belief in the true class among what a person is offered:
                        # the candidates and, when the oracle has one, "unrecognisable".
                        offered = cand_probs.sum(1)
                        if oracle.reject_index is not None:
                            offered = offered + probs[:, oracle.reject_index]
                        confidence = (cand_probs * (cands == y.unsqueeze(1))).sum(1) / offered
                        recognised = oracle.recognised(aligned, y, originals01=x, keys=pick[sl])
                        lpips_values = None
                        if "lpips" in nets:
                            from audit.functional.lpips import lpips

                            lpips_values = lpips(aligned, x, net=nets["lpips"])
                        m, p, s = mse(aligned, x), psnr(aligned, x), ssim_auto(aligned, x)
                        for j in range(x.shape[0]):
                            k = start + j
                            rec_path = save_image(rec_dir / f"{int(pick[k])}_{int(client_y[k])}_rec.png", aligned[j])
                            rows.append({
                                "dataset": dataset, "architecture": arch.name, "variant": variant_id, "attack": attack_cfg.name,
                                "index": int(pick[k]), "label": int(client_y[k]), "original": str(ori_paths[k]), "reconstruction": str(rec_path),
                                "mse": float(m[j]), "psnr": float(p[j]), "ssim": float(s[j]),
                                "lpips": float(lpips_values[j]) if lpips_values is not None else math.nan,
                                "oracle": float(confidence[j]), "oracle_recognised": bool(recognised[j]),
                            })
                            annotations.append(Annotation(str(ori_paths[k]), str(rec_path), dataset, variant_id, attack_cfg.name, bool(recognised[j]), "oracle", now_iso(), bundle.identity))
                if "fid" in nets:
                    from audit.functional.fid import fid

                    recs = [r for r in rows if r["dataset"] == dataset and r["variant"] == variant_id]
                    from semsim.data import load_image

                    ori = torch.stack([load_image(r["original"], channels=bundle.shape[0]) for r in recs])
                    fake = torch.stack([load_image(r["reconstruction"], channels=bundle.shape[0]) for r in recs])
                    fid_values[(dataset, variant_id)] = fid(ori, fake, model=nets["fid"]).value

    write_annotations(folder / "annotations.oracle.jsonl", annotations)
    judged = annotations
    if scenario.human_annotations:
        human = read_annotations(scenario.human_annotations)
        by_rec = {a.reconstruction: a for a in human.annotations}
        judged = [by_rec.get(a.reconstruction, a) for a in annotations]
    write_annotations(folder / "annotations.jsonl", judged)
    judgement = {a.reconstruction: a.recognisable for a in judged}
    for row in rows:
        row["recognised"] = judgement[row["reconstruction"]]

    # SemSim, leave-one-out: the fold that scores a group never trained on it.
    semsim_info = _semsim_folds(scenario, judged, rows, folder)

    per_variant = _aggregate(rows, fid_values)
    from semsim.correlate import correlate, markdown_table

    tables: dict[str, str] = {}
    correlations: dict[str, list[Any]] = {}
    for dataset in scenario.datasets:
        members = [r for r in per_variant if r["dataset"] == dataset]
        metrics = {m: [r[m] for r in members] for m in ALL_METRICS}
        results = correlate(metrics, [r["recognition_rate"] for r in members], dataset=dataset, n_boot=scenario.n_boot, seed=scenario.seed)
        correlations[dataset] = results
        tables[dataset] = markdown_table(results, title=f"{dataset}: per-variant leakage vs {'human' if scenario.human_annotations else 'oracle'} recognition rate ({len(members)} variants, leave-one-{scenario.holdout}-out SemSim)")
    wall = time.perf_counter() - started
    _write_outputs(folder, scenario, rows, per_variant, tables, correlations, unavailable, oracle_info, semsim_info, wall)
    return StudyResult(folder, tables, correlations, wall)


def _semsim_folds(scenario: StudyScenario, judged: list[Any], rows: list[dict[str, Any]], folder: Path) -> dict[str, Any]:
    from semsim.score import semsim
    from semsim.train import TrainConfig, train_semsim

    key = "attack" if scenario.holdout == "attack" else "architecture"
    settings = {"backbone": "resnet18", "width": 16, "input_size": 16, "epochs": 10, "batch_size": 32, "lr": 0.05, "seed": scenario.seed, "device": scenario.device}
    settings.update(scenario.semsim)
    config = TrainConfig(**settings)
    arch_of = {r["reconstruction"]: r["architecture"] for r in rows}
    info: dict[str, Any] = {"config": dataclasses.asdict(config), "folds": []}
    for dataset in scenario.datasets:
        groups = sorted({r[key] for r in rows if r["dataset"] == dataset})
        for group in groups:
            def group_of(a: Any) -> str:
                return a.attack if key == "attack" else arch_of[a.reconstruction]

            train = [a for a in judged if a.dataset == dataset and group_of(a) != group]
            test_rows = [r for r in rows if r["dataset"] == dataset and r[key] == group]
            try:
                result = train_semsim(train, config=config, out=folder / "semsim" / f"{dataset}_without_{group}.pt")
            except FlauditError as err:
                # Too few recognisable reconstructions to form a triplet: no SemSim for this fold, said so.
                for r in test_rows:
                    r["semsim"] = math.nan
                info["folds"].append({"dataset": dataset, "held_out": group, "train_annotations": len(train), "scored": 0,
                                      "init": "none", "final_train_loss": math.nan, "val_accuracy": None, "error": str(err)})
                continue
            distances = semsim([r["original"] for r in test_rows], [r["reconstruction"] for r in test_rows], result.checkpoint, device=scenario.device)
            for r, d in zip(test_rows, distances.tolist()):
                r["semsim"] = d
            last = result.history[-1]
            info["folds"].append({"dataset": dataset, "held_out": group, "train_annotations": len(train), "scored": len(test_rows),
                                  "init": result.checkpoint["init"], "final_train_loss": last["train_loss"], "val_accuracy": last.get("val_accuracy")})
    return info


def _aggregate(rows: list[dict[str, Any]], fid_values: Mapping[tuple[str, str], float]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[(row["dataset"], row["variant"])].append(row)
    out = []
    for (dataset, variant), members in sorted(groups.items()):
        entry: dict[str, Any] = {"dataset": dataset, "variant": variant, "images": len(members)}
        for metric in ("mse", "psnr", "ssim", "lpips", "oracle", "semsim"):
            values = [float(r.get(metric, math.nan)) for r in members]
            finite = [v for v in values if math.isfinite(v)]
            # A SemSim fold with no training triplet leaves its group unscored (results.md says which);
            # the variant's SemSim is then the mean over the scored reconstructions.
            entry[metric] = sum(finite) / len(finite) if finite else math.nan
        entry["fid"] = fid_values.get((dataset, variant), math.nan)
        entry["recognition_rate"] = sum(bool(r["recognised"]) for r in members) / len(members)
        out.append(entry)
    return out


def _write_outputs(folder: Path, scenario: StudyScenario, rows: list[dict[str, Any]], per_variant: list[dict[str, Any]], tables: dict[str, str],
                   correlations: dict[str, list[Any]], unavailable: dict[str, str], oracle_info: dict[str, Any], semsim_info: dict[str, Any], wall: float) -> None:
    import csv
    import io

    atomic_write_text(folder / "per_image.jsonl", "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    buffer = io.StringIO()
    columns = ["dataset", "variant", "images", "recognition_rate", *ALL_METRICS]
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(per_variant)
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


def _plot(path: Path, per_variant: list[dict[str, Any]], datasets: tuple[str, ...]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(datasets), len(ALL_METRICS), figsize=(2.6 * len(ALL_METRICS), 2.4 * len(datasets)), squeeze=False)
    for i, dataset in enumerate(datasets):
        members = [r for r in per_variant if r["dataset"] == dataset]
        for j, metric in enumerate(ALL_METRICS):
            ax = axes[i][j]
            xs = [r[metric] for r in members]
            ys = [r["recognition_rate"] for r in members]
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
