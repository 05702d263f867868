"""ggml weight formats in PyTorch: frozen weights stay packed as in the GGUF and are dequantized on use.

A `PackedWeight` holds the tensors of one GGUF weight in the smallest form PyTorch can compute from:
F32/F16/BF16 as a plain tensor of that dtype, Q8_0 as its per-block f16 scales plus int8 values (34 bytes per 32
weights, as in the file), Q4_0 as scales plus packed nibbles, Q4_1/Q5_0/Q5_1 (which llama.cpp's Q4_K_M uses for rows
that are not a multiple of 256) as their f16 scale, f16 min, high-bit word and nibbles, and the K-quants Q4_K/Q5_K/Q6_K (what Q4_K_M files
hold) as their super-block fields (kquants.py), byte for byte as in the file. `dequantize` rebuilds the full-precision matrix; the model calls it inside a custom
autograd function so the dequantized copy never outlives one matmul (see model.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np
import torch

from . import kquants
from .gguf import GGML_TYPE_IDS, TensorInfo, type_name

F32, F16, Q8_0, BF16 = GGML_TYPE_IDS["F32"], GGML_TYPE_IDS["F16"], GGML_TYPE_IDS["Q8_0"], GGML_TYPE_IDS["BF16"]
Q4_0, Q4_1, Q5_0, Q5_1 = (GGML_TYPE_IDS[n] for n in ("Q4_0", "Q4_1", "Q5_0", "Q5_1"))
QK8_0 = 32
QK4_0 = 32
QK = 32                     # block size of Q4_0, Q4_1, Q5_0, Q5_1
# Legacy 32-value blocks (ggml-common.h), in file order: f16 d, [f16 m], [4 bytes qh], 16 bytes qs.
LEGACY = {Q4_1: ("Q4_1", 20, True, False), Q5_0: ("Q5_0", 22, False, True), Q5_1: ("Q5_1", 24, True, True)}
Q4_K, Q5_K, Q6_K = GGML_TYPE_IDS["Q4_K"], GGML_TYPE_IDS["Q5_K"], GGML_TYPE_IDS["Q6_K"]
K_QUANTS = {Q4_K: "Q4_K", Q5_K: "Q5_K", Q6_K: "Q6_K"}
SUPPORTED_TYPES = (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K)


class UnsupportedQuantError(ValueError):
    pass


@dataclass
class PackedWeight:
    ggml_type: int
    shape: Tuple[int, ...]          # numpy/PyTorch order: (n_out, n_in) for a matrix
    parts: List[torch.Tensor]       # the packed tensors; what autograd saves instead of the dequantized matrix

    @property
    def type_name(self) -> str:
        return type_name(self.ggml_type)

    def to(self, device) -> "PackedWeight":
        return PackedWeight(self.ggml_type, self.shape, [p.to(device) for p in self.parts])

    def nbytes(self) -> int:
        return sum(p.numel() * p.element_size() for p in self.parts)

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return dequantize(self.ggml_type, self.shape, self.parts, dtype)


def pack(info: TensorInfo) -> PackedWeight:
    """Turn a memory-mapped GGUF tensor into torch tensors (copied out of the mmap, still packed)."""
    t, shape = info.ggml_type, info.shape
    if t == F32:
        return PackedWeight(t, shape, [torch.from_numpy(np.array(info.data, dtype=np.float32))])
    if t == F16:
        return PackedWeight(t, shape, [torch.from_numpy(np.array(info.data, dtype=np.float16))])
    if t == BF16:
        bits = np.array(info.data, dtype=np.uint16).astype(np.int32) << 16
        return PackedWeight(t, shape, [torch.from_numpy(bits.view(np.float32)).to(torch.bfloat16)])
    if t == Q8_0:
        blocks = np.array(info.data).reshape(*shape[:-1], shape[-1] // QK8_0, 2 + QK8_0)
        d = np.ascontiguousarray(blocks[..., :2]).view(np.float16)[..., 0]
        qs = np.ascontiguousarray(blocks[..., 2:]).view(np.int8)
        return PackedWeight(t, shape, [torch.from_numpy(d.copy()), torch.from_numpy(qs.copy())])
    if t == Q4_0:
        blocks = np.array(info.data).reshape(*shape[:-1], shape[-1] // QK4_0, 2 + QK4_0 // 2)
        d = np.ascontiguousarray(blocks[..., :2]).view(np.float16)[..., 0]
        qs = np.ascontiguousarray(blocks[..., 2:])
        return PackedWeight(t, shape, [torch.from_numpy(d.copy()), torch.from_numpy(qs.copy())])
    if t in LEGACY:
        return PackedWeight(t, shape, _unpack_legacy(t, shape, info.data))
    if t in K_QUANTS:
        return PackedWeight(t, shape, kquants.unpack(K_QUANTS[t], shape, info.data))
    raise UnsupportedQuantError(
        f"tensor {info.name} is stored as {info.type_name}, which the trainer cannot read yet "
        f"(supported: {', '.join(type_name(x) for x in SUPPORTED_TYPES)}). Use a Q4_K_M, Q8_0, F16, BF16 or F32 GGUF of "
        "the model.")


def dequantize(ggml_type: int, shape: Tuple[int, ...], parts: List[torch.Tensor], dtype=torch.float32) -> torch.Tensor:
    if ggml_type in (F32, F16, BF16):
        return parts[0].to(dtype)
    if ggml_type == Q8_0:
        d, qs = parts
        return (qs.to(dtype) * d.to(dtype).unsqueeze(-1)).reshape(shape)
    if ggml_type == Q4_0:
        # Each byte holds weight j in its low nibble and weight j+16 in its high nibble; values are offset by 8.
        # The nibbles stay uint8 until the one conversion: integer temporaries of a big matrix are tens of MB, below
        # glibc's mmap threshold, and on the CPU each such heap block fragments the heap (RSS +25% at width 2048).
        d, qs = parts
        vals = torch.cat([qs & 0x0F, qs >> 4], dim=-1).to(dtype) - 8
        return (vals * d.to(dtype).unsqueeze(-1)).reshape(shape)
    if ggml_type in LEGACY:
        return _dequantize_legacy(ggml_type, shape, parts, dtype)
    if ggml_type in K_QUANTS:
        return kquants.dequantize(K_QUANTS[ggml_type], shape, parts, dtype)
    raise UnsupportedQuantError(f"cannot dequantize {type_name(ggml_type)}")


def _unpack_legacy(t: int, shape: Tuple[int, ...], data) -> List[torch.Tensor]:
    """Q4_1 -> [d, m, qs]; Q5_0 -> [d, qh, qs]; Q5_1 -> [d, m, qh, qs] (d, m f16; qh 4 bytes; qs 16 bytes per block)."""
    name, nbytes, has_min, has_high = LEGACY[t]
    if shape[-1] % QK:
        raise ValueError(f"{name} needs rows of a multiple of {QK} values, got {shape[-1]}")
    b = np.array(data, dtype=np.uint8).reshape(*shape[:-1], shape[-1] // QK, nbytes)
    t_ = lambda a: torch.from_numpy(np.ascontiguousarray(a).copy())  # noqa: E731
    parts, off = [t_(np.ascontiguousarray(b[..., 0:2]).view(np.float16)[..., 0])], 2
    if has_min:
        parts.append(t_(np.ascontiguousarray(b[..., 2:4]).view(np.float16)[..., 0]))
        off = 4
    if has_high:
        parts.append(t_(b[..., off:off + 4]))
        off += 4
    parts.append(t_(b[..., off:off + 16]))
    return parts


def _dequantize_legacy(t: int, shape: Tuple[int, ...], parts: List[torch.Tensor], dtype) -> torch.Tensor:
    """ggml's dequantize_row_q4_1 / q5_0 / q5_1, bit for bit.

    Byte j of qs holds value j in its low nibble and value j + 16 in its high nibble; for Q5 the fifth bit (+16) of
    value e is bit e of qh read as a little-endian uint32. Q5_0 is d * (q - 16); Q4_1 and Q5_1 are d * q + m. The
    products are exact in float32 (f16 times an integer below 32), so the only rounding is ggml's one addition.
    """
    _, _, has_min, has_high = LEGACY[t]
    d, rest = parts[0], list(parts[1:])
    m = rest.pop(0) if has_min else None
    qh = rest.pop(0) if has_high else None
    qs = rest[0].to(torch.int32)
    q = torch.cat([qs & 0x0F, qs >> 4], dim=-1)                                      # (..., n_blocks, 32)
    if qh is not None:
        bits = torch.arange(8, dtype=torch.int32, device=qh.device)
        high = (qh.to(torch.int32).unsqueeze(-1) >> bits) & 1                        # (..., 4, 8): bit 8*byte + k
        q = q | (high.reshape(*qh.shape[:-1], 32) << 4)
    if m is None:
        q = q - 16                                                                   # Q5_0
    y = q.float() * d.float().unsqueeze(-1)
    if m is not None:
        y = y + m.float().unsqueeze(-1)
    return y.reshape(shape).to(dtype)


# -- quantizing a full-precision base for training (--base-weights) ----------------------------------------------

BASE_WEIGHT_MODES = ("keep", "q8_0", "q4_0")
_FULL_PRECISION = (F32, F16, BF16)
# Values quantized at once (64 MiB as float32): bounds the temporaries when a 150k x 3584 output head is quantized on a
# GPU that is short of memory, which is when --base-weights auto asks for a copy.
_QUANT_VALUES = 1 << 24


def base_weight_type(name: str, ggml_type: int, shape: Tuple[int, ...], mode: str, tied: bool) -> Optional[int]:
    """The ggml type `--base-weights mode` trains this tensor as, or None to keep the file's own.

    Only frozen matrices stored in full precision (F32/F16/BF16) change; quantized ones are never quantized again, and
    norms and biases (1-D) stay float32. Which matrices:
    - the layers' matrices (every 2-D `blk.*` weight: attention and FFN) become `mode`;
    - the output head becomes Q8_0 in both modes: its error goes straight into every logit, and it is what llama.cpp
      also keeps at 6-8 bits in its 4-bit files (llama_tensor_get_type gives output.weight Q6_K for Q4_0 models);
    - `token_embd` only when the head is tied to it: then it is that head, and in small code models with 150k-token
      vocabularies it is a quarter of all weights (Qwen2.5-Coder-0.5B: 136M of 494M). An untied `token_embd` is
      only looked up by row, is 2-7% of a 1.3B-7B model, and keeping it exact costs little.
    Rows whose length is not a multiple of 32 (the block size) are kept."""
    if mode not in BASE_WEIGHT_MODES:
        raise ValueError(f"base weights {mode!r}: expected one of {', '.join(BASE_WEIGHT_MODES)} (auto is decided "
                         "before loading, in fit.py)")
    if mode == "keep" or ggml_type not in _FULL_PRECISION or len(shape) != 2 or shape[-1] % QK:
        return None
    if name == "output.weight" or (tied and name == "token_embd.weight"):
        return Q8_0
    if name.startswith("blk.") and name.endswith(".weight"):
        return Q8_0 if mode == "q8_0" else Q4_0
    return None


def _roundf(x: torch.Tensor) -> torch.Tensor:
    """C's roundf (half away from zero), exactly: x - trunc(x) is exact in floating point, whereas floor(|x| + 0.5)
    rounds 0.49999997 up to 1."""
    t = torch.trunc(x)
    return t + torch.sign(x) * ((x - t).abs() >= 0.5).to(x.dtype)


def quantize(w: PackedWeight, ggml_type: int) -> PackedWeight:
    """A full-precision weight (F32/F16/BF16) as Q8_0 or Q4_0 blocks, on w's device, in the parts form `pack` gives a
    file's Q8_0/Q4_0 tensor, so FrozenMatmul and embedding lookups use it unchanged.

    Bit for bit ggml's quantize_row_q8_0_ref / quantize_row_q4_0_ref (ggml-quants.c), from the weight's float32 value:
    - Q8_0: amax = max |x| of the 32 values, d = amax / 127, id = 1/d (0 when d = 0), q = roundf(x * id); d stored as
      f16 (round to nearest even, as GGML_FP32_TO_FP16).
    - Q4_0: max = the value of largest magnitude (the first such on ties), d = max / -8, id as above,
      q = min(15, (int8)(x * id + 8.5)); byte j holds value j in its low nibble and value j + 16 in its high one.
    Every step is one IEEE float32 operation as in the C code (no fused multiply-add), so the bytes are equal to
    the reference's (tests/test_base_weights.py compares them with `quantize_q8_0` / `quantize_q4_0` below)."""
    if w.ggml_type not in _FULL_PRECISION or len(w.shape) != 2:
        raise ValueError(f"only 2-D F32/F16/BF16 weights are quantized here, not {w.type_name} {w.shape}")
    if ggml_type not in (Q8_0, Q4_0):
        raise ValueError(f"cannot quantize to {type_name(ggml_type)}")
    n_out, n_in = w.shape
    if n_in % QK:
        raise ValueError(f"rows of {n_in} values are not a whole number of {QK}-value blocks")
    src, nb = w.parts[0], n_in // QK
    dev, rows = src.device, max(1, _QUANT_VALUES // n_in)
    d = torch.empty(n_out, nb, dtype=torch.float16, device=dev)
    qs = torch.empty(n_out, nb, QK if ggml_type == Q8_0 else QK // 2,
                     dtype=torch.int8 if ggml_type == Q8_0 else torch.uint8, device=dev)
    for r0 in range(0, n_out, rows):
        x = src[r0:r0 + rows].to(torch.float32).reshape(-1, nb, QK)
        if ggml_type == Q8_0:
            scale = x.abs().amax(-1) / 127
        else:
            first = x.abs().argmax(-1, keepdim=True)          # argmax returns the first maximal index
            scale = x.gather(-1, first).squeeze(-1) / -8
        inv = torch.where(scale != 0, 1.0 / torch.where(scale != 0, scale, torch.ones_like(scale)),
                          torch.zeros_like(scale)).unsqueeze(-1)
        d[r0:r0 + rows] = scale.to(torch.float16)
        if ggml_type == Q8_0:
            qs[r0:r0 + rows] = _roundf(x * inv).to(torch.int8)
        else:
            # x * id + 8.5 lies in [0.5, 16.5), so the C cast's truncation is a floor of a non-negative number.
            q = torch.clamp(torch.trunc(x * inv + 8.5), max=15).to(torch.uint8)
            qs[r0:r0 + rows] = q[..., :QK // 2] | (q[..., QK // 2:] << 4)
        del x      # before the next slice is converted, not after
    return PackedWeight(ggml_type, w.shape, [d, qs])


# -- reference quantizers in numpy (tiny models, and the reference the torch quantizer is tested against) -----------

def _round_half_away(x: np.ndarray) -> np.ndarray:
    # ggml uses roundf (half away from zero); numpy's round is half to even. trunc + the exact remainder, because
    # floor(|x| + 0.5) rounds 0.49999997 up (the sum rounds to 1.0 in float32).
    t = np.trunc(x)
    return np.where(np.abs(x - t) >= 0.5, t + np.sign(x), t)


def quantize_q8_0(x: np.ndarray) -> np.ndarray:
    """Reference Q8_0 quantization (ggml quantize_row_q8_0_ref): per 32 values, d = amax/127, q = round(x/d).

    Returns raw bytes shaped (rows..., n_blocks * 34) ready for the GGUF writer.
    """
    x = np.asarray(x, dtype=np.float32)
    if x.shape[-1] % QK8_0:
        raise ValueError(f"Q8_0 needs rows of a multiple of {QK8_0} values, got {x.shape[-1]}")
    blocks = x.reshape(*x.shape[:-1], x.shape[-1] // QK8_0, QK8_0)
    amax = np.abs(blocks).max(axis=-1, keepdims=True)
    d = amax / 127.0
    with np.errstate(divide="ignore"):
        inv = np.where(d > 0, 1.0 / np.where(d > 0, d, 1.0), 0.0).astype(np.float32)
    q = _round_half_away(blocks * inv).astype(np.int8)
    out = np.empty(blocks.shape[:-1] + (2 + QK8_0,), dtype=np.uint8)
    out[..., :2] = d.astype(np.float16).view(np.uint8).reshape(blocks.shape[:-1] + (2,))
    out[..., 2:] = q.view(np.uint8)
    return out.reshape(*x.shape[:-1], -1)


def quantize_q4_0(x: np.ndarray) -> np.ndarray:
    """Reference Q4_0 quantization (ggml quantize_row_q4_0_ref): per 32 values, max = the value of largest magnitude
    (the first on ties), d = max / -8, id = 1/d (0 if d = 0), q = min(15, (int8)(x * id + 8.5)); byte j = q[j] |
    q[j + 16] << 4. Returns raw bytes shaped (rows..., n_blocks * 18)."""
    x = np.asarray(x, dtype=np.float32)
    if x.shape[-1] % QK4_0:
        raise ValueError(f"Q4_0 needs rows of a multiple of {QK4_0} values, got {x.shape[-1]}")
    blocks = x.reshape(*x.shape[:-1], x.shape[-1] // QK4_0, QK4_0)
    first = np.abs(blocks).argmax(axis=-1)[..., None]           # numpy's argmax also returns the first maximum
    d = (np.take_along_axis(blocks, first, axis=-1) / np.float32(-8)).astype(np.float32)
    with np.errstate(divide="ignore"):
        inv = np.where(d != 0, np.float32(1) / np.where(d != 0, d, np.float32(1)), np.float32(0)).astype(np.float32)
    q = np.minimum(15, np.trunc(blocks * inv + np.float32(8.5))).astype(np.uint8)
    out = np.empty(blocks.shape[:-1] + (2 + QK4_0 // 2,), dtype=np.uint8)
    out[..., :2] = d.astype(np.float16).view(np.uint8).reshape(blocks.shape[:-1] + (2,))
    out[..., 2:] = q[..., :QK4_0 // 2] | (q[..., QK4_0 // 2:] << 4)
    return out.reshape(*x.shape[:-1], -1)
