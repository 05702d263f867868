"""ggml K-quants (Q4_K, Q5_K, Q6_K): unpacking GGUF super-blocks into torch tensors, and dequantization.

These are the types a Q4_K_M (and Q5_K_M, Q6_K) GGUF holds. A super-block covers QK_K = 256 consecutive values of a
row. Layouts (ggml-common.h) and the decoding (dequantize_row_q4_K / q5_K / q6_K and get_scale_min_k4 in
ggml-quants.c, llama.cpp as shipped by node-llama-cpp 3.21.1):

- Q4_K, 144 bytes: f16 d, f16 dmin, 12 bytes of 6-bit scales and mins for 8 sub-blocks of 32, 128 bytes of 4-bit
  quants. Value = d * sc[j] * q - dmin * m[j]. The 128 quant bytes are 4 groups of 32: byte l of group k holds
  sub-block 2k's value l in its low nibble and sub-block 2k+1's value l in its high nibble.
- Q5_K, 176 bytes: d, dmin, 12 scale bytes, 32 bytes qh, 128 bytes qs. As Q4_K with a fifth bit: bit j of qh[l] is
  the high bit (+16) of sub-block j's value l.
- Q6_K, 210 bytes: 128 bytes ql (low 4 bits), 64 bytes qh (high 2 bits), 16 int8 scales (one per 16 values), f16 d
  last. Value = d * scale[i // 16] * (q - 32). Each 128-value half uses 64 ql bytes and 32 qh bytes: value
  g*32 + l (g = 0..3) takes the low nibble (g = 0, 1) or high nibble (g = 2, 3) of ql[l + 32*(g % 2)] and bits
  2g, 2g+1 of qh[l].

Every product in these formulas is exact in float32 (an f16 times integers of at most 13 bits), so computing them in
float32 in any order and subtracting once gives ggml's dequantized values bit for bit. They are computed in float32
and only then cast to the requested dtype.

The `quantize_*` functions are simple quantizers (per-sub-block min/max, no error search as in ggml's
quantize_row_*_ref) that write ggml's exact bit layout: for tests and test models, not for quality.
"""
from __future__ import annotations

from typing import List, Tuple

import numpy as np
import torch

QK_K = 256
K_SCALE_SIZE = 12
BLOCK_BYTES = {"Q4_K": 144, "Q5_K": 176, "Q6_K": 210}


# -- unpacking GGUF bytes into parts --------------------------------------------------------------------------------

def _f16(raw: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(raw).view(np.float16)[..., 0].copy()


def unpack(name: str, shape: Tuple[int, ...], data) -> List[torch.Tensor]:
    """Split the raw bytes of a K-quant tensor into per-field tensors, each shaped (rows..., n_blocks[, bytes])."""
    if shape[-1] % QK_K:
        raise ValueError(f"{name} needs rows of a multiple of {QK_K} values, got {shape[-1]}")
    b = np.array(data, dtype=np.uint8).reshape(*shape[:-1], shape[-1] // QK_K, BLOCK_BYTES[name])
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a).copy())  # noqa: E731
    if name == "Q4_K":
        return [t(_f16(b[..., 0:2])), t(_f16(b[..., 2:4])), t(b[..., 4:16]), t(b[..., 16:144])]
    if name == "Q5_K":
        return [t(_f16(b[..., 0:2])), t(_f16(b[..., 2:4])), t(b[..., 4:16]), t(b[..., 16:48]), t(b[..., 48:176])]
    if name == "Q6_K":
        return [t(_f16(b[..., 208:210])), t(b[..., 192:208].view(np.int8)), t(b[..., 0:128]), t(b[..., 128:192])]
    raise ValueError(name)


# -- dequantization -------------------------------------------------------------------------------------------------

