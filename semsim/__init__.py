"""SemSim: the learned, human-aligned leakage metric of Sun et al. (NeurIPS 2023).

`data` holds annotation records and the authors' release layout, `model` the embedding
backbones, `train` the triplet training, `score` the metric itself and `correlate` the
rank correlations of the paper's study. Depends on torch, numpy, scipy and PIL only.
"""

from semsim.data import Annotation, LoadResult, Problem, read_annotations, read_release, write_annotations, write_release
from semsim.score import load_scorer, semsim
from semsim.train import TrainConfig, build_triplets, train_semsim

__all__ = [
    "Annotation",
    "LoadResult",
    "Problem",
    "TrainConfig",
    "build_triplets",
    "load_scorer",
    "read_annotations",
    "read_release",
    "semsim",
    "train_semsim",
    "write_annotations",
    "write_release",
]
