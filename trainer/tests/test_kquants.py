"""K-quants (Q4_K, Q5_K, Q6_K): the trainer's vectorized dequantization against a per-element transcription of
ggml's dequantize_row_q4_K / q5_K / q6_K (ggml-quants.c), against blocks whose fields are set by hand, and the
round trip through the simple quantizers (which write ggml's bit layout) within each type's error."""
import struct

import numpy as np
import pytest
import torch

from repotune_trainer import kquants
from repotune_trainer.gguf import TensorInfo
from conftest import assert_behaves_as_dense
from repotune_trainer.quants import Q4_K, Q5_K, Q6_K, pack

TYPES = {"Q4_K": Q4_K, "Q5_K": Q5_K, "Q6_K": Q6_K}


def _info(ggml_type, ne, data):
    t = TensorInfo("w", ne, ggml_type, 0)
    t.data = data
    return t


def _deq(name, raw, n_rows, n_in):
    return pack(_info(TYPES[name], [n_in, n_rows], raw)).dequantize()


# -- ggml's C, transcribed element by element (float32 arithmetic as in C) ------------------------------------------

f32 = np.float32


def _half(b, off):
    return f32(np.frombuffer(bytes(b[off:off + 2]), np.float16)[0])


def _scale_min_k4(j, q):
    if j < 4:
        return q[j] & 63, q[j + 4] & 63
    return (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4)


def ref_dequantize_row_q4_K(blk):
    d, mn, sc_b, q = _half(blk, 0), _half(blk, 2), [int(v) for v in blk[4:16]], [int(v) for v in blk[16:144]]
    y, qo, is_ = [], 0, 0
    for _ in range(0, 256, 64):
        sc, m = _scale_min_k4(is_ + 0, sc_b); d1, m1 = d * f32(sc), mn * f32(m)
        sc, m = _scale_min_k4(is_ + 1, sc_b); d2, m2 = d * f32(sc), mn * f32(m)
        y += [d1 * f32(q[qo + l] & 0xF) - m1 for l in range(32)]
        y += [d2 * f32(q[qo + l] >> 4) - m2 for l in range(32)]
        qo += 32; is_ += 2
    return np.array(y, np.float32)


def ref_dequantize_row_q5_K(blk):
    d, mn, sc_b = _half(blk, 0), _half(blk, 2), [int(v) for v in blk[4:16]]
    qh, ql = [int(v) for v in blk[16:48]], [int(v) for v in blk[48:176]]
    y, qo, is_, u1, u2 = [], 0, 0, 1, 2
    for _ in range(0, 256, 64):
        sc, m = _scale_min_k4(is_ + 0, sc_b); d1, m1 = d * f32(sc), mn * f32(m)
        sc, m = _scale_min_k4(is_ + 1, sc_b); d2, m2 = d * f32(sc), mn * f32(m)
        y += [d1 * f32((ql[qo + l] & 0xF) + (16 if qh[l] & u1 else 0)) - m1 for l in range(32)]
        y += [d2 * f32((ql[qo + l] >> 4) + (16 if qh[l] & u2 else 0)) - m2 for l in range(32)]
        qo += 32; is_ += 2; u1 <<= 2; u2 <<= 2
    return np.array(y, np.float32)


def ref_dequantize_row_q6_K(blk):
    d = _half(blk, 208)
    ql, qh = [int(v) for v in blk[0:128]], [int(v) for v in blk[128:192]]
    sc = [int(v) for v in np.asarray(blk[192:208], np.uint8).view(np.int8)]
    y = [f32(0)] * 256
    for n in range(2):
        lo, ho, so, yo = 64 * n, 32 * n, 8 * n, 128 * n
        for l in range(32):
            is_ = l // 16
            q1 = ((ql[lo + l] & 0xF) | (((qh[ho + l] >> 0) & 3) << 4)) - 32
            q2 = ((ql[lo + l + 32] & 0xF) | (((qh[ho + l] >> 2) & 3) << 4)) - 32
            q3 = ((ql[lo + l] >> 4) | (((qh[ho + l] >> 4) & 3) << 4)) - 32
            q4 = ((ql[lo + l + 32] >> 4) | (((qh[ho + l] >> 6) & 3) << 4)) - 32
            y[yo + l] = d * f32(sc[so + is_]) * f32(q1)
            y[yo + l + 32] = d * f32(sc[so + is_ + 2]) * f32(q2)
            y[yo + l + 64] = d * f32(sc[so + is_ + 4]) * f32(q3)
            y[yo + l + 96] = d * f32(sc[so + is_ + 6]) * f32(q4)
    return np.array(y, np.float32)


