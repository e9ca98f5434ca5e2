"""What can run on this machine: metrics (their weights), datasets, devices; and why not.

`flaudit doctor` prints this; the scorer itself never needs it (it marks a metric unavailable
when building it fails), but a user wants to know before a long run.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass


@dataclass(frozen=True)
class Availability:
    """One thing that may or may not be usable here.

    Args:
        kind: "metric", "dataset", "device" or "package".
        name: its name.
        available: whether it can be used.
        detail: where it comes from when available, what to do when not.
    """

    kind: str
    name: str
    available: bool
    detail: str


def metric_availability() -> list[Availability]:
    """Each metric, with the weight files it needs (checked in the caches, nothing downloaded)."""
    from audit.functional.weights import ALEXNET, FID_INCEPTION, lpips_linear_layers_path

    out = [Availability("metric", name, True, "pure tensor maths") for name in ("mse", "psnr", "ssim")]
    if importlib.util.find_spec("lpips") is None:
        out.append(Availability("metric", "lpips", False, "the lpips package is missing: pip install lpips"))
    else:
        linear = lpips_linear_layers_path()
        if not linear.is_file():
            out.append(Availability("metric", "lpips", False, f"linear layers {linear} missing: pip install --force-reinstall lpips"))
        elif not ALEXNET.available():
            out.append(Availability("metric", "lpips", False, ALEXNET.not_cached_message()))
        else:
            out.append(Availability("metric", "lpips", True, f"AlexNet {ALEXNET.path}, linear layers {linear}"))
    if importlib.util.find_spec("pytorch_fid") is None:
        out.append(Availability("metric", "fid", False, "the pytorch-fid package is missing: pip install pytorch-fid"))
    elif not FID_INCEPTION.available():
        out.append(Availability("metric", "fid", False, FID_INCEPTION.not_cached_message()))
    else:
        out.append(Availability("metric", "fid", True, f"Inception {FID_INCEPTION.path}"))
    semsim = importlib.util.find_spec("semsim") is not None
    out.append(Availability("metric", "semsim", semsim, "needs a trained checkpoint (audit.semsim_checkpoint in the scenario)"
                            if semsim else "the semsim package is not installed with this checkout"))
    out.append(Availability("metric", "oracle", True, "trained on the run's clean training split on first use, then cached in RUN_DIR/cache"))
    return out


def dataset_availability() -> list[Availability]:
    """Every registered dataset, asked of `fl_sim.data` (embedded ones load; others are checked on disk)."""
    try:
        from fl_sim.data import dataset_availability as fl_sim_availability
    except ImportError as err:
        return [Availability("dataset", "?", False, f"fl_sim.data is not importable here ({err})")]
    out = []
    for name, reason in fl_sim_availability().items():
        out.append(Availability("dataset", name, reason is None, "loads here" if reason is None else reason))
    return out


def device_availability() -> list[Availability]:
    """CPU always; CUDA GPUs and Apple MPS where present."""
    import torch

    out = [Availability("device", "cpu", True, f"{torch.get_num_threads()} torch threads")]
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            out.append(Availability("device", f"cuda:{index}", True, f"{props.name}, {props.total_memory / 2**30:.0f} GiB"))
    else:
        built = torch.version.cuda
        why = f"torch built with CUDA {built} but no GPU is visible" if built else "this torch build has no CUDA"
        out.append(Availability("device", "cuda", False, why))
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        out.append(Availability("device", "mps", True, "Apple Metal"))
    return out


def package_availability() -> list[Availability]:
    """The packages the runs need, found without importing them (so this part needs no torch)."""
    out = []
    for module, pip in (("torch", "torch"), ("torchvision", "torchvision"), ("flwr", "flwr[simulation]"), ("ray", "flwr[simulation]"), ("opacus", "opacus"),
                        ("tensorboard", "tensorboard"), ("lpips", "lpips"), ("pytorch_fid", "pytorch-fid"),
                        ("skimage", "scikit-image"), ("sklearn", "scikit-learn")):
        found = importlib.util.find_spec(module) is not None
        out.append(Availability("package", module, found, "installed" if found else f"pip install {pip}"))
    return out


def availability() -> list[Availability]:
    """Everything `flaudit doctor` reports."""
    return package_availability() + metric_availability() + dataset_availability() + device_availability()
