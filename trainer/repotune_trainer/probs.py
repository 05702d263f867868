"""`probs`: what the model predicts for a token sequence, for comparison with node-llama-cpp (test/parity).

Prints one JSON object: the greedy continuation of the prompt and, for every position after the last prompt token
(teacher-forced on that continuation), the full next-token distribution (softmax of the raw logits).
"""
from __future__ import annotations

import json
import sys

import torch

from .adapter import read_adapter
from .device import pick_device
from .events import TrainerError
from .model import LORA_TARGETS, LoraModel, open_model


def load_model(model_path: str, adapter_path: str | None, device: str = "cpu") -> LoraModel:
    reader = open_model(model_path)
    if adapter_path is None:
        return LoraModel(reader, rank=0, device=device)
    arch, alpha, rank, state = read_adapter(adapter_path)
    if arch != reader.architecture:
        raise TrainerError("bad_args", f"The adapter is for '{arch}' but the model is '{reader.architecture}'.")
    targets = sorted({n.split(".")[2] for n in state if n.endswith(".lora_a")}, key=LORA_TARGETS.index)
    m = LoraModel(reader, rank=rank, alpha=alpha, targets=targets, device=device)
    m.load_lora_state(state)
    return m


@torch.no_grad()
def greedy_with_probs(model: LoraModel, prompt: list, n_predict: int):
    seq = list(prompt)
    for _ in range(n_predict):
        logits = model(torch.tensor([seq], device=model.device))[0, -1]
        seq.append(int(logits.argmax()))
    # One teacher-forced pass over the whole sequence gives the distribution at every generated position.
    logits = model(torch.tensor([seq[:-1]], device=model.device))[0, len(prompt) - 1:]
    probs = torch.softmax(logits.double(), dim=-1).float()
    return seq[len(prompt):], probs.cpu()


def run_probs(args) -> int:
    try:
        tokens = [int(t) for t in args.tokens.split(",") if t.strip()]
    except ValueError:
        print(json.dumps({"error": "--tokens must be comma-separated integers"}))
        return 2
    try:
        model = load_model(args.model, args.adapter, pick_device(args.device))
        model.eval()
        cont, probs = greedy_with_probs(model, tokens, args.n_predict)
    except TrainerError as e:
        print(json.dumps({"error": e.message, "code": e.code}))
        return 1
    sys.stdout.write(json.dumps({"prompt": tokens, "tokens": cont, "probs": [[round(float(p), 9) for p in row]
                                                                              for row in probs]}) + "\n")
    return 0
