import struct

import numpy as np
import pytest
import torch

from conftest import assert_behaves_as_dense
from repotune_trainer.gguf import TensorInfo
from repotune_trainer.quants import BF16, F16, F32, Q4_0, Q8_0, pack, quantize_q8_0


def _info(ggml_type, ne, data):
    t = TensorInfo("w", ne, ggml_type, 0)
    t.data = data
    return t


def test_q8_0_known_block():
    # d = 0.5 as f16 (0x3800), then int8 values -128, -1, 0, 1, ..., 28 (32 values)
    qs = np.array([-128, -1] + list(range(0, 30)), dtype=np.int8)
    block = np.concatenate([np.frombuffer(np.float16(0.5).tobytes(), np.uint8), qs.view(np.uint8)])
    assert block[:2].tolist() == [0x00, 0x38]
    w = pack(_info(Q8_0, [32, 1], block.reshape(1, 34)))
    out = w.dequantize()
    assert out.shape == (1, 32)
    assert out[0, :4].tolist() == [-64.0, -0.5, 0.0, 0.5]
    assert out[0, -1].item() == 14.5


def test_q8_0_quantize_matches_the_reference_rule():
    x = np.zeros((1, 64), np.float32)
    x[0, :32] = np.linspace(-1.0, 2.54, 32)        # amax 2.54 -> d = 0.02
    x[0, 5] = 0.03                                 # 1.5 steps: roundf goes away from zero (2), not to even
    x[0, 6] = -0.03
    raw = quantize_q8_0(x)
    assert raw.shape == (1, 68)
    d = raw[0, :2].view(np.float16)[0]
    assert abs(float(d) - 0.02) < 1e-5
    q = raw[0, 2:34].view(np.int8)
    assert q[31] == 127
    assert q[5] == 2 and q[6] == -2
    assert raw[0, 34:36].view(np.float16)[0] == 0 and not raw[0, 36:].any()   # all-zero block: d = 0, q = 0
    back = pack(_info(Q8_0, [64, 1], raw)).dequantize().numpy()
    # half a step, plus what rounding d to f16 moved the grid by
    assert np.abs(back[0, :32] - x[0, :32]).max() <= float(d) * 0.51


def test_q8_0_random_round_trip_error_is_bounded():
    x = np.random.default_rng(1).standard_normal((8, 96)).astype(np.float32)
    back = pack(_info(Q8_0, [96, 8], quantize_q8_0(x))).dequantize().numpy()
    amax = np.abs(x.reshape(8, 3, 32)).max(-1, keepdims=True)
    err = np.abs(back.reshape(8, 3, 32) - x.reshape(8, 3, 32))
    assert (err <= amax / 127 / 2 * 1.01 + 1e-6).all()


def test_f16_f32_bf16():
    a = np.array([[1.0, -2.5, 65504.0, 2 ** -24]], np.float16)
    assert pack(_info(F16, [4, 1], a)).dequantize().tolist() == [[1.0, -2.5, 65504.0, 2 ** -24]]
    b = np.array([[0.1, -3.0]], np.float32)
    assert torch.equal(pack(_info(F32, [2, 1], b)).dequantize(), torch.from_numpy(b))
    bf = np.array([[0x3F80, 0xC000, 0x3EAB]], np.uint16)        # 1.0, -2.0, 0.333984375
    assert pack(_info(BF16, [3, 1], bf)).dequantize().tolist() == [[1.0, -2.0, 0.333984375]]


def test_q4_0_known_block():
    # d = 2.0; byte j holds weight j (low nibble) and weight j + 16 (high nibble), both offset by 8.
    qs = np.array([(15 << 4) | 0] + [(8 << 4) | 9] * 15, np.uint8)
    block = np.concatenate([np.frombuffer(np.float16(2.0).tobytes(), np.uint8), qs])
    out = pack(_info(Q4_0, [32, 1], block.reshape(1, 18))).dequantize()[0]
    assert out[0].item() == -16.0 and out[16].item() == 14.0
    assert out[1].item() == 2.0 and out[17].item() == 0.0


# -- Q4_1, Q5_0, Q5_1 (llama.cpp's fallback for rows that are not a multiple of 256 in a Q4_K_M file) --------------

def _legacy_half(b, off):
    return np.float32(np.frombuffer(bytes(b[off:off + 2]), np.float16)[0])


def _ref_legacy_block(name, blk):
    """ggml-quants.c dequantize_row_q4_1 / q5_0 / q5_1 for one block, element by element, float32 as in C."""
    f = np.float32
    d = _legacy_half(blk, 0)
    m = _legacy_half(blk, 2) if name in ("Q4_1", "Q5_1") else None
    off = 4 if m is not None else 2
    qh = 0
    if name in ("Q5_0", "Q5_1"):
        qh = int.from_bytes(bytes(blk[off:off + 4]), "little")   # memcpy into a uint32_t
        off += 4
    qs = [int(v) for v in blk[off:off + 16]]
    y = [f(0)] * 32
    for j in range(16):
        xh_0 = ((qh >> (j + 0)) << 4) & 0x10
        xh_1 = (qh >> (j + 12)) & 0x10
        x0, x1 = (qs[j] & 0x0F) | xh_0, (qs[j] >> 4) | xh_1
        if name == "Q5_0":
            y[j], y[j + 16] = f(x0 - 16) * d, f(x1 - 16) * d
        else:
            y[j], y[j + 16] = f(x0) * d + m, f(x1) * d + m
    return np.array(y, np.float32)


