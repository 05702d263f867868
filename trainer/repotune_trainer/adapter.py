"""LoRA adapter GGUF files, in the form llama.cpp loads (llama_adapter_lora_init).

general.type = "adapter", adapter.type = "lora", adapter.lora.alpha (float; when it is missing llama.cpp silently
uses scale 1 instead of alpha/rank), general.architecture equal to the base's. Each adapted matrix W gets
`<W name>.lora_a` = A (rank, n_in), ne [n_in, rank], and `<W name>.lora_b` = B (n_out, rank), ne [rank, n_out],
stored F32 (an F16 adapter already moves probabilities by ~3e-3).
"""
from __future__ import annotations

from typing import Dict, Tuple

import numpy as np
import torch

from .events import TrainerError
from .gguf import GGUFError, GGUFReader, GGUFWriter, f32


def write_adapter(path: str, arch: str, alpha: float, state: Dict[str, torch.Tensor], base_name: str = "") -> None:
    w = GGUFWriter()
    w.add("general.architecture", arch)
    w.add("general.type", "adapter")
    w.add("general.name", f"repotune-lora{(' for ' + base_name) if base_name else ''}")
    w.add("adapter.type", "lora")
    w.add("adapter.lora.alpha", f32(alpha))
    for name in sorted(state):
        w.add_tensor(name, state[name].detach().cpu().float().contiguous().numpy())
    w.write(path)


def read_adapter(path: str) -> Tuple[str, float, int, Dict[str, torch.Tensor]]:
    """(architecture, alpha, rank, {tensor name: tensor in PEFT shape})."""
    try:
        r = GGUFReader(path)
    except GGUFError as e:
        raise TrainerError("bad_args", f"The adapter {path} could not be read: {e}") from e
    if r.get("general.type") != "adapter" or r.get("adapter.type") != "lora":
        raise TrainerError("bad_args", f"{path} is not a LoRA adapter GGUF (general.type/adapter.type missing).")
    state = {name: torch.from_numpy(np.array(t.data, dtype=np.float32)) for name, t in r.tensors.items()}
    ranks = {t.shape[0] for n, t in state.items() if n.endswith(".lora_a")}
    if len(ranks) != 1:
        raise TrainerError("bad_args", f"{path} mixes LoRA ranks {sorted(ranks)}; the trainer expects one rank.")
    return r.architecture, float(r.get("adapter.lora.alpha", 0.0)), ranks.pop(), state
