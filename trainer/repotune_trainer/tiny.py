"""A tiny, deterministic GGUF code model for tests and demos (nothing can be downloaded in CI).

Two layers, width 64 (or `width`, FFN 3 * width), grouped-query attention, a byte-level SentencePiece vocabulary with Qwen2.5-Coder's FIM
tokens. `llama` stores Q/K in llama.cpp's permuted layout with NORM RoPE; `qwen2` adds Q/K/V biases and uses NEOX
RoPE; `starcoder2` has LayerNorms with biases, biases on every matrix but the head, NEOX RoPE and an ungated GELU FFN
(the tokenizer is the same for all three). Random weights are scaled so that every layer is active (unit-variance outputs) and the frozen output head can
express confident predictions: a LoRA then teaches it a repository's text in seconds.
"""
from __future__ import annotations

from typing import Dict, List

import numpy as np

from . import gguf
from .gguf import GGUFWriter, array, f32, u32
from . import kquants
from .quants import quantize_q8_0, F32, F16, Q8_0, Q4_K, Q6_K

SPECIALS = ["<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", "<|fim_pad|>", "<|endoftext|>",
            "<|repo_name|>", "<|file_sep|>"]
# llama.cpp token types
NORMAL, UNKNOWN, CONTROL, BYTE = 1, 2, 3, 6

CONFIG = dict(n_embd=64, n_layer=2, n_head=4, n_head_kv=2, n_ff=192, context_length=4096, rope_base=10000.0,
              rms_eps=1e-5)
ARCHES = ("llama", "qwen2", "starcoder2")
DTYPES = {"f32": F32, "f16": F16, "q8_0": Q8_0, "q4_k_m": Q4_K}
FILE_TYPES = {"f32": 0, "f16": 1, "q8_0": 7, "q4_k_m": 15}     # llama_ftype: LLAMA_FTYPE_MOSTLY_Q4_K_M = 15
K_QUANT_WIDTH = kquants.QK_K


def config(width: int = 64) -> Dict[str, float]:
    """CONFIG at another width: n_embd = width, FFN 3 * width, same 4 query / 2 KV heads (head_dim = width / 4)."""
    if width <= 0 or width % 16:
        raise ValueError(f"tiny-model width must be a positive multiple of 16, got {width}")
    return dict(CONFIG, n_embd=width, n_ff=3 * width)


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


def vocab() -> Dict[str, list]:
    tokens = ["<unk>", "<s>", "</s>"] + SPECIALS + [f"<0x{b:02X}>" for b in range(256)] + ["\u2581"]
    types = [UNKNOWN, CONTROL, CONTROL] + [CONTROL] * len(SPECIALS) + [BYTE] * 256 + [NORMAL]
    scores = [0.0] * len(tokens)
    return {"tokens": tokens, "types": types, "scores": scores}


def special_id(name: str) -> int:
    return vocab()["tokens"].index(name)


