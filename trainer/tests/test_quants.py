import numpy as np
import torch

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