REF = {"Q4_K": ref_dequantize_row_q4_K, "Q5_K": ref_dequantize_row_q5_K, "Q6_K": ref_dequantize_row_q6_K}


def _ref_rows(name, raw):
    bb = kquants.BLOCK_BYTES[name]
    return np.stack([np.concatenate([REF[name](row[i:i + bb]) for i in range(0, len(row), bb)]) for row in raw])


# -- bit-exact against the transcription ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["Q4_K", "Q5_K", "Q6_K"])
def test_random_bytes_dequantize_exactly_as_ggml(name):
    # Arbitrary bytes exercise every bit of every field (all 6-bit scale/min encodings, all qh bits); the f16 fields
    # are set to finite values of varied sign and size.
    rng = np.random.default_rng(7)
    bb = kquants.BLOCK_BYTES[name]
    raw = rng.integers(0, 256, size=(3, 2 * bb), dtype=np.uint8)
    halves = rng.standard_normal((3, 2, 2)).astype(np.float16) * np.float16(0.01)
    for b in range(2):
        offs = [208] if name == "Q6_K" else [0, 2]
        for k, off in enumerate(offs):
            raw[:, b * bb + off:b * bb + off + 2] = halves[:, b, k:k + 1].copy().view(np.uint8)
    got = _deq(name, raw, 3, 512).numpy()
    want = _ref_rows(name, raw)
    assert got.dtype == np.float32 and got.shape == (3, 512)
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32))


@pytest.mark.parametrize("name", ["Q4_K", "Q5_K", "Q6_K"])
def test_quantized_vectors_decode_exactly_and_within_the_types_error(name):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 768)).astype(np.float32)
    x[1] *= 0.001
    x[2, :256] = 0.0                                       # an all-zero super-block
    x[3, 256:512] = np.abs(x[3, 256:512]) + 1.0            # all positive: mins are 0
    raw = kquants.QUANTIZERS[name](x)
    assert raw.shape == (4, 3 * kquants.BLOCK_BYTES[name]) and raw.dtype == np.uint8
    got = _deq(name, raw, 4, 768).numpy()
    assert np.array_equal(got.view(np.uint32), _ref_rows(name, raw).view(np.uint32))
    assert not got[2, :256].any()
    # Error per 32-value sub-block (16 for Q6_K) relative to its range: half a step of the 4/5/6-bit grid, plus what
    # quantizing the scales to 6 (8) bits and d to f16 costs.
    width = 16 if name == "Q6_K" else 32
    xs, es = x.reshape(-1, width), np.abs(got - x).reshape(-1, width)
    rng_ = np.maximum(xs.max(-1), 0) - np.minimum(xs.min(-1), 0)
    levels = {"Q4_K": 15, "Q5_K": 31, "Q6_K": 63}[name]
    assert (es.max(-1) <= rng_ / levels * 1.0 + 1e-7).all()
    rel = np.sqrt(((got - x) ** 2).mean() / (x ** 2).mean())
    assert rel < {"Q4_K": 0.12, "Q5_K": 0.06, "Q6_K": 0.03}[name]


# -- blocks with hand-set fields, values computed by hand --------------------------------------------------------------

def test_q4_k_hand_block():
    # d = 0.5, dmin = 0.25. Sub-block scales 1..8, mins 0,1,..,7 except sub-block 7: scale 37, min 50 (6-bit values
    # that use the high bits stored in bytes 3 and 7).
    ls, lm = [1, 2, 3, 4, 5, 6, 7, 37], [0, 1, 2, 3, 4, 5, 6, 50]
    scales = bytearray(12)
    for j in range(4):
        scales[j], scales[j + 4] = ls[j], lm[j]
    for j in range(4, 8):
        scales[j + 4] = (ls[j] & 0xF) | ((lm[j] & 0xF) << 4)
        scales[j - 4] |= (ls[j] >> 4) << 6
        scales[j] |= (lm[j] >> 4) << 6
    assert scales[3] == 4 | (2 << 6) and scales[7] == 3 | (3 << 6) and scales[11] == (37 & 15) | ((50 & 15) << 4)
    qs = bytearray(128)
    qs[0] = 0x3A            # sub-block 0 value 0: q = 10; sub-block 1 value 0: q = 3
    qs[96 + 31] = 0xF1      # sub-block 6 value 31: q = 1; sub-block 7 value 31: q = 15
    blk = struct.pack("<ee", 0.5, 0.25) + bytes(scales) + bytes(qs)
    out = _deq("Q4_K", np.frombuffer(blk, np.uint8).reshape(1, 144), 1, 256)[0]
    assert out[0].item() == 0.5 * 1 * 10 - 0.25 * 0            # 5.0
    assert out[32].item() == 0.5 * 2 * 3 - 0.25 * 1            # 2.75
    assert out[33].item() == -0.25                             # q = 0
    assert out[6 * 32 + 31].item() == 0.5 * 7 * 1 - 0.25 * 6   # 2.0
    assert out[7 * 32 + 31].item() == 0.5 * 37 * 15 - 0.25 * 50  # 265.0
    assert out[7 * 32].item() == -12.5


