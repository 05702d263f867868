"""Device choice and CPU threading, feature-detected so the same code runs on PyTorch 1.13 (CPU) and 2.x (CUDA/MPS)."""
from __future__ import annotations

import os

import torch

from .events import TrainerError


def mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def pick_device(requested: str = "auto") -> str:
    if requested == "auto":
        if torch.cuda.is_available():
            return "cuda"
        return "mps" if mps_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise TrainerError("bad_args", "--device cuda was requested but PyTorch sees no CUDA GPU. Install a CUDA build "
                           "of PyTorch or use --device auto.")
    if requested == "mps" and not mps_available():
        raise TrainerError("bad_args", "--device mps was requested but this PyTorch has no Apple MPS support. Use "
                           "--device auto (the repotune.training.device setting) or cpu.")
    return requested


def set_cpu_threads(threads: int | None) -> int:
    """On small CPUs one PyTorch thread is fastest: the BLAS library starts its own threads, and two layers of
    threads on two cores ran a training step 2x slower here. Larger machines get half their cores."""
    if threads is None:
        cores = os.cpu_count() or 1
        threads = 1 if cores <= 4 else max(1, cores // 2)
    torch.set_num_threads(max(1, threads))
    return torch.get_num_threads()
