"""llama, qwen2 and starcoder2 forward passes in PyTorch, computed directly on GGUF-layout weights with LoRA adapters.

The conventions are llama.cpp's, because llama.cpp serves what we train (test/parity checks the numbers):
- a GGUF matrix with ne = [n_in, n_out] is a (n_out, n_in) array and y = x @ W.T;
- llama uses NORM RoPE (adjacent pairs; the converter permuted Q/K for it), qwen2 NEOX RoPE (halves) and Q/K/V biases;
- starcoder2 (llama.cpp's src/models/starcoder2.cpp): LayerNorm with weight and bias (eps from
  `starcoder2.attention.layer_norm_epsilon`) before attention, before the FFN and at the output; NEOX RoPE; biases on
  Q, K, V, attention output, ffn_up and ffn_down; an ungated FFN down(gelu(up x)) with ggml's tanh-form GELU;
- query head h reads KV head h // (n_head / n_head_kv); scores are scaled by 1/sqrt(head_dim);
- no `output.weight` means the output head is `token_embd` (tied).
Frozen weights stay packed (quants.PackedWeight) and are dequantized inside FrozenMatmul, which saves only the packed
form for backward: a quantized base costs its quantized size in memory, not its dequantized size.
"""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint

from .memory import loss_chunk_positions

from .events import TrainerError
from .gguf import GGUFError, GGUFReader
from .quants import PackedWeight, UnsupportedQuantError, base_weight_type, dequantize, pack, quantize

SUPPORTED_ARCHES = ("llama", "qwen2", "starcoder2")
LORA_TARGETS = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")
# The matrices each architecture has (and so the LoRA targets it can take): starcoder2's FFN has no gate.
ARCH_MATRICES = {
    "llama": LORA_TARGETS,
    "qwen2": LORA_TARGETS,
    "starcoder2": ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_up", "ffn_down"),
}
# Bias tensors: llama.cpp requires these for starcoder2 (attn_q/k/v biases are optional there, as for qwen2).
_REQUIRED_BIASES = {"starcoder2": ("attn_norm", "ffn_norm", "attn_output", "ffn_up", "ffn_down")}
_OPTIONAL_BIASES = ("attn_q", "attn_k", "attn_v")
_LAYER_NORM_ARCHES = ("starcoder2",)
_NEOX_ARCHES = ("qwen2", "starcoder2")
_HAS_SDPA = hasattr(F, "scaled_dot_product_attention")
# `--targets` names: the short forms and the GGUF tensor names they stand for.
TARGET_ALIASES = {"q": "attn_q", "k": "attn_k", "v": "attn_v", "o": "attn_output", "gate": "ffn_gate",
                  "up": "ffn_up", "down": "ffn_down"}
# torch.utils.checkpoint's use_reentrant argument (PyTorch >= 1.11; 2.4+ warns when it is left out).
_CKPT_HAS_REENTRANT_ARG = "use_reentrant" in inspect.signature(torch.utils.checkpoint.checkpoint).parameters


def parse_targets(spec: Optional[str]) -> Optional[List[str]]:
    """`q,k,v,o,gate,up,down` (or the GGUF names attn_q, ...) -> GGUF names in LORA_TARGETS order; None/"" = all.

    Unknown names are a bad_args TrainerError naming them and the accepted ones."""
    if spec is None or not spec.strip():
        return None
    names = [n.strip().lower() for n in spec.split(",") if n.strip()]
    unknown = [n for n in names if n not in TARGET_ALIASES and n not in LORA_TARGETS]
    if unknown:
        raise TrainerError("bad_args", f"Unknown LoRA target(s) {', '.join(repr(n) for n in unknown)} in --targets. "
                           f"Use a comma-separated list of {', '.join(TARGET_ALIASES)} (or "
                           f"{', '.join(LORA_TARGETS)}).")
    chosen = {TARGET_ALIASES.get(n, n) for n in names}
    return [t for t in LORA_TARGETS if t in chosen]


@dataclass
class ModelConfig:
    arch: str
    n_vocab: int
    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_ff: int
    n_rot: int
    rope_base: float
    rope_freq_scale: float
    rms_eps: float          # the norm's epsilon (RMSNorm, or LayerNorm when layer_norm)
    neox_rope: bool
    context_length: int
    layer_norm: bool = False  # LayerNorm with bias (starcoder2) instead of RMSNorm
    gated_ffn: bool = True    # down(silu(gate x) * up x); else down(gelu(up x)) (starcoder2)


