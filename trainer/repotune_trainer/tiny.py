"""A tiny, deterministic GGUF code model for tests and demos (nothing can be downloaded in CI).

Two layers, width 64 (or `width`, FFN 3 * width), grouped-query attention, a byte-level SentencePiece vocabulary with Qwen2.5-Coder's FIM
tokens. `llama` stores Q/K in llama.cpp's permuted layout with NORM RoPE; `qwen2` adds Q/K/V biases and uses NEOX
RoPE; `starcoder2` has LayerNorms with biases, biases on every matrix but the head, NEOX RoPE and an ungated GELU FFN
(the tokenizer is the same for all three). Random weights are scaled so that every layer is active (unit-variance outputs) and the frozen output head can
express confident predictions: a LoRA then teaches it a repository's text in seconds.

The shape options (layers, heads, KV heads, FFN, vocabulary, RoPE base, norm epsilon) also give full-size random
models with a real model's shapes for benchmarks; `fast=True` draws those in parallel (see `make_weights`).
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Optional, Tuple

import numpy as np

from . import gguf
from .gguf import GGUFWriter, array, f32, u32
from . import kquants
from .quants import quantize_q8_0, F32, F16, Q8_0, Q4_K, Q6_K

SPECIALS = ["<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", "<|fim_pad|>", "<|endoftext|>",
            "<|repo_name|>", "<|file_sep|>"]
# llama.cpp token types
NORMAL, UNKNOWN, CONTROL, UNUSED, BYTE = 1, 2, 3, 5, 6

CONFIG = dict(n_embd=64, n_layer=2, n_head=4, n_head_kv=2, n_ff=192, context_length=4096, rope_base=10000.0,
              rms_eps=1e-5)
ARCHES = ("llama", "qwen2", "starcoder2")
DTYPES = {"f32": F32, "f16": F16, "q8_0": Q8_0, "q4_k_m": Q4_K}
FILE_TYPES = {"f32": 0, "f16": 1, "q8_0": 7, "q4_k_m": 15}     # llama_ftype: LLAMA_FTYPE_MOSTLY_Q4_K_M = 15
K_QUANT_WIDTH = kquants.QK_K


# config() keyword -> CONFIG key; None keeps the default.
SHAPE_OPTIONS = ("n_layer", "n_head", "n_head_kv", "n_ff", "n_vocab", "rope_base", "rms_eps", "context_length")

# Real models' shapes (from their config.json), for benchmarks: random weights, the tiny byte-level vocabulary padded
# with unused tokens to the real size. Both tie the output head to the embedding in the real files (`tied`).
SHAPES = {
    "qwen2.5-coder-0.5b": dict(width=896, n_layer=24, n_head=14, n_head_kv=2, n_ff=4864, n_vocab=151936,
                               rope_base=1e6, rms_eps=1e-6, context_length=32768),
    "qwen2.5-coder-1.5b": dict(width=1536, n_layer=28, n_head=12, n_head_kv=2, n_ff=8960, n_vocab=151936,
                               rope_base=1e6, rms_eps=1e-6, context_length=32768),
}


def config(width: int = 64, **shape) -> Dict[str, float]:
    """CONFIG at another width: n_embd = width, FFN 3 * width, same 4 query / 2 KV heads (head_dim = width / 4).

    `shape` overrides any of SHAPE_OPTIONS (None = default); `n_vocab` (default: the 267-token base vocabulary) pads
    the vocabulary with unused tokens up to that size."""
    if width <= 0 or width % 16:
        raise ValueError(f"tiny-model width must be a positive multiple of 16, got {width}")
    unknown = set(shape) - set(SHAPE_OPTIONS)
    if unknown:
        raise ValueError(f"unknown tiny-model shape option(s) {', '.join(sorted(unknown))}")
    c = dict(CONFIG, n_embd=width, n_ff=3 * width, n_vocab=BASE_VOCAB)
    c.update({k: v for k, v in shape.items() if v is not None})
    if c["n_layer"] < 1 or c["n_head"] < 1 or c["n_head_kv"] < 1 or c["n_ff"] < 1 or c["context_length"] < 1:
        raise ValueError("tiny-model layers, heads, KV heads, FFN and context length must be at least 1")
    if width % c["n_head"] or (width // c["n_head"]) % 2:
        raise ValueError(f"tiny-model width {width} must split into {c['n_head']} heads of an even size (RoPE pairs)")
    if c["n_head"] % c["n_head_kv"]:
        raise ValueError(f"tiny-model heads ({c['n_head']}) must be a multiple of the KV heads ({c['n_head_kv']})")
    if c["n_vocab"] < BASE_VOCAB:
        raise ValueError(f"tiny-model vocabulary must hold at least the {BASE_VOCAB} base tokens, got {c['n_vocab']}")
    if not (c["rope_base"] > 0 and c["rms_eps"] > 0):
        raise ValueError("tiny-model RoPE base and norm epsilon must be positive")
    return c


def _use_more_bits(i_layer: int, n_layers: int) -> bool:
    # llama-quant.cpp's use_more_bits (integer division as in C++ for these non-negative values)
    return i_layer < n_layers // 8 or i_layer >= 7 * n_layers // 8 or (i_layer - n_layers // 8) % 3 == 2


def q4_k_m_type(name: str, n_layer: int, tied: bool) -> int:
    """The K-quant llama.cpp's Q4_K_M gives a matrix of a (non-MoE, non-Falcon) model whose rows are multiples of 256:
    Q6_K for the output head (token_embd when tied), and for attn_v / ffn_down of the layers use_more_bits picks;
    Q4_K for everything else (llama_tensor_get_type in src/llama-quant.cpp)."""
    if name == "output.weight" or (tied and name == "token_embd.weight"):
        return Q6_K
    if name.endswith(".attn_v.weight") or name.endswith(".ffn_down.weight"):
        if _use_more_bits(int(name.split(".")[1]), n_layer):
            return Q6_K
    return Q4_K


def vocab(n_vocab: Optional[int] = None) -> Dict[str, list]:
    """The byte-level vocabulary; `n_vocab` pads it with unused tokens (llama.cpp type UNUSED) to a real model's size,
    which only matters for the embedding and head shapes."""
    tokens = ["<unk>", "<s>", "</s>"] + SPECIALS + [f"<0x{b:02X}>" for b in range(256)] + ["\u2581"]
    types = [UNKNOWN, CONTROL, CONTROL] + [CONTROL] * len(SPECIALS) + [BYTE] * 256 + [NORMAL]
    if n_vocab is not None and n_vocab > len(tokens):
        extra = n_vocab - len(tokens)
        tokens += [f"<|unused_{i}|>" for i in range(extra)]
        types += [UNUSED] * extra
    scores = [0.0] * len(tokens)
    return {"tokens": tokens, "types": types, "scores": scores}


BASE_VOCAB = len(vocab()["tokens"])


def special_id(name: str) -> int:
    return vocab()["tokens"].index(name)


def _permute_for_norm_rope(w: np.ndarray, n_head: int) -> np.ndarray:
    """What llama.cpp's converter does to HF Q/K weights so that NORM RoPE (adjacent pairs) equals HF's halves.

    Random weights do not need it for correctness, but applying it keeps the tiny llama honest: its Q/K are in the
    same layout as a converted real model's.
    """
    n_out = w.shape[0]
    return w.reshape(n_head, 2, n_out // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


# One tensor to draw: (name, kind, shape, gain, heads to permute Q/K for NORM RoPE or 0). Kinds: "embed" N(0, 1),
# "lin" N(0, gain^2 / n_in), "norm" 1 + 0.1 N(0, 1), "bias" 0.1 N(0, 1).
Recipe = List[Tuple[str, str, Tuple[int, ...], float, int]]


def _recipe(arch: str, tied: bool, c) -> Recipe:
    """Every tensor of the model in drawing order (the order fixes the bytes of the sequential generator)."""
    d, ff, n_vocab = c["n_embd"], c["n_ff"], c["n_vocab"]
    kv = d // c["n_head"] * c["n_head_kv"]
    r: Recipe = [("token_embd.weight", "embed", (n_vocab, d), 1.0, 0)]

    def lin(name, n_out, n_in, gain=1.0, permute=0):
        r.append((name, "lin", (n_out, n_in), gain, permute))

    def vec(name, kind, n):
        r.append((name, kind, (n,), 1.0, 0))

    sc2 = arch == "starcoder2"
    for i in range(c["n_layer"]):
        p = f"blk.{i}."
        if sc2:
            # LayerNorm weight + bias, biases on Q/K/V/O and on ffn_up/ffn_down, no ffn_gate (llama.cpp's list).
            vec(p + "attn_norm.weight", "norm", d), vec(p + "attn_norm.bias", "bias", d)
            lin(p + "attn_q.weight", d, d), vec(p + "attn_q.bias", "bias", d)
            lin(p + "attn_k.weight", kv, d), vec(p + "attn_k.bias", "bias", kv)
            lin(p + "attn_v.weight", kv, d), vec(p + "attn_v.bias", "bias", kv)
            lin(p + "attn_output.weight", d, d, 0.5), vec(p + "attn_output.bias", "bias", d)
            vec(p + "ffn_norm.weight", "norm", d), vec(p + "ffn_norm.bias", "bias", d)
            # GELU keeps about half of a unit-variance input: gain 2 on up keeps the FFN branch as active as SwiGLU's.
            lin(p + "ffn_up.weight", ff, d, 2.0), vec(p + "ffn_up.bias", "bias", ff)
            lin(p + "ffn_down.weight", d, ff, 0.5), vec(p + "ffn_down.bias", "bias", d)
            continue
        vec(p + "attn_norm.weight", "norm", d)
        llama = arch == "llama"
        lin(p + "attn_q.weight", d, d, permute=c["n_head"] if llama else 0)
        lin(p + "attn_k.weight", kv, d, permute=c["n_head_kv"] if llama else 0)
        lin(p + "attn_v.weight", kv, d)
        if arch == "qwen2":
            vec(p + "attn_q.bias", "bias", d), vec(p + "attn_k.bias", "bias", kv), vec(p + "attn_v.bias", "bias", kv)
        # Residual branches are scaled down so the embedding still dominates the stream, as in a trained model.
        lin(p + "attn_output.weight", d, d, 0.5)
        vec(p + "ffn_norm.weight", "norm", d)
        lin(p + "ffn_gate.weight", ff, d), lin(p + "ffn_up.weight", ff, d)
        lin(p + "ffn_down.weight", d, ff, 0.5)
    vec("output_norm.weight", "norm", d)
    if sc2:
        vec("output_norm.bias", "bias", d)
    if not tied:
        # A larger head than 1/sqrt(n) lets a normalized hidden state reach a near-certain next-token prediction.
        lin("output.weight", n_vocab, d, 2.0)
    return r


def _draw(item, rng: np.random.Generator, fast: bool) -> np.ndarray:
    _, kind, shape, gain, permute = item
    if fast:
        x = rng.standard_normal(shape, dtype=np.float32)
        if kind == "lin":
            x *= np.float32(gain / np.sqrt(shape[1]))
    else:
        # float64 draws and this exact arithmetic: the bytes every earlier tiny model had
        x = rng.standard_normal(shape)
        if kind == "lin":
            x = x * gain / np.sqrt(shape[1])
    if kind == "embed" or item[0] == "output.weight":
        # A padded vocabulary's unused tokens get zero rows: in a real model they are never trained and never
        # predicted, and a random row for each would make one of them the likely prediction (they are 99.8% of a
        # 151,936-token vocabulary) and stop generation at once.
        x[BASE_VOCAB:] = 0
    if kind == "norm":
        x = 1.0 + 0.1 * x
    elif kind == "bias":
        x = 0.1 * x
    x = x.astype(np.float32, copy=False)
    return _permute_for_norm_rope(x, permute) if permute else x


def make_weights(arch: str, seed: int, tied: bool = False, width: int = 64, fast: bool = False,
                 **shape) -> Dict[str, np.ndarray]:
    """All tensors as float32. By default one generator draws them in order in float64 (the bytes the tests and
    parity checks know). `fast=True` gives each tensor its own float32 generator seeded from (seed, its index), so
    tensors can be drawn in any order and in parallel: ~4x less work per value, and other (still deterministic)
    numbers. Use it for full-size benchmark models; a 1.5B model takes minutes the default way."""
    recipe = _recipe(arch, tied, config(width, **shape))
    if fast:
        return {item[0]: _draw(item, np.random.default_rng([seed, k]), True) for k, item in enumerate(recipe)}
    rng = np.random.default_rng(seed)
    return {item[0]: _draw(item, rng, False) for item in recipe}


def _encode(name: str, value: np.ndarray, dtype: str, n_layer: int, tied: bool):
    """(name, data, ggml type or None, ne or None) for GGUFWriter.add_tensor."""
    if value.ndim == 1 or dtype == "f32":
        return name, value, None, None       # norms and biases stay F32, as llama.cpp's converter keeps them
    if dtype == "f16":
        return name, value.astype(np.float16), None, None
    ne = list(reversed(value.shape))
    if dtype == "q8_0":
        return name, quantize_q8_0(value), Q8_0, ne
    t = q4_k_m_type(name, n_layer, tied)
    quantize = kquants.quantize_q6_k if t == Q6_K else kquants.quantize_q4_k
    return name, quantize(value), t, ne


def build(arch: str, seed: int = 0, dtype: str = "f32", tied: bool = False, width: int = 64, fast: bool = False,
          **shape) -> GGUFWriter:
    if arch not in ARCHES:
        raise ValueError(f"unknown tiny-model architecture {arch!r} (choose {', '.join(ARCHES)})")
    if dtype not in DTYPES:
        raise ValueError(f"unknown tiny-model dtype {dtype!r} (choose {', '.join(DTYPES)})")
    c = config(width, **shape)
    if dtype == "q4_k_m" and width % K_QUANT_WIDTH:
        raise ValueError(f"--dtype q4_k_m needs a width that is a multiple of {K_QUANT_WIDTH} (K-quant rows), "
                         f"got {width}; use --width {K_QUANT_WIDTH}")
    if dtype == "q4_k_m" and c["n_ff"] % K_QUANT_WIDTH:
        raise ValueError(f"--dtype q4_k_m needs an FFN size that is a multiple of {K_QUANT_WIDTH} (ffn_down's rows), "
                         f"got {c['n_ff']}")
    if dtype == "q8_0" and c["n_ff"] % 32:
        raise ValueError(f"--dtype q8_0 needs an FFN size that is a multiple of 32 (ffn_down's rows), got {c['n_ff']}")
    v = vocab(c["n_vocab"])
    wr = GGUFWriter()
    wr.add("general.architecture", arch)
    wr.add("general.name", f"repotune-tiny-{arch}")
    wr.add("general.file_type", u32(FILE_TYPES[dtype]))
    wr.add(f"{arch}.context_length", u32(c["context_length"]))
    wr.add(f"{arch}.embedding_length", u32(c["n_embd"]))
    wr.add(f"{arch}.block_count", u32(c["n_layer"]))
    wr.add(f"{arch}.feed_forward_length", u32(c["n_ff"]))
    wr.add(f"{arch}.attention.head_count", u32(c["n_head"]))
    wr.add(f"{arch}.attention.head_count_kv", u32(c["n_head_kv"]))
    wr.add(f"{arch}.rope.dimension_count", u32(c["n_embd"] // c["n_head"]))
    wr.add(f"{arch}.rope.freq_base", f32(c["rope_base"]))
    # starcoder2 uses LayerNorm, whose epsilon has its own key (llama.cpp reads it as required).
    eps_key = "layer_norm_epsilon" if arch == "starcoder2" else "layer_norm_rms_epsilon"
    wr.add(f"{arch}.attention.{eps_key}", f32(c["rms_eps"]))
    wr.add("tokenizer.ggml.model", "llama")
    wr.add("tokenizer.ggml.tokens", array(gguf.STRING, v["tokens"]))
    wr.add("tokenizer.ggml.scores", array(gguf.FLOAT32, v["scores"]))
    wr.add("tokenizer.ggml.token_type", array(gguf.INT32, v["types"]))
    ids = {t: i for i, t in enumerate(v["tokens"])}
    wr.add("tokenizer.ggml.unknown_token_id", u32(ids["<unk>"]))
    wr.add("tokenizer.ggml.bos_token_id", u32(ids["<s>"]))
    wr.add("tokenizer.ggml.eos_token_id", u32(ids["</s>"]))
    wr.add("tokenizer.ggml.eot_token_id", u32(ids["<|endoftext|>"]))
    wr.add("tokenizer.ggml.padding_token_id", u32(ids["<|fim_pad|>"]))
    wr.add("tokenizer.ggml.fim_pre_token_id", u32(ids["<|fim_prefix|>"]))
    wr.add("tokenizer.ggml.fim_suf_token_id", u32(ids["<|fim_suffix|>"]))
    wr.add("tokenizer.ggml.fim_mid_token_id", u32(ids["<|fim_middle|>"]))
    wr.add("tokenizer.ggml.fim_pad_token_id", u32(ids["<|fim_pad|>"]))
    wr.add("tokenizer.ggml.fim_rep_token_id", u32(ids["<|repo_name|>"]))
    wr.add("tokenizer.ggml.fim_sep_token_id", u32(ids["<|file_sep|>"]))
    wr.add("tokenizer.ggml.add_bos_token", True)
    wr.add("tokenizer.ggml.add_eos_token", False)
    wr.add("tokenizer.ggml.add_space_prefix", False)

    recipe = _recipe(arch, tied, c)
    if fast:
        # Each tensor has its own generator, so tensors are drawn and quantized in parallel threads (NumPy releases
        # the GIL in both); map() keeps the file's tensor order.
        def one(k: int):
            item = recipe[k]
            return _encode(item[0], _draw(item, np.random.default_rng([seed, k]), True), dtype, c["n_layer"], tied)
        with ThreadPoolExecutor(max_workers=max(1, min(16, os.cpu_count() or 1))) as pool:
            done = list(pool.map(one, range(len(recipe))))
        # handed over one by one, so each quantized array is freed once the writer holds its bytes
        encoded = (done.pop(0) for _ in range(len(done)))
    else:
        rng = np.random.default_rng(seed)
        encoded = (_encode(item[0], _draw(item, rng, False), dtype, c["n_layer"], tied) for item in recipe)
    for name, data, ggml_type, ne in encoded:
        wr.add_tensor(name, data, ggml_type, ne=ne)
    return wr


def write_tiny_model(path: str, arch: str = "llama", seed: int = 0, dtype: str = "f32", tied: bool = False,
                     width: int = 64, fast: bool = False, **shape) -> str:
    build(arch, seed, dtype, tied, width, fast, **shape).write(path)
    return path