LEGACY = {"Q4_1": (20, [0, 2]), "Q5_0": (22, [0]), "Q5_1": (24, [0, 2])}


def _legacy_deq(name, raw, n_rows, n_in):
    from repotune_trainer.gguf import GGML_TYPE_IDS, TensorInfo
    t = TensorInfo("w", [n_in, n_rows], GGML_TYPE_IDS[name], 0)
    t.data = raw
    return pack(t)


@pytest.mark.parametrize("name", ["Q4_1", "Q5_0", "Q5_1"])
def test_legacy_random_bytes_dequantize_exactly_as_ggml(name):
    # Random bytes cover every qs nibble and every qh bit; the f16 fields are set to finite values of varied sign/size.
    rng = np.random.default_rng(11)
    bb, offs = LEGACY[name]
    n_rows, n_blocks = 3, 28                      # 896 values a row, as Qwen2.5-0.5B's width
    raw = rng.integers(0, 256, size=(n_rows, n_blocks * bb), dtype=np.uint8)
    halves = (rng.standard_normal((n_rows, n_blocks, 2)) * np.exp(rng.uniform(-8, 2, (n_rows, n_blocks, 2))))
    halves = halves.astype(np.float16)
    for b in range(n_blocks):
        for k, off in enumerate(offs):
            raw[:, b * bb + off:b * bb + off + 2] = halves[:, b, k:k + 1].copy().view(np.uint8)
    pw = _legacy_deq(name, raw, n_rows, n_blocks * 32)
    got = pw.dequantize().numpy()
    want = np.stack([np.concatenate([_ref_legacy_block(name, row[i:i + bb]) for i in range(0, len(row), bb)])
                     for row in raw])
    assert got.dtype == np.float32 and got.shape == (n_rows, 896)
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32))
    assert pw.nbytes() == raw.size and pw.type_name == name          # stays packed: exactly the file's bytes


def test_q5_0_hand_block():
    # d = 0.5. Value 0: nibble 0xF, qh bit 0 set -> 31 - 16 = 15 -> 7.5. Value 16: high nibble of qs[0] = 0x2, qh bit
    # 16 clear -> 2 - 16 = -14 -> -7. Value 31: high nibble of qs[15] = 0x1, qh bit 31 set -> 17 - 16 = 1 -> 0.5.
    # Value 3: qh bit 3 set, nibble 0 -> 16 - 16 = 0. Untouched values: 0 - 16 -> -8.
    qh = (1 << 0) | (1 << 3) | (1 << 31)
    qs = bytearray(16); qs[0] = 0x2F; qs[15] = 0x10
    blk = struct.pack("<e", 0.5) + struct.pack("<I", qh) + bytes(qs)
    out = _legacy_deq("Q5_0", np.frombuffer(blk, np.uint8).reshape(1, 22), 1, 32).dequantize()[0]
    assert out[0].item() == 7.5 and out[16].item() == -7.0 and out[31].item() == 0.5
    assert out[3].item() == 0.0 and out[1].item() == -8.0 and out[17].item() == -8.0


def test_q5_1_hand_block():
    # d = 0.25, m = -1. Value 20 (high nibble of qs[4] = 0x9, qh bit 20 set): 25 * 0.25 - 1 = 5.25.
    # Value 4 (low nibble 0x3, qh bit 4 clear): 3 * 0.25 - 1 = -0.25.
    qs = bytearray(16); qs[4] = 0x93
    blk = struct.pack("<ee", 0.25, -1.0) + struct.pack("<I", 1 << 20) + bytes(qs)
    out = _legacy_deq("Q5_1", np.frombuffer(blk, np.uint8).reshape(1, 24), 1, 32).dequantize()[0]
    assert out[20].item() == 5.25 and out[4].item() == -0.25 and out[0].item() == -1.0


def test_q4_1_hand_block():
    # d = 2, m = 0.5. Value 7 = low nibble of qs[7] (0xE) -> 28.5; value 23 = its high nibble (0x1) -> 2.5.
    qs = bytearray(16); qs[7] = 0x1E
    blk = struct.pack("<ee", 2.0, 0.5) + bytes(qs)
    out = _legacy_deq("Q4_1", np.frombuffer(blk, np.uint8).reshape(1, 20), 1, 32).dequantize()[0]
    assert out[7].item() == 28.5 and out[23].item() == 2.5 and out[0].item() == 0.5


@pytest.mark.parametrize("name", ["Q4_1", "Q5_0", "Q5_1"])
def test_legacy_frozen_matmul_and_embedding_rows(name):
    rng = np.random.default_rng(2)
    bb, offs = LEGACY[name]
    raw = rng.integers(0, 256, size=(6, 2 * bb), dtype=np.uint8)
    for b in range(2):
        for off in offs:
            raw[:, b * bb + off:b * bb + off + 2] = (rng.standard_normal((6, 1)) * 0.05).astype(np.float16).view(np.uint8)
    pw = _legacy_deq(name, raw, 6, 64)
    assert_behaves_as_dense(pw, 64)
