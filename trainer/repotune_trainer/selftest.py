"""`selftest`: can this Python train? Prints one TrainerSelftest line (src/protocol/trainer.ts)."""
from __future__ import annotations

import json
import sys


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
            out["ok"] = bool(float(x.grad.sum()) == 32.0)
            if not out["ok"]:
                out["message"] = f"PyTorch on {device} computed a wrong gradient; reinstall PyTorch."
        except Exception as e:  # noqa: BLE001 - a broken install can fail in any way; report it, do not crash
            out["message"] = f"PyTorch is installed but could not run a small computation: {type(e).__name__}: {e}"
    print(json.dumps(out))
    return 0 if out["ok"] else 1