def _permute_for_norm_rope(w: np.ndarray, n_head: int) -> np.ndarray:
    """What llama.cpp's converter does to HF Q/K weights so that NORM RoPE (adjacent pairs) equals HF's halves.

    Random weights do not need it for correctness, but applying it keeps the tiny llama honest: its Q/K are in the
    same layout as a converted real model's.
    """
    n_out = w.shape[0]
    return w.reshape(n_head, 2, n_out // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def make_weights(arch: str, seed: int, tied: bool = False, width: int = 64) -> Dict[str, np.ndarray]:
    c = config(width)
    rng = np.random.default_rng(seed)
    n_vocab = len(vocab()["tokens"])
    d, ff = c["n_embd"], c["n_ff"]
    head_dim = d // c["n_head"]
    kv = head_dim * c["n_head_kv"]

    def lin(n_out: int, n_in: int, gain: float = 1.0) -> np.ndarray:
        return (rng.standard_normal((n_out, n_in)) * gain / np.sqrt(n_in)).astype(np.float32)

    def norm_weight(n: int) -> np.ndarray:
        return (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)

    w: Dict[str, np.ndarray] = {"token_embd.weight": rng.standard_normal((n_vocab, d)).astype(np.float32)}
    if arch == "starcoder2":
        return _starcoder2_weights(w, rng, lin, norm_weight, tied, c)
    for i in range(c["n_layer"]):
        p = f"blk.{i}."
        w[p + "attn_norm.weight"] = norm_weight(d)
        q, k = lin(d, d), lin(kv, d)
        if arch == "llama":
            q, k = _permute_for_norm_rope(q, c["n_head"]), _permute_for_norm_rope(k, c["n_head_kv"])
        w[p + "attn_q.weight"], w[p + "attn_k.weight"], w[p + "attn_v.weight"] = q, k, lin(kv, d)
        if arch == "qwen2":
            w[p + "attn_q.bias"] = (0.1 * rng.standard_normal(d)).astype(np.float32)
            w[p + "attn_k.bias"] = (0.1 * rng.standard_normal(kv)).astype(np.float32)
            w[p + "attn_v.bias"] = (0.1 * rng.standard_normal(kv)).astype(np.float32)
        # Residual branches are scaled down so the embedding still dominates the stream, as in a trained model.
        w[p + "attn_output.weight"] = lin(d, d, 0.5)
        w[p + "ffn_norm.weight"] = norm_weight(d)
        w[p + "ffn_gate.weight"], w[p + "ffn_up.weight"] = lin(ff, d), lin(ff, d)
        w[p + "ffn_down.weight"] = lin(d, ff, 0.5)
    w["output_norm.weight"] = norm_weight(d)
    if not tied:
        # A larger head than 1/sqrt(n) lets a normalized hidden state reach a near-certain next-token prediction.
        w["output.weight"] = lin(n_vocab, d, 2.0)
    return w


def _starcoder2_weights(w, rng, lin, norm_weight, tied: bool, c) -> Dict[str, np.ndarray]:
    """LayerNorm weight + bias, biases on Q/K/V/O and on ffn_up/ffn_down, no ffn_gate (llama.cpp's tensor list)."""
    d, ff = c["n_embd"], c["n_ff"]
    kv = d // c["n_head"] * c["n_head_kv"]

    def bias(n: int) -> np.ndarray:
        return (0.1 * rng.standard_normal(n)).astype(np.float32)

    for i in range(c["n_layer"]):
        p = f"blk.{i}."
        w[p + "attn_norm.weight"], w[p + "attn_norm.bias"] = norm_weight(d), bias(d)
        w[p + "attn_q.weight"], w[p + "attn_q.bias"] = lin(d, d), bias(d)
        w[p + "attn_k.weight"], w[p + "attn_k.bias"] = lin(kv, d), bias(kv)
        w[p + "attn_v.weight"], w[p + "attn_v.bias"] = lin(kv, d), bias(kv)
        w[p + "attn_output.weight"], w[p + "attn_output.bias"] = lin(d, d, 0.5), bias(d)
        w[p + "ffn_norm.weight"], w[p + "ffn_norm.bias"] = norm_weight(d), bias(d)
        # GELU keeps about half of a unit-variance input: gain 2 on up keeps the FFN branch as active as SwiGLU's.
        w[p + "ffn_up.weight"], w[p + "ffn_up.bias"] = lin(ff, d, 2.0), bias(ff)
        w[p + "ffn_down.weight"], w[p + "ffn_down.bias"] = lin(d, ff, 0.5), bias(d)
    w["output_norm.weight"], w["output_norm.bias"] = norm_weight(d), bias(d)
    if not tied:
        w["output.weight"] = lin(len(vocab()["tokens"]), d, 2.0)
    return w


def build(arch: str, seed: int = 0, dtype: str = "f32", tied: bool = False, width: int = 64) -> GGUFWriter:
    if arch not in ARCHES:
        raise ValueError(f"unknown tiny-model architecture {arch!r} (choose {', '.join(ARCHES)})")
    if dtype not in DTYPES:
        raise ValueError(f"unknown tiny-model dtype {dtype!r} (choose {', '.join(DTYPES)})")
    c = config(width)
    if dtype == "q4_k_m" and width % K_QUANT_WIDTH:
        raise ValueError(f"--dtype q4_k_m needs a width that is a multiple of {K_QUANT_WIDTH} (K-quant rows), "
                         f"got {width}; use --width {K_QUANT_WIDTH}")
    v = vocab()
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

    for name, value in make_weights(arch, seed, tied, width).items():
        if value.ndim == 1 or dtype == "f32":
            wr.add_tensor(name, value)          # norms and biases stay F32, as llama.cpp's converter keeps them
        elif dtype == "f16":
            wr.add_tensor(name, value.astype(np.float16))
        elif dtype == "q8_0":
            wr.add_tensor(name, quantize_q8_0(value), Q8_0, ne=list(reversed(value.shape)))
        else:
            t = q4_k_m_type(name, c["n_layer"], tied)
            quantize = kquants.quantize_q6_k if t == Q6_K else kquants.quantize_q4_k
            wr.add_tensor(name, quantize(value), t, ne=list(reversed(value.shape)))
    return wr


def write_tiny_model(path: str, arch: str = "llama", seed: int = 0, dtype: str = "f32", tied: bool = False,
                     width: int = 64) -> str:
    build(arch, seed, dtype, tied, width).write(path)
    return path
