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


def schema_failures(stdout: str):
    """Lines of trainer stdout that the real zod schema of src/protocol/trainer.ts rejects (bundled on the fly with
    esbuild), as [{line, reason}]; None when node or esbuild is missing here."""
    from shutil import which
    repo = os.path.dirname(TRAINER_ROOT)
    if which("node") is None or not os.path.isdir(os.path.join(repo, "node_modules", "esbuild")):
        return None
    script = (
        "const esbuild = require('esbuild');"
        "const r = esbuild.buildSync({entryPoints: ['src/protocol/trainer.ts'], bundle: true, format: 'cjs',"
        " platform: 'node', write: false});"
        "const m = {exports: {}}; new Function('module', 'exports', 'require', r.outputFiles[0].text)(m, m.exports, require);"
        "const lines = require('fs').readFileSync(0, 'utf8').split('\\n').filter(Boolean);"
        "console.log(JSON.stringify(lines.map(l => m.exports.parseTrainerLine(l)).filter(x => !x.ok)));"
    )
    res = subprocess.run(["node", "-e", script], input=stdout, capture_output=True, text=True, cwd=repo, timeout=60)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def sparse_model(path, width: int, n_layer: int, dtype: str = "f16") -> str:
    """A valid llama GGUF of any size (the tiny model's metadata and vocabulary at `width` and `n_layer`) whose
    tensor data is a hole in a sparse file: the header is real and every tensor reads as zeros, so the memory
    estimate and the preflight see a big model without the disk or the time to write one."""
    from repotune_trainer.gguf import GGML_TYPE_IDS, GGUFWriter, _PendingTensor, tensor_nbytes, u32
    from repotune_trainer.tiny import build

    wr = build("llama", 0, "f32", False, 64)
    arch = "llama"
    n_ff, kv = 3 * width, width // 4 * 2
    for key, value in (("embedding_length", width), ("feed_forward_length", n_ff), ("block_count", n_layer),
                       ("rope.dimension_count", width // 4)):
        wr.metadata[f"{arch}.{key}"] = u32(value)
    mat = GGML_TYPE_IDS[dtype.upper()]
    n_vocab = len(TOKENS)
    shapes = [("token_embd.weight", [width, n_vocab], mat), ("output_norm.weight", [width], 0),
              ("output.weight", [width, n_vocab], mat)]
    for i in range(n_layer):
        p = f"blk.{i}."
        shapes += [(p + "attn_norm.weight", [width], 0), (p + "ffn_norm.weight", [width], 0),
                   (p + "attn_q.weight", [width, width], mat), (p + "attn_k.weight", [width, kv], mat),
                   (p + "attn_v.weight", [width, kv], mat), (p + "attn_output.weight", [width, width], mat),
                   (p + "ffn_gate.weight", [width, n_ff], mat), (p + "ffn_up.weight", [width, n_ff], mat),
                   (p + "ffn_down.weight", [n_ff, width], mat)]

    class _Hole:
        def __init__(self, n):
            self.n = n

        def __len__(self):
            return self.n

    out = GGUFWriter(alignment=wr.alignment, metadata=wr.metadata)
    out.tensors = [_PendingTensor(name, ne, t, _Hole(tensor_nbytes(t, ne))) for name, ne, t in shapes]
    header, offsets = out.to_bytes_header()
    end = len(header) + offsets[-1] + len(out.tensors[-1].data)
    with open(path, "wb") as f:
        f.write(header)
        f.truncate(end)
    return str(path)
