"""Shared helpers: tiny models generated per session, token datasets written directly as int32, the CLI as a process."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

TRAINER_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, TRAINER_ROOT)

from repotune_trainer.tiny import vocab, write_tiny_model  # noqa: E402

TOKENS = vocab()["tokens"]
TOKEN_ID = {t: i for i, t in enumerate(TOKENS)}


def encode(text: str) -> list:
    """The tiny model's tokenizer: spaces are "▁", everything else a byte token (what llama.cpp's SPM does for it)."""
    return [TOKEN_ID["\u2581"] if b == 0x20 else TOKEN_ID[f"<0x{b:02X}>"] for b in text.encode("utf-8")]


def fim_example(prefix: str, middle: str, suffix: str) -> list:
    sp = TOKEN_ID
    return ([sp["<|fim_prefix|>"]] + encode(prefix) + [sp["<|fim_suffix|>"]] + encode(suffix) + [sp["<|fim_middle|>"]]
            + encode(middle) + [sp["<|endoftext|>"]])


NO_LOSS_TOKENS = ("<s>", "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", "<|repo_name|>", "<|file_sep|>")


def write_dataset(folder, train_examples, val_examples, seq_len: int, version: int = 2, **meta_overrides) -> str:
    """The dataset step's layout. Version 2 (what src/core/dataset/pack.ts writes): each example whole in the first row
    with room, -1 padding at row tails, a flag byte per token (1 = example start, 2 = never a target: sentinels).
    Version 1: examples back to back, cut at row ends, padding only at the very end, no flag files."""
    os.makedirs(folder, exist_ok=True)
    counts = {}
    no_loss = {TOKEN_ID[t] for t in NO_LOSS_TOKENS}
    for split, examples in (("train", train_examples), ("val", val_examples)):
        if version == 1:
            flat = [t for e in examples for t in e]
            n = -(-len(flat) // seq_len)
            arr = np.full(n * seq_len, -1, dtype="<i4")
            arr[:len(flat)] = flat
        else:
            rows, flag_rows = [], []
            for e in examples:
                e = e[:seq_len]
                r = next((k for k, row in enumerate(rows) if len(row) + len(e) <= seq_len), None)
                if r is None:
                    rows.append([])
                    flag_rows.append([])
                    r = len(rows) - 1
                rows[r] += e
                flag_rows[r] += [(1 if k == 0 else 0) | (2 if t in no_loss else 0) for k, t in enumerate(e)]
            n = len(rows)
            arr = np.full((n, seq_len), -1, dtype="<i4")
            flags = np.zeros((n, seq_len), dtype=np.uint8)
            for k, (row, fl) in enumerate(zip(rows, flag_rows)):
                arr[k, :len(row)] = row
                flags[k, :len(fl)] = fl
            flags.tofile(os.path.join(folder, f"{split}.flags"))
        arr.tofile(os.path.join(folder, f"{split}.bin"))
        counts[split] = n
    meta = {"format": "repotune-tokens", "version": version, "seq_len": seq_len, "dtype": "int32", "pad": -1,
            "train_sequences": counts["train"], "val_sequences": counts["val"], "vocab_size": len(TOKENS),
            "prompt_format": "qwen2.5-coder", "model_path": "", "summary": {}}
    meta.update(meta_overrides)
    with open(os.path.join(folder, "meta.json"), "w") as f:
        json.dump(meta, f)
    return str(folder)


def repetitive_examples(n: int, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    line = 'const greeting = "zebra-quartz-42";\n'
    out = []
    for _ in range(n):
        before, after = int(rng.integers(0, 3)), int(rng.integers(0, 2))
        out.append(fim_example(line * before, line, line * after))
    return out


def run_cli(*args, timeout=120, env_extra=None):
    env = {**os.environ, "PYTHONPATH": TRAINER_ROOT, **(env_extra or {})}
    p = subprocess.run([sys.executable, "-m", "repotune_trainer", *map(str, args)], capture_output=True, text=True,
                       timeout=timeout, env=env)
    return p, parse_events(p.stdout)


def parse_events(stdout: str) -> list:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def train_args(model, data, out, adapter, *extra):
    return ["train", "--model", model, "--data", data, "--out", out, "--adapter-out", adapter, "--threads", "1", *extra]


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """{(arch, dtype): path} for the generated tiny models (plus a tied-output llama under ('llama', 'tied'))."""
    d = tmp_path_factory.mktemp("models")
    out = {}
    for arch in ("llama", "qwen2"):
        for dtype in ("f32", "q8_0"):
            out[(arch, dtype)] = write_tiny_model(str(d / f"{arch}-{dtype}.gguf"), arch, 0, dtype)
    out[("llama", "f16")] = write_tiny_model(str(d / "llama-f16.gguf"), "llama", 0, "f16")
    out[("llama", "tied")] = write_tiny_model(str(d / "llama-tied.gguf"), "llama", 0, "f32", tied=True)
    return out


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    return write_dataset(d, repetitive_examples(24, 0), repetitive_examples(6, 1), seq_len=96)


def assert_behaves_as_dense(pw, n_in: int) -> None:
    """A packed weight computes what its dequantized matrix does: matmul forward and input gradient, embedding rows,
    and a bf16 dequantization equal to the rounded float32 one."""
    import torch
    from repotune_trainer.model import embed_rows, frozen_matmul

    dense = pw.dequantize()
    x = torch.randn(3, n_in, dtype=torch.float32, requires_grad=True)
    y = frozen_matmul(x, pw)
    assert torch.allclose(y, x @ dense.t(), atol=1e-4)
    y.sum().backward()
    assert torch.allclose(x.grad, dense.sum(0).expand(3, -1), atol=1e-4)
    ids = torch.tensor([[4, 0], [5, 4]])
    assert torch.equal(embed_rows(pw, ids), dense[ids])
    assert torch.equal(pw.dequantize(torch.bfloat16), dense.to(torch.bfloat16))


def saved_bytes(fn) -> int:
    """Bytes autograd saves for backward while `fn` runs (what a training step keeps alive between its passes)."""
    import torch

    total = []

    def pack_hook(t):
        total.append(t.numel() * t.element_size())
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack_hook, lambda t: t):
        fn()
    return sum(total)