def _scale_min_k4(scales: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """get_scale_min_k4 for j = 0..7 at once: (..., 12) bytes -> 6-bit sc (..., 8) and m (..., 8), as int32."""
    s = scales.to(torch.int32)
    lo, mid, hi = s[..., 0:4], s[..., 4:8], s[..., 8:12]
    sc = torch.cat([lo & 63, (hi & 0xF) | ((lo >> 6) << 4)], dim=-1)
    m = torch.cat([mid & 63, (hi >> 4) | ((mid >> 6) << 4)], dim=-1)
    return sc, m


def _nibbles_by_subblock(qs: torch.Tensor) -> torch.Tensor:
    """(..., 128) quant bytes -> (..., 8, 32) 4-bit values, sub-block-major (Q4_K / Q5_K order)."""
    q = qs.to(torch.int32).reshape(*qs.shape[:-1], 4, 1, 32)
    return torch.cat([q & 0xF, q >> 4], dim=-2).reshape(*qs.shape[:-1], 8, 32)


def _affine(d, dmin, scales, q) -> torch.Tensor:
    sc, m = _scale_min_k4(scales)
    d1 = d.float().unsqueeze(-1) * sc.float()          # exact: f16 * 6-bit integer
    m1 = dmin.float().unsqueeze(-1) * m.float()
    return (d1.unsqueeze(-1) * q.float() - m1.unsqueeze(-1))   # (..., 8, 32); one rounding, in the subtraction


def dequantize(name: str, shape: Tuple[int, ...], parts: List[torch.Tensor], dtype=torch.float32) -> torch.Tensor:
    if name == "Q4_K":
        d, dmin, scales, qs = parts
        y = _affine(d, dmin, scales, _nibbles_by_subblock(qs))
    elif name == "Q5_K":
        d, dmin, scales, qh, qs = parts
        bits = torch.arange(8, dtype=torch.int32, device=qh.device).reshape(8, 1)
        high = (qh.to(torch.int32).unsqueeze(-2) >> bits) & 1            # (..., 8, 32): bit j of qh[l]
        y = _affine(d, dmin, scales, _nibbles_by_subblock(qs) | (high << 4))
    elif name == "Q6_K":
        d, scales, ql, qh = parts
        lead = ql.shape[:-1]
        l4 = ql.to(torch.int32).reshape(*lead, 2, 1, 2, 32)                 # [half, nibble, a, l]
        low = torch.cat([l4 & 0xF, l4 >> 4], dim=-3).reshape(*lead, 2, 4, 32)   # group g = 2 * nibble + a
        shifts = (2 * torch.arange(4, dtype=torch.int32, device=qh.device)).reshape(4, 1)
        high = (qh.to(torch.int32).reshape(*lead, 2, 1, 32) >> shifts) & 3     # (..., 2, 4, 32)
        q = ((low | (high << 4)) - 32).reshape(*lead, 16, 16)
        ds = d.float().unsqueeze(-1) * scales.float()                        # exact: f16 * int8
        y = ds.unsqueeze(-1) * q.float()
    else:
        raise ValueError(name)
    return y.reshape(shape).to(dtype)


# -- simple quantizers with ggml's bit layout (tests, test models) -------------------------------------------------

def _round(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.floor(np.abs(x) + 0.5)       # roundf / nearest_int for these ranges


def _blocks(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.shape[-1] % QK_K:
        raise ValueError(f"K-quants need rows of a multiple of {QK_K} values, got {x.shape[-1]}")
    return x.reshape(-1, QK_K)


def _pack_scales_k4(ls: np.ndarray, lm: np.ndarray) -> np.ndarray:
    """(n, 8) 6-bit scales and mins -> (n, 12) bytes, as quantize_row_q4_K_ref packs them."""
    out = np.zeros((ls.shape[0], 12), np.uint8)
    out[:, 0:4] = ls[:, 0:4] | ((ls[:, 4:8] >> 4) << 6)
    out[:, 4:8] = lm[:, 0:4] | ((lm[:, 4:8] >> 4) << 6)
    out[:, 8:12] = (ls[:, 4:8] & 0xF) | ((lm[:, 4:8] & 0xF) << 4)
    return out


def _quantize_affine(xb: np.ndarray, qmax: int):
    """Per sub-block of 32: x ~ d*sc*q - dmin*m with q in [0, qmax]. Returns d, dmin (f16), ls, lm, L."""
    sub = xb.reshape(-1, 8, 32)
    mn = np.minimum(sub.min(-1), 0.0)                  # ggml keeps min <= 0 and stores -min
    scale = (sub.max(-1) - mn) / qmax
    mins = -mn
    max_scale, max_min = scale.max(-1), mins.max(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv_s = np.where(max_scale > 0, 63.0 / max_scale, 0.0)[:, None]
        inv_m = np.where(max_min > 0, 63.0 / max_min, 0.0)[:, None]
    ls = np.minimum(63, _round(inv_s * scale)).astype(np.uint8)
    lm = np.minimum(63, _round(inv_m * mins)).astype(np.uint8)
    d = (max_scale / 63.0).astype(np.float16)
    dmin = (max_min / 63.0).astype(np.float16)
    dd = d.astype(np.float32)[:, None] * ls             # as the ref: re-quantize against the stored scales
    dm = dmin.astype(np.float32)[:, None] * lm
    with np.errstate(divide="ignore", invalid="ignore"):
        L = np.where(dd[..., None] > 0, _round((sub + dm[..., None]) / np.where(dd > 0, dd, 1)[..., None]), 0)
    L = np.clip(L, 0, qmax).astype(np.uint8)            # (n, 8, 32)
    return d, dmin, ls, lm, L


def _nibble_pack(L4: np.ndarray) -> np.ndarray:
    """(n, 8, 32) values < 16 -> (n, 128) bytes: group k byte l = sub 2k value l | sub 2k+1 value l << 4."""
    return (L4[:, 0::2, :] | (L4[:, 1::2, :] << 4)).reshape(-1, 128).astype(np.uint8)


def quantize_q4_k(x: np.ndarray) -> np.ndarray:
    """Rows of x -> Q4_K bytes shaped (rows..., n_blocks * 144)."""
    x = np.asarray(x, dtype=np.float32)
    d, dmin, ls, lm, L = _quantize_affine(_blocks(x), 15)
    out = np.concatenate([d.reshape(-1, 1).view(np.uint8), dmin.reshape(-1, 1).view(np.uint8),
                          _pack_scales_k4(ls, lm), _nibble_pack(L)], axis=1)
    return out.reshape(*x.shape[:-1], -1)


def quantize_q5_k(x: np.ndarray) -> np.ndarray:
    """Rows of x -> Q5_K bytes shaped (rows..., n_blocks * 176)."""
    x = np.asarray(x, dtype=np.float32)
    d, dmin, ls, lm, L = _quantize_affine(_blocks(x), 31)
    qh = np.zeros((L.shape[0], 32), np.uint8)
    for j in range(8):
        qh |= ((L[:, j, :] >> 4) << j).astype(np.uint8)
    out = np.concatenate([d.reshape(-1, 1).view(np.uint8), dmin.reshape(-1, 1).view(np.uint8),
                          _pack_scales_k4(ls, lm), qh, _nibble_pack(L & 0xF)], axis=1)
    return out.reshape(*x.shape[:-1], -1)


def quantize_q6_k(x: np.ndarray) -> np.ndarray:
    """Rows of x -> Q6_K bytes shaped (rows..., n_blocks * 210). Symmetric: per 16 values, scale = amax / 31."""
    x = np.asarray(x, dtype=np.float32)
    xb = _blocks(x)
    sub = xb.reshape(-1, 16, 16)
    idx = np.abs(sub).argmax(-1)
    scale = np.take_along_axis(sub, idx[..., None], -1)[..., 0] / -32.0     # signed, as make_qx_quants' sign trick
    max_i = np.abs(scale).argmax(-1)
    max_scale = np.take_along_axis(scale, max_i[:, None], -1)[:, 0]
    ok = np.abs(max_scale) > 1e-15
    with np.errstate(divide="ignore", invalid="ignore"):
        iscale = np.where(ok, -128.0 / np.where(ok, max_scale, 1), 0.0)
        d = np.where(ok, 1.0 / np.where(ok, iscale, 1), 0.0).astype(np.float16)
    sc = np.clip(_round(iscale[:, None] * scale), -128, 127).astype(np.int8)
    dd = d.astype(np.float32)[:, None] * sc
    with np.errstate(divide="ignore", invalid="ignore"):
        L = np.where(dd[..., None] != 0, _round(sub / np.where(dd != 0, dd, 1)[..., None]), 0)
    L = (np.clip(L, -32, 31) + 32).astype(np.uint8).reshape(-1, 2, 4, 32)   # [half, g, l]
    ql = np.concatenate([(L[:, :, 0] & 0xF) | ((L[:, :, 2] & 0xF) << 4),
                         (L[:, :, 1] & 0xF) | ((L[:, :, 3] & 0xF) << 4)], axis=-1)      # (n, 2, 64)
    qh = ((L[:, :, 0] >> 4) | ((L[:, :, 1] >> 4) << 2) | ((L[:, :, 2] >> 4) << 4) | ((L[:, :, 3] >> 4) << 6))
    out = np.concatenate([ql.reshape(-1, 128).astype(np.uint8), qh.reshape(-1, 64).astype(np.uint8),
                          sc.view(np.uint8), d.reshape(-1, 1).view(np.uint8)], axis=1)
    return out.reshape(*x.shape[:-1], -1)


QUANTIZERS = {"Q4_K": quantize_q4_k, "Q5_K": quantize_q5_k, "Q6_K": quantize_q6_k}
