"""A miniature of the metric study: the whole pipeline on digits in well under two minutes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from flaudit.errors import ScenarioError

MINI = """
name: mini
seed: 0
datasets: [digits]
architectures:
  - {name: lenet}
  - {name: convnet, width: 4, bn: false}
variants:
  - {name: vanilla}
  - {name: flip, augment: flip}
  - {name: prune70, defenses: [{name: prune, params: {ratio: 0.7}}]}
  - {name: gauss, defenses: [{name: gaussian, params: {sigma: 0.001}}]}
attacks:
  - {name: dlg, params: {iterations: 10, max_iter: 10, restarts: 1}, known_labels: true}
  - {name: inverting_gradients, params: {iterations: 20}, known_labels: true}
images: 4
attack_batch: 2
classifier_epochs: 1
oracle_epochs: 6
holdout: attack
semsim: {backbone: lenet, width: 4, input_size: 8, epochs: 2, batch_size: 16}
n_boot: 50
device: cpu
"""


def test_mini_study(tmp_path: Path) -> None:
    from pipeline.study import run_study
    from pipeline.study_scenario import load_study

    path = tmp_path / "study.yaml"
    path.write_text(MINI)
    result = run_study(load_study(path), output=tmp_path / "out")
    folder = result.folder
    for name in ("results.md", "per_variant.csv", "per_image.jsonl", "annotations.jsonl", "correlations.json", "study.png"):
        assert (folder / name).is_file(), name
    rows = [json.loads(line) for line in (folder / "per_image.jsonl").read_text().splitlines()]
    assert len(rows) == 2 * 4 * 2 * 4  # architectures x variants x attacks x images
    # Seeded outcome: 20 Adam steps of inverting_gradients reconstruct nothing the oracle recognises,
    # so the fold that holds out dlg (training on inverting_gradients' annotations alone) has no
    # triplet and is reported NOT SCORED; the fold holding out inverting_gradients trains on dlg's.
    finite = {attack: sum(math.isfinite(r["semsim"]) for r in rows if r["attack"] == attack) for attack in ("dlg", "inverting_gradients")}
    assert finite == {"dlg": 0, "inverting_gradients": 32}
    results = (folder / "results.md").read_text()
    assert "- digits, held out dlg: NOT SCORED (no training triplet from 32 annotations" in results
    assert "- digits, held out inverting_gradients: trained on 32 annotations (scratch init), scored 32;" in results
    folds = {f["held_out"]: f for f in json.loads((folder / "study.json").read_text())["semsim"]["folds"]}
    assert (folds["dlg"]["scored"], folds["inverting_gradients"]["scored"]) == (0, 32) and "error" in folds["dlg"]
    assert not any(r["recognised"] for r in rows if r["attack"] == "inverting_gradients")
    # Each (architecture, variant) is a run directory the stages filled and sealed, and its images are its PNG pairs.
    from fl_sim.run_store import RunStore

    cells = sorted(path.parent for path in (folder / "runs").glob("*/*/*/manifest.json"))
    assert len(cells) == 2 * 4
    assert all(RunStore(cell).verify() == [] for cell in cells)
    assert all(Path(r["reconstruction"]).is_file() and Path(r["reconstruction"]).is_relative_to(folder / "runs") for r in rows)
    # Every model was attacked on the same images.
    by_model: dict[tuple[str, str], set[int]] = {}
    for r in rows:
        by_model.setdefault((r["variant"], r["attack"]), set()).add(r["index"])
    assert len({frozenset(v) for v in by_model.values()}) == 1
    table = result.tables["digits"]
    for metric in ("mse", "psnr", "ssim", "lpips", "fid", "oracle", "semsim"):
        assert f"| {metric} |" in table
    corr = json.loads((folder / "correlations.json").read_text())["digits"]
    # n = variants (2 architectures x 4) with a finite value; LPIPS and FID have no weights in the tests (none).
    assert {c["metric"]: c["n"] for c in corr} == {"mse": 8, "psnr": 8, "ssim": 8, "lpips": 0, "fid": 0, "oracle": 8, "semsim": 8}
    # Strict JSON: a correlation that could not be computed (NaN) is written as null.
    assert all(c["rho"] is None for c in corr if c["metric"] in ("lpips", "fid"))
    assert all(math.isfinite(c["rho"]) for c in corr if c["metric"] not in ("lpips", "fid"))
    # Leave-one-attack-out: the SemSim that scored inverting_gradients was trained on dlg only; none for dlg.
    import torch

    info = torch.load(folder / "semsim" / "digits_without_inverting_gradients.pt", weights_only=True)["info"]
    assert info["attacks"] == ["dlg"]
    assert not (folder / "semsim" / "digits_without_dlg.pt").exists()


def test_study_scenario_errors(tmp_path: Path) -> None:
    from pipeline.study_scenario import load_study

    path = tmp_path / "bad.yaml"
    path.write_text(MINI.replace("holdout: attack", "holdout: dataset"))
    with pytest.raises(ScenarioError, match="holdout"):
        load_study(path)
    path.write_text(MINI + "colour: red\n")
    with pytest.raises(ScenarioError, match="colour"):
        load_study(path)
    path.write_text(MINI.replace("augment: flip", "augment: swirl"))
    with pytest.raises(ScenarioError, match=r"variants\[1\].augment"):
        load_study(path)


def test_shipped_scenario_loads() -> None:
    from pipeline.study_scenario import load_study

    scenario = load_study(Path(__file__).resolve().parents[2] / "scenarios" / "metric_study.yaml")
    assert len(scenario.architectures) == 2 and len(scenario.variants) >= 6