def _config(r: GGUFReader) -> ModelConfig:
    arch = r.architecture
    if arch is None:
        raise TrainerError("bad_model", f"{r.path} has no general.architecture key; it is not a llama.cpp model file.")
    if arch not in SUPPORTED_ARCHES:
        raise TrainerError("unsupported_arch",
                           f"The model's architecture is '{arch}', which the trainer cannot train yet. Supported: "
                           f"{', '.join(SUPPORTED_ARCHES)} (for example Qwen2.5-Coder, CodeLlama, DeepSeek-Coder 1.x, "
                           "StarCoder2). "
                           "Choose a GGUF of one of those in the repotune.modelPath setting.")

    def key(name, default=None, required=True):
        v = r.get(f"{arch}.{name}", default)
        if v is None and required:
            raise TrainerError("bad_model", f"{r.path} lacks the metadata key {arch}.{name}; the file is incomplete.")
        return v

    if "token_embd.weight" not in r.tensors:
        raise TrainerError("bad_model", f"{r.path} has no token_embd.weight tensor; the file is incomplete.")
    n_embd = int(key("embedding_length"))
    n_head = int(key("attention.head_count"))
    head_dim = int(key("attention.key_length", n_embd // n_head))
    layer_norm = arch in _LAYER_NORM_ARCHES
    scaling = r.get(f"{arch}.rope.scaling.type", "none")
    freq_scale = 1.0
    if scaling == "linear":
        freq_scale = 1.0 / float(key("rope.scaling.factor", 1.0))
    elif scaling not in ("none", None):
        raise TrainerError("unsupported_arch", f"The model uses '{scaling}' RoPE scaling, which the trainer does not "
                           "implement yet. Choose a GGUF without RoPE scaling (most code models up to 32k context).")
    return ModelConfig(
        arch=arch, n_vocab=int(r.tensors["token_embd.weight"].shape[0]), n_embd=n_embd,
        n_layer=int(key("block_count")), n_head=n_head,
        n_head_kv=int(key("attention.head_count_kv", n_head)), head_dim=head_dim,
        n_ff=int(key("feed_forward_length")), n_rot=int(key("rope.dimension_count", head_dim)),
        rope_base=float(key("rope.freq_base", 10000.0)), rope_freq_scale=freq_scale,
        rms_eps=(float(key("attention.layer_norm_epsilon")) if layer_norm
                 else float(key("attention.layer_norm_rms_epsilon", 1e-5))),
        neox_rope=arch in _NEOX_ARCHES, context_length=int(key("context_length", 4096)),
        layer_norm=layer_norm, gated_ffn="ffn_gate" in ARCH_MATRICES[arch])


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype autocast would use for a CUDA matmul here (bf16 in training), else x's own dtype.

    PyTorch 2.4 moved these queries to device-type arguments; 1.13 has only the CUDA-specific forms."""
    if not x.is_cuda:
        return x.dtype
    try:
        enabled = torch.is_autocast_enabled("cuda")
    except TypeError:
        enabled = torch.is_autocast_enabled()
    if not enabled:
        return x.dtype
    get = getattr(torch, "get_autocast_dtype", None)
    return get("cuda") if get is not None else torch.get_autocast_gpu_dtype()


class FrozenMatmul(torch.autograd.Function):
    """y = x @ dequant(W).T with W frozen; backward recomputes dequant(W) instead of keeping it alive."""

    @staticmethod
    def forward(ctx, x, ggml_type, shape, *parts):
        dtype = _compute_dtype(x)
        w = dequantize(ggml_type, shape, list(parts), dtype)
        ctx.save_for_backward(*parts)
        ctx.ggml_type, ctx.shape, ctx.dtype, ctx.x_dtype = ggml_type, shape, dtype, x.dtype
        return x.to(dtype) @ w.t()

    @staticmethod
    def backward(ctx, grad_y):
        grad_x = None
        if ctx.needs_input_grad[0]:
            w = dequantize(ctx.ggml_type, ctx.shape, list(ctx.saved_tensors), ctx.dtype)
            grad_x = (grad_y.to(ctx.dtype) @ w).to(ctx.x_dtype)
        return (grad_x, None, None) + (None,) * len(ctx.saved_tensors)


def frozen_matmul(x: torch.Tensor, w: PackedWeight) -> torch.Tensor:
    return FrozenMatmul.apply(x, w.ggml_type, tuple(w.shape), *w.parts)


def embed_rows(w: PackedWeight, ids: torch.Tensor) -> torch.Tensor:
    """Dequantize only the embedding rows that are looked up (a 150k-token vocabulary stays packed)."""
    parts = [p[ids] for p in w.parts]
    return dequantize(w.ggml_type, tuple(ids.shape) + tuple(w.shape[1:]), parts, torch.float32)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    xf = x.float()
    return xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps) * weight


def layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
    """ggml_norm (mean removed, biased variance) then * weight + bias, as llama.cpp's LLM_NORM."""
    return F.layer_norm(x.float(), (x.shape[-1],), weight, bias, eps)


_GELU_C = math.sqrt(2.0 / math.pi)


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    """ggml_gelu: 0.5 x (1 + tanh(sqrt(2/pi) x (1 + 0.044715 x^2))) (the tanh form, not erf).

    (ggml's CPU backend reads it from an F16 table of F16-rounded inputs, which moves starcoder2's probabilities by
    ~2e-4 here; CUDA computes it exactly. We compute it exactly: the rounding has no useful gradient.)"""
    try:
        return F.gelu(x, approximate="tanh")   # PyTorch >= 1.12
    except TypeError:
        return 0.5 * x * (1.0 + torch.tanh(_GELU_C * x * (1.0 + 0.044715 * x * x)))


class Rope:
    def __init__(self, cfg: ModelConfig, freq_factors: Optional[torch.Tensor]):
        self.n_rot, self.neox = cfg.n_rot, cfg.neox_rope
        i = torch.arange(cfg.n_rot // 2, dtype=torch.float64)
        inv = cfg.rope_base ** (-2.0 * i / cfg.n_rot)
        if freq_factors is not None:
            inv = inv / freq_factors.double()
        self.inv_freq = inv * cfg.rope_freq_scale
        self._cache: Dict[Tuple[int, str], Tuple[torch.Tensor, torch.Tensor]] = {}

    def cos_sin(self, n: int, device) -> Tuple[torch.Tensor, torch.Tensor]:
        k = (n, str(device))
        if k not in self._cache:
            theta = torch.arange(n, dtype=torch.float64)[:, None] * self.inv_freq[None, :]
            self._cache[k] = (theta.cos().float().to(device), theta.sin().float().to(device))
        return self._cache[k]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x: (batch, seq, heads, head_dim)."""
        cos, sin = self.cos_sin(x.shape[1], x.device)
        cos, sin = cos[None, :, None, :], sin[None, :, None, :]
        rot, rest = x[..., :self.n_rot].float(), x[..., self.n_rot:]
        if self.neox:
            half = self.n_rot // 2
            x0, x1 = rot[..., :half], rot[..., half:]
            out = torch.cat([x0 * cos - x1 * sin, x0 * sin + x1 * cos], dim=-1)
        else:
            x0, x1 = rot[..., 0::2], rot[..., 1::2]
            out = torch.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], dim=-1).flatten(-2)
        return torch.cat([out.to(x.dtype), rest], dim=-1) if rest.shape[-1] else out.to(x.dtype)


class LoraModel(nn.Module):
    """A frozen GGUF model plus trainable LoRA A/B pairs (PEFT shapes) on the attention and FFN matrices."""

    def __init__(self, reader: GGUFReader, rank: int = 16, alpha: Optional[float] = None,
                 targets=None, device: str = "cpu", seed: int = 0, lora_dropout: float = 0.0,
                 grad_checkpoint: bool = False, base_weights: str = "keep"):
        super().__init__()
        # Dropout on the LoRA input path only (PEFT's lora_dropout), in training mode only.
        self.lora_dropout = float(lora_dropout)
        # Recompute each transformer block in backward: autograd keeps only the blocks' inputs.
        self.grad_checkpoint = bool(grad_checkpoint)
        # Target positions per chunk of the output head's loss; None: memory.loss_chunk_positions (tests set it).
        self.loss_chunk: Optional[int] = None
        self.cfg = cfg = _config(reader)
        self.path = reader.path
        self.rank, self.alpha = rank, float(alpha if alpha is not None else 2 * rank)
        self.scale = self.alpha / rank if rank > 0 else 0.0
        self.device = torch.device(device)
        self.weights: Dict[str, PackedWeight] = {}
        self.small: Dict[str, torch.Tensor] = {}   # norms and biases, as float32
        # --base-weights q8_0/q4_0: full-precision matrices quantized on the device ({name: the file's type}).
        self.quantized_from: Dict[str, str] = {}
        tied = "output.weight" not in reader.tensors

        def load(name: str, required: bool = True) -> Optional[PackedWeight]:
            info = reader.tensors.get(name)
            if info is None:
                if required:
                    raise TrainerError("bad_model", f"{reader.path} has no tensor {name}; the file is incomplete or "
                                       "not a standard llama.cpp conversion.")
                return None
            try:
                w = pack(info).to(self.device)
            except UnsupportedQuantError as e:
                raise TrainerError("bad_model", str(e)) from e
            reader.release(info)   # copied: its file pages need not stay in this process's memory
            to = base_weight_type(name, w.ggml_type, w.shape, base_weights, tied)
            if to is not None:
                self.quantized_from[name] = w.type_name
                w = quantize(w, to)
            return w

        def load_small(name: str, required: bool = True) -> Optional[torch.Tensor]:
            w = load(name, required)
            return None if w is None else w.dequantize(torch.float32)

        self.weights["token_embd.weight"] = load("token_embd.weight")
        out = load("output.weight", required=False)
        self.tied = out is None
        self.weights["output.weight"] = out if out is not None else self.weights["token_embd.weight"]
        self.small["output_norm.weight"] = load_small("output_norm.weight")
        if cfg.layer_norm:
            self.small["output_norm.bias"] = load_small("output_norm.bias")
        matrices = ARCH_MATRICES[cfg.arch]
        # LoRA goes on the requested matrices this architecture has (all of them by default).
        targets = [t for t in (LORA_TARGETS if targets is None else targets) if t in matrices]
        required_biases = _REQUIRED_BIASES.get(cfg.arch, ())
        ff = load_small("rope_freqs.weight", required=False)
        self.rope = Rope(cfg, ff.cpu() if ff is not None else None)
        self.lora_names: List[str] = []
        gen = torch.Generator().manual_seed(seed)
        for i in range(cfg.n_layer):
            p = f"blk.{i}."
            for n in ("attn_norm", "ffn_norm"):
                self.small[p + n + ".weight"] = load_small(p + n + ".weight")
            for n in matrices:
                self.weights[p + n + ".weight"] = load(p + n + ".weight")
            for n in required_biases:
                self.small[p + n + ".bias"] = load_small(p + n + ".bias")
            for n in _OPTIONAL_BIASES:
                b = load_small(p + n + ".bias", required=False)
                if b is not None:
                    self.small[p + n + ".bias"] = b
            if rank > 0:
                for n in targets:
                    self._add_lora(p + n + ".weight", gen)
        self._check_shapes()

    # -- LoRA parameters -----------------------------------------------------------------------------------------
    def _add_lora(self, name: str, gen: torch.Generator) -> None:
        n_out, n_in = self.weights[name].shape
        a = torch.empty(self.rank, n_in)
        # PEFT's default init: A ~ kaiming_uniform(a=sqrt(5)) = U(-1/sqrt(n_in), 1/sqrt(n_in)); B = 0.
        bound = 1.0 / math.sqrt(n_in)
        a.uniform_(-bound, bound, generator=gen)
        self.register_parameter(self._pname(name, "a"), nn.Parameter(a.to(self.device)))
        self.register_parameter(self._pname(name, "b"), nn.Parameter(torch.zeros(n_out, self.rank, device=self.device)))
        self.lora_names.append(name)

    @staticmethod
    def _pname(name: str, which: str) -> str:
        return "lora_" + which + "__" + name.replace(".", "__")

    def lora_pair(self, name: str) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
        a = getattr(self, self._pname(name, "a"), None)
        return None if a is None else (a, getattr(self, self._pname(name, "b")))

    def lora_state(self) -> Dict[str, torch.Tensor]:
        """{'blk.0.attn_q.weight.lora_a': A (r, n_in), '...lora_b': B (n_out, r)} on CPU."""
        out = {}
        for name in self.lora_names:
            a, b = self.lora_pair(name)
            out[name + ".lora_a"] = a.detach().cpu().clone()
            out[name + ".lora_b"] = b.detach().cpu().clone()
        return out

    def load_lora_state(self, state: Dict[str, torch.Tensor]) -> None:
        for name in self.lora_names:
            a, b = self.lora_pair(name)
            with torch.no_grad():
                a.copy_(state[name + ".lora_a"])
                b.copy_(state[name + ".lora_b"])

    def _check_shapes(self) -> None:
        c = self.cfg
        kv = c.head_dim * c.n_head_kv
        expected = {"attn_q": (c.n_head * c.head_dim, c.n_embd), "attn_k": (kv, c.n_embd), "attn_v": (kv, c.n_embd),
                    "attn_output": (c.n_embd, c.n_head * c.head_dim), "ffn_gate": (c.n_ff, c.n_embd),
                    "ffn_up": (c.n_ff, c.n_embd), "ffn_down": (c.n_embd, c.n_ff)}
        for i in range(c.n_layer):
            for n in ARCH_MATRICES[c.arch]:
                shape = expected[n]
                got = tuple(self.weights[f"blk.{i}.{n}.weight"].shape)
                if got != shape:
                    raise TrainerError("bad_model", f"blk.{i}.{n}.weight has shape {got}, the metadata implies {shape}; "
                                       "the file is inconsistent.")

    # -- sizes for the start event ------------------------------------------------------------------------------
    def weight_types(self) -> List[str]:
        return sorted({w.type_name for w in self.weights.values()})

    def total_params(self) -> int:
        seen = {id(w): w for w in self.weights.values()}
        n = sum(math.prod(w.shape) for w in seen.values()) + sum(t.numel() for t in self.small.values())
        return int(n)

    def trainable_params(self) -> int:
        return int(sum(p.numel() for p in self.parameters() if p.requires_grad))

    # -- forward ---------------------------------------------------------------------------------------------------
    def linear(self, x: torch.Tensor, name: str) -> torch.Tensor:
        """W x (+ the matrix's bias, if the file has one) + LoRA; the bias is added before the LoRA as in ggml."""
        y = frozen_matmul(x, self.weights[name])
        bias = self.small.get(name[:-len("weight")] + "bias")
        if bias is not None:
            y = y + bias.to(y.dtype)
        pair = self.lora_pair(name) if self.rank > 0 else None
        if pair is not None:
            a, b = pair
            dt = y.dtype
            xl = x.to(dt)
            if self.lora_dropout > 0 and self.training:
                xl = F.dropout(xl, self.lora_dropout, training=True)
            y = y + self.scale * ((xl @ a.to(dt).t()) @ b.to(dt).t())
        return y

    def _attention(self, x: torch.Tensor, i: int, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Causal self-attention; `mask` (batch, 1, n, n), True = may attend, keeps packed examples apart."""
        c, p = self.cfg, f"blk.{i}."
        bsz, n, _ = x.shape
        q = self.linear(x, p + "attn_q.weight").view(bsz, n, c.n_head, c.head_dim)
        k = self.linear(x, p + "attn_k.weight").view(bsz, n, c.n_head_kv, c.head_dim)
        v = self.linear(x, p + "attn_v.weight").view(bsz, n, c.n_head_kv, c.head_dim)
        q, k = self.rope(q), self.rope(k)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        group = c.n_head // c.n_head_kv
        if group > 1:
            k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
        if _HAS_SDPA:
            if mask is None:
                o = F.scaled_dot_product_attention(q, k, v.to(q.dtype), is_causal=True)
            else:
                o = F.scaled_dot_product_attention(q, k, v.to(q.dtype), attn_mask=mask)
        else:
            scores = (q.float() @ k.float().transpose(-1, -2)) / math.sqrt(c.head_dim)
            if mask is None:
                mask = torch.ones(n, n, dtype=torch.bool, device=x.device).tril()
            scores = scores.masked_fill(~mask, float("-inf"))
            o = (scores.softmax(-1) @ v.float()).to(q.dtype)
        o = o.transpose(1, 2).reshape(bsz, n, c.n_head * c.head_dim)
        return self.linear(o, p + "attn_output.weight")

    def _ffn(self, x: torch.Tensor, i: int) -> torch.Tensor:
        p = f"blk.{i}."
        if not self.cfg.gated_ffn:
            return self.linear(gelu_tanh(self.linear(x, p + "ffn_up.weight")), p + "ffn_down.weight")
        return self.linear(F.silu(self.linear(x, p + "ffn_gate.weight")) * self.linear(x, p + "ffn_up.weight"),
                           p + "ffn_down.weight")

    def _norm(self, h: torch.Tensor, name: str) -> torch.Tensor:
        if self.cfg.layer_norm:
            return layer_norm(h, self.small[name + ".weight"], self.small[name + ".bias"], self.cfg.rms_eps)
        return rms_norm(h, self.small[name + ".weight"], self.cfg.rms_eps)

    def _block(self, h: torch.Tensor, i: int, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        p = f"blk.{i}."
        h = h + self._attention(self._norm(h, p + "attn_norm"), i, mask).float()
        return h + self._ffn(self._norm(h, p + "ffn_norm"), i).float()

    def _checkpointed_block(self, h: torch.Tensor, i: int, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The block under torch.utils.checkpoint: only its input h is kept; backward runs it again (the RNG state,
        so any LoRA dropout mask, and autocast are restored for the recomputation by torch)."""
        if _CKPT_HAS_REENTRANT_ARG:
            # Non-reentrant: gradients reach the LoRA parameters even though h (frozen embeddings) needs none.
            return torch.utils.checkpoint.checkpoint(self._block, h, i, mask, use_reentrant=False)
        # Old PyTorch (reentrant only): parameters get gradients only if an input requires grad.
        if not h.requires_grad:
            h = h.detach().requires_grad_(True)
        return torch.utils.checkpoint.checkpoint(self._block, h, i, mask)

    def hidden(self, tokens: torch.Tensor, segments: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Final normalized hidden states (batch, seq, n_embd) in float32. `segments` (batch, seq) numbers the packed
        examples of each row: a position attends only to earlier positions of its own example, so each example is
        trained exactly as the engine sees it, alone (RoPE is relative, so its offset in the row does not matter)."""
        c = self.cfg
        h = embed_rows(self.weights["token_embd.weight"], tokens)
        mask = None
        if segments is not None:
            n = tokens.shape[1]
            causal = torch.ones(n, n, dtype=torch.bool, device=tokens.device).tril()
            mask = ((segments[:, :, None] == segments[:, None, :]) & causal)[:, None]
        checkpointing = self.grad_checkpoint and self.training and torch.is_grad_enabled()
        for i in range(c.n_layer):
            h = self._checkpointed_block(h, i, mask) if checkpointing else self._block(h, i, mask)
        return self._norm(h, "output_norm")

    def head(self, h: torch.Tensor) -> torch.Tensor:
        return frozen_matmul(h, self.weights["output.weight"]).float()

    def forward(self, tokens: torch.Tensor, segments: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.head(self.hidden(tokens, segments))

    def loss(self, inputs: torch.Tensor, targets: torch.Tensor,
             segments: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, int]:
        """Mean cross-entropy over targets != -1; the output head runs only on those positions."""
        h = self.hidden(inputs, segments)
        mask = targets >= 0
        n = int(mask.sum())
        if n == 0:
            return h.sum() * 0.0, 0
        hm, tm = h[mask], targets[mask]
        chunk = self.loss_chunk or loss_chunk_positions(self.cfg.n_vocab)
        if n <= chunk:
            return F.cross_entropy(self.head(hm), tm), n
        # Chunks whose logits are not kept for backward but recomputed there, one chunk at a time: the head's
        # memory is that of one chunk, whatever the batch (the same sum of per-token losses as in one piece).
        total = hm.new_zeros(())
        for i in range(0, n, chunk):
            total = total + self._chunk_loss_checkpointed(hm[i:i + chunk], tm[i:i + chunk])
        return total / n, n

    def _chunk_loss(self, h: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.head(h), t, reduction="sum")

    def _chunk_loss_checkpointed(self, h: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if not (torch.is_grad_enabled() and h.requires_grad):
            return self._chunk_loss(h, t)
        if _CKPT_HAS_REENTRANT_ARG:
            return torch.utils.checkpoint.checkpoint(self._chunk_loss, h, t, use_reentrant=False)
        return torch.utils.checkpoint.checkpoint(self._chunk_loss, h, t)


def open_model(path: str) -> GGUFReader:
    """Open a GGUF as a bad_model TrainerError on failure, with what to do about it."""
    try:
        return GGUFReader(path)
    except GGUFError as e:
        # The reader wraps every OSError (a missing file included) in GGUFError.
        if isinstance(e.__cause__, FileNotFoundError):
            raise TrainerError("bad_model", f"The model file {path} does not exist. Check the repotune.modelPath "
                               "setting.") from e
        raise TrainerError("bad_model", f"The model file could not be read: {e}. Download the GGUF again or pick "
                           "another model.") from e


def model_config(reader: GGUFReader) -> ModelConfig:
    """The model's hyperparameters from its metadata, or the bad_model / unsupported_arch error, before any tensor is
    loaded (train.py checks the data and the memory first)."""
    return _config(reader)
