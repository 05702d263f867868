"""`selftest`: can this Python train? Prints one TrainerSelftest line (src/protocol/trainer.ts)."""
from __future__ import annotations

import json
import sys


def _memory(device: str) -> dict:
    """What the device is and how much memory it has, for choosing a model and a plan (`None` when not known)."""
    import platform
    import torch
    from .device import free_memory, system_memory
    name, total = None, None
    if device == "cuda":
        props = torch.cuda.get_device_properties(torch.cuda.current_device())
        name, total = props.name, int(props.total_memory)
    elif device == "mps":
        limit = getattr(getattr(torch, "mps", None), "recommended_max_memory", None)
        name, total = "Apple GPU (MPS)", int(limit()) if limit else None
    else:
        name = platform.processor() or platform.machine() or "CPU"
        total = system_memory("MemTotal", "SC_PHYS_PAGES")
    return {"device_name": name, "memory_total": total, "memory_free": free_memory(device)}


def _matmul_flops(device: str, seconds: float = 0.25) -> float | None:
    """Measured dense matmul throughput (FLOP/s) at the precision training computes in: bf16 on CUDA, float32
    elsewhere. The training plan works out a first run's time from it; after one run, measured speed replaces it."""
    import time
    import torch
    try:
        on_cuda = device == "cuda"
        n = 2048 if device != "cpu" else 512
        dtype = torch.bfloat16 if on_cuda and torch.cuda.is_bf16_supported() else torch.float32
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)

        def sync():
            if on_cuda:
                torch.cuda.synchronize()
            elif device == "mps":
                torch.mps.synchronize()

        a @ b  # warm-up: kernels chosen, threads started
        sync()
        count, start = 0, time.perf_counter()
        while True:
            a @ b
            count += 1
            if count % 4 == 0:
                sync()
                elapsed = time.perf_counter() - start
                if elapsed >= seconds:
                    return 2.0 * n ** 3 * count / elapsed
    except Exception:  # noqa: BLE001 - a figure for a time estimate; its absence only means "no estimate yet"
        return None


def selftest() -> int:
    out = {"ok": False, "python": sys.executable, "torch": None, "numpy": None, "device": None}
    try:
        import numpy
        out["numpy"] = numpy.__version__
    except ImportError:
        out["message"] = f"NumPy is not installed for {sys.executable}. Install it with: {sys.executable} -m pip install numpy"
    try:
        import torch
        out["torch"] = torch.__version__
    except ImportError:
        out["message"] = (f"PyTorch is not installed for {sys.executable}. Install it with: {sys.executable} -m pip "
                          "install torch (see pytorch.org for the CUDA build), or set repotune.pythonPath to a Python "
                          "that has it.")
    if out["torch"] and out["numpy"]:
        try:
            from .device import pick_device
            device = pick_device("auto")
            x = torch.ones(4, 4, device=device, requires_grad=True)
            (x * x).sum().backward()  # gradient 2x: 32 in total
            out["device"] = device
            out.update(_memory(device))
            out["matmul_flops"] = _matmul_flops(device)
            out["ok"] = bool(float(x.grad.sum()) == 32.0)
            if not out["ok"]:
                out["message"] = f"PyTorch on {device} computed a wrong gradient; reinstall PyTorch."
        except Exception as e:  # noqa: BLE001 - a broken install can fail in any way; report it, do not crash
            out["message"] = f"PyTorch is installed but could not run a small computation: {type(e).__name__}: {e}"
    print(json.dumps(out))
    return 0 if out["ok"] else 1
