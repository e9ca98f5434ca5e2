"""The metric study's scenario: YAML onto frozen dataclasses, checked without torch.

`flaudit validate` and `flaudit study` load it; `pipeline.study` runs it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attacks.config import AttackConfig
from fl_sim.scenario import DEVICE, PLAIN_NAME, DefenseConfig, ModelConfig, check_dataset_name, parse_yaml_as, read_text
from flaudit.errors import ScenarioError
from flaudit.fields import FieldError, build, check, spec
from semsim.config import TrainConfig

CLASSIC_METRICS = ("mse", "psnr", "ssim", "lpips", "fid")
ALL_METRICS = (*CLASSIC_METRICS, "oracle", "semsim")
POLICIES = ("flip", "shift", "rotate", "invert")
HOLDOUTS = ("attack", "architecture")


@dataclass(frozen=True)
class VariantConfig:
    """A model variant: trained, and sharing the gradient of, images transformed by an augmentation
    policy (`augment`), and/or defended on the client as a scenario's `defenses:` are.

    Args:
        name: variant name (unique).
        augment: augmentation policy (`flip`, `shift`, `rotate`, `invert`), or none.
        defenses: defenses applied in order to each update before it leaves the client.
    """

    name: str = spec(pattern=PLAIN_NAME, doc="variant name (unique; a folder of the study's run directories)")
    augment: str | None = spec(None, choices=POLICIES, doc="augmentation policy the client trains and shares gradients with")
    defenses: tuple[DefenseConfig, ...] = ()

    def __post_init__(self) -> None:
        check(self)


@dataclass(frozen=True)
class StudyScenario:
    """The study's settings (the YAML file maps 1:1 onto these fields; checked when built).

    Args:
        name: study name (output folder name under `output`).
        output: where results go.
        seed: every random choice.
        datasets: embedded or downloaded datasets by name.
        architectures: classifier architectures, as the scenario's `model:` (`bn` defaults to true there too).
        variants: model variants per architecture.
        attacks: attacks run on every variant, as a scenario's `attack:` (`known_labels: true` gives
            them the labels, the threat model of the paper's study).
        images: client images attacked per dataset (the same for every model).
        attack_batch: images per FedSGD update.
        classifier_epochs: epochs each classifier variant is trained.
        classifier_lr: its SGD learning rate.
        oracle_epochs: epochs of the machine annotator.
        holdout: `attack` or `architecture`: what SemSim leaves out in each fold.
        semsim: `semsim.config.TrainConfig` fields.
        human_annotations: optional JSON Lines of people's judgements, used instead of the oracle.
        n_boot: bootstrap resamples of the correlation CIs.
        device: `auto`, `cpu`, `cuda`.
    """

    name: str = spec("metric-study", pattern=PLAIN_NAME, doc="study name (output folder name under output)")
    output: str = spec("runs/study", doc="where results go")
    seed: int = spec(0, ge=0, doc="every random choice")
    datasets: tuple[str, ...] = spec(("digits",), doc="datasets by name")
    architectures: tuple[ModelConfig, ...] = (ModelConfig("lenet"), ModelConfig("convnet", width=8, bn=False))
    variants: tuple[VariantConfig, ...] = (VariantConfig("vanilla"),)
    attacks: tuple[AttackConfig, ...] = (AttackConfig("dlg_paper", {"iterations": 30}, known_labels=True),)
    images: int = spec(16, ge=1, doc="client images attacked per dataset")
    attack_batch: int = spec(4, ge=1, doc="images per FedSGD update")
    classifier_epochs: int = spec(2, ge=1, doc="epochs each classifier variant is trained")
    classifier_lr: float = spec(0.05, gt=0.0, doc="its SGD learning rate")
    oracle_epochs: int = spec(15, ge=1, doc="epochs of the machine annotator")
    holdout: str = spec("attack", choices=HOLDOUTS, doc="what SemSim leaves out in each fold")
    semsim: Mapping[str, Any] = field(default_factory=dict)
    human_annotations: str | None = spec(None, doc="JSON Lines of people's judgements, used instead of the oracle")
    n_boot: int = spec(1000, ge=1, doc="bootstrap resamples of the correlation CIs")
    device: str = spec("auto", pattern=DEVICE, doc="where classifiers, attacks and metrics run")

    def __post_init__(self) -> None:
        check(self)
        owner = type(self).__name__
        for index, dataset in enumerate(self.datasets):
            problem = check_dataset_name(dataset)
            if problem:
                raise FieldError(owner, f"datasets[{index}]", problem)
        groups = len(self.attacks) if self.holdout == "attack" else len(self.architectures)
        if groups < 2:
            raise FieldError(owner, "holdout", f"leave-one-{self.holdout}-out needs at least two {self.holdout}s")
        for section, names in (("variants", [v.name for v in self.variants]), ("attacks", [a.name for a in self.attacks])):
            for index, name in enumerate(names):
                if name in names[:index]:  # each is a folder of the study's run directories
                    raise FieldError(owner, f"{section}[{index}].name", f"{name!r} is already a{'n' if section == 'attacks' else ''} {section[:-1]}'s name; names must be unique")
        if self.images % self.attack_batch:
            raise FieldError(owner, "images", f"{self.images} is not a multiple of attack_batch ({self.attack_batch})")
        try:
            build(TrainConfig, self.semsim, owner="")  # the keys given; the study fills the others (`pipeline.study`)
        except FieldError as err:
            raise err.within(owner, "semsim") from None


def load_study(path: str | Path) -> StudyScenario:
    """Read and validate a study scenario YAML.

    Raises:
        ScenarioError: the file is missing, not YAML, or a key/value is not allowed (the
            message names the file, the key path and what is allowed).
    """
    return parse_yaml_as(StudyScenario, read_text(path), source=str(path))