def test_q5_k_hand_block():
    # d = 1, dmin = 0.5, every scale 2 and every min 4 -> value = 2q - 2. qh[5] bit 3 sets the fifth bit of
    # sub-block 3 value 5; that sub-block's nibble is the high nibble of qs[32 + 5].
    scales = bytes([2, 2, 2, 2, 4, 4, 4, 4, 2 | (4 << 4)] + [2 | (4 << 4)] * 3)
    qh = bytearray(32); qh[5] = 1 << 3; qh[0] = 1 << 0
    qs = bytearray(128); qs[32 + 5] = 0x70; qs[0] = 0x0F
    blk = struct.pack("<ee", 1.0, 0.5) + scales + bytes(qh) + bytes(qs)
    out = _deq("Q5_K", np.frombuffer(blk, np.uint8).reshape(1, 176), 1, 256)[0]
    assert out[3 * 32 + 5].item() == 2 * (7 + 16) - 2          # 44
    assert out[0].item() == 2 * (15 + 16) - 2                  # 60
    assert out[1].item() == -2.0 and out[32 + 5].item() == -2.0


def test_q6_k_hand_block():
    # d = 0.125; scales[i] = i - 8 (int8, negatives included). Value 200 is in half 1 (n = 1), position 72 = group
    # 2, l = 8: the high nibble of ql[64 + 8] and bits 4-5 of qh[32 + 8]; its scale is scales[8 + 0 + 4] = 4.
    ql = bytearray(128); qh = bytearray(64)
    ql[64 + 8] = 0x50                    # q low 4 bits = 5 for group 2
    qh[32 + 8] = 0b10 << 4               # high 2 bits = 2 -> q = 5 | 32 = 37 -> 5 after the -32 offset
    ql[0] = 0x0F; qh[0] = 0b11           # value 0: q = 63 -> 31, scale index 0 -> -8
    ql[32 + 17] = 0x01                   # value 49 (group 1, l = 17): q = 1 -> -31, scale index 1 + 2 = 3 -> -5
    sc = np.arange(16, dtype=np.int8) - 8
    blk = bytes(ql) + bytes(qh) + sc.tobytes() + struct.pack("<e", 0.125)
    out = _deq("Q6_K", np.frombuffer(blk, np.uint8).reshape(1, 210), 1, 256)[0]
    assert out[200].item() == 0.125 * 4 * 5                    # 2.5
    assert out[0].item() == 0.125 * -8 * 31                    # -31.0
    assert out[49].item() == 0.125 * -5 * -31                  # 19.375
    assert out[16].item() == 0.125 * -7 * -32                  # untouched bytes: q = -32


# -- the trainer's paths: FrozenMatmul, embeddings, dtypes ------------------------------------------------------------

@pytest.mark.parametrize("name", ["Q4_K", "Q5_K", "Q6_K"])
def test_frozen_matmul_and_embedding_rows(name):
    rng = np.random.default_rng(5)
    w = rng.standard_normal((6, 512)).astype(np.float32)
    pw = pack(_info(TYPES[name], [512, 6], kquants.QUANTIZERS[name](w)))
    assert_behaves_as_dense(pw, 512)
    assert pw.nbytes() == 6 * 2 * kquants.BLOCK_BYTES[name]    # stays packed: exactly the file's bytes


def test_row_length_must_be_a_multiple_of_256():
    with pytest.raises(ValueError):
        kquants.quantize_q4_k(np.zeros((1, 128), np.float32))
