"""SemSim: the learned, human-aligned leakage metric of Sun et al. (NeurIPS 2023).

`data` holds annotation records and the authors' release layout, `model` the embedding
backbones, `config` and `train` the triplet training, `score` the metric itself and
`correlate` the rank correlations of the paper's study. Depends on torch, numpy, scipy and
PIL only; the exports load on first use (`semsim.config` needs no torch).
"""

from flaudit.lazy import lazy_exports

_EXPORTS = {
    "Annotation": "semsim.data",
    "LoadResult": "semsim.data",
    "Problem": "semsim.data",
    "TrainConfig": "semsim.config",
    "build_triplets": "semsim.train",
    "load_scorer": "semsim.score",
    "read_annotations": "semsim.data",
    "read_release": "semsim.data",
    "semsim": "semsim.score",
    "train_semsim": "semsim.train",
    "write_annotations": "semsim.data",
    "write_release": "semsim.data",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
