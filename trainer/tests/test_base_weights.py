"""--base-weights: full-precision matrices trained as a Q8_0 / Q4_0 copy made in torch on the training device.

The torch quantizer must give ggml's bytes: it is compared with the numpy reference quantizers of quants.py
(`quantize_q8_0`, `quantize_q4_0`, which also write the tiny models), and those with a scalar transcription of
ggml-quants.c's quantize_row_q8_0_ref / quantize_row_q4_0_ref on blocks built to hit the corner cases."""
import math

import numpy as np
import pytest
import torch

from conftest import run_cli, schema_failures, sparse_model, train_args
from repotune_trainer.device import free_memory
from repotune_trainer.fit import Settings, preflight
from repotune_trainer.gguf import GGUFReader, TensorInfo
from repotune_trainer.memory import estimate, model_shape
from repotune_trainer.model import LoraModel
from repotune_trainer.quants import (BF16, F16, F32, Q4_0, Q8_0, PackedWeight, pack, quantize, quantize_q4_0,
                                     quantize_q8_0)

REFERENCE = {Q8_0: quantize_q8_0, Q4_0: quantize_q4_0}


def _raw(pw: PackedWeight) -> np.ndarray:
    """A Q8_0/Q4_0 PackedWeight's parts as the GGUF's bytes: (rows, n_blocks * block bytes)."""
    d = pw.parts[0].cpu().contiguous().numpy().view(np.uint8).reshape(*pw.parts[0].shape, 2)
    qs = pw.parts[1].cpu().contiguous().numpy().view(np.uint8)
    return np.concatenate([d, qs], -1).reshape(pw.shape[0], -1)


def _corner_blocks() -> np.ndarray:
    """32-value blocks at the rules' edges, float32."""
    f = np.float32
    blocks = [np.zeros(32, f)]
    # Q8_0 with amax 127: d = 1, id = 1, so x * id is x: exact halves (roundf goes away from zero, 2.5 -> 3), the
    # float32 just below 0.5 (floor(x + 0.5) would give 1) and just above it.
    b = np.zeros(32, f)
    b[:12] = [127, 0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 126.5, -126.5, 0.49999997, -0.49999997, 0.50000006]
    blocks.append(b)
    # Q4_0 with max -8: d = 1, id = 1; x + 8.5 on both sides of each truncation, and above 15 (clamped).
    b = np.full(32, -0.25, f)
    b[:10] = [-8, 7.5, 7.4999995, 6.5, 6.4999995, -7.5, -0.5, 0.5, -7.9999995, 3.25]
    blocks.append(b)
    # Largest magnitude twice with both signs: the first one is `max` (d changes sign with it).
    for first, second in ((3.0, -3.0), (-3.0, 3.0)):
        b = np.linspace(-1, 1, 32).astype(f)
        b[2], b[20] = first, second
        blocks.append(b)
    # d below the f16 range (stored as 0 or subnormal, while q is computed from the float32 d), and large values
    # that F16 still holds.
    for scale in (1e-9, 3e-6, 6e4):
        blocks.append((np.linspace(-1, 1, 32) * scale).astype(f))
    return np.stack(blocks)


def _c_q8_0(block: np.ndarray) -> bytes:
    """quantize_row_q8_0_ref for one block, statement by statement, float32 arithmetic as in C."""
    f = np.float32
    amax = f(0)
    for v in block:
        amax = max(amax, abs(f(v)))
    d = f(amax / f(127))
    inv = f(f(1) / d) if d else f(0)
    qs = []
    for v in block:
        x0 = float(f(f(v) * inv))                               # exact in double
        qs.append(int(math.copysign(math.floor(abs(x0) + 0.5), x0)))   # roundf, exactly
    return np.float16(d).tobytes() + np.array(qs, np.int8).tobytes()


def _c_q4_0(block: np.ndarray) -> bytes:
    """quantize_row_q4_0_ref for one block, statement by statement, float32 arithmetic as in C."""
    f = np.float32
    amax, mx = f(0), f(0)
    for v in block:
        if amax < abs(f(v)):
            amax, mx = abs(f(v)), f(v)
    d = f(mx / f(-8))
    inv = f(f(1) / d) if d else f(0)
    q = [min(15, int(f(f(f(v) * inv) + f(8.5)))) for v in block]   # int() truncates, as the (int8_t) cast
    return np.float16(d).tobytes() + bytes(q[j] | (q[j + 16] << 4) for j in range(16))


def test_numpy_reference_is_the_ggml_c_code_on_corner_blocks():
    blocks = _corner_blocks()
    for ggml_type, c in ((Q8_0, _c_q8_0), (Q4_0, _c_q4_0)):
        want = np.frombuffer(b"".join(c(b) for b in blocks), np.uint8).reshape(len(blocks), -1)
        assert np.array_equal(REFERENCE[ggml_type](blocks), want), ggml_type


def _source(x: np.ndarray, ggml_type: int) -> PackedWeight:
    t = torch.from_numpy(x)
    t = {F32: t, F16: t.to(torch.float16), BF16: t.to(torch.bfloat16)}[ggml_type]
    return PackedWeight(ggml_type, tuple(x.shape), [t])


@pytest.mark.parametrize("src", [F32, F16, BF16], ids=["F32", "F16", "BF16"])
@pytest.mark.parametrize("to", [Q8_0, Q4_0], ids=["Q8_0", "Q4_0"])
def test_torch_quantizer_gives_the_reference_bytes(src, to):
    rng = np.random.default_rng(7)
    # Rows of 896 values (a real width that is not a multiple of 256), magnitudes from 1e-5 to 50 per row, plus
    # the corner blocks laid end to end in rows of their own.
    x = (rng.standard_normal((40, 896)) * np.exp(rng.uniform(-12, 4, (40, 1)))).astype(np.float32)
    corners = _corner_blocks()
    corners = np.concatenate([corners, np.zeros((-len(corners) % 4, 32), np.float32)]).reshape(-1, 128)
    x = np.concatenate([x, np.pad(corners, ((0, 0), (0, 896 - 128)))])
    w = _source(x, src)
    got = quantize(w, to)
    values = w.dequantize(torch.float32).numpy()                # what the file holds, as float32
    want = REFERENCE[to](values)
    raw = _raw(got)
    assert raw.shape == want.shape and np.array_equal(raw, want), f"{int((raw != want).sum())} bytes differ"
    # The same parts, dtypes and shapes as a file's Q8_0/Q4_0 tensor: FrozenMatmul cannot tell them apart.
    info = TensorInfo("w", [896, x.shape[0]], to, 0)
    info.data = want
    from_file = pack(info)
    assert got.ggml_type == to and got.shape == from_file.shape
    for a, b in zip(got.parts, from_file.parts):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)


def test_quantizer_works_in_row_chunks(monkeypatch):
    """A large output head is quantized a slice of rows at a time; the slices must join into the same bytes."""
    import repotune_trainer.quants as q
    x = np.random.default_rng(3).standard_normal((37, 64)).astype(np.float32)
    whole = _raw(quantize(_source(x, F16), Q4_0))
    monkeypatch.setattr(q, "_QUANT_VALUES", 5 * 64)      # 5 rows at a time
    assert np.array_equal(_raw(quantize(_source(x, F16), Q4_0)), whole)


def _held_bytes(m: LoraModel) -> int:
    unique = {id(w): w for w in m.weights.values()}
    return sum(w.nbytes() for w in unique.values()) + sum(t.numel() * t.element_size() for t in m.small.values())


def test_which_tensors_are_quantized_and_what_the_estimate_counts(tiny_models):
    f16 = tiny_models[("llama", "f16")]
    r = GGUFReader(f16)
    m = LoraModel(r, rank=0, base_weights="q4_0")
    for name, w in m.weights.items():
        if name.startswith("blk."):
            assert w.type_name == "Q4_0", name
            assert np.array_equal(_raw(w), quantize_q4_0(np.asarray(r.tensors[name].data, np.float32))), name
    assert m.weights["output.weight"].type_name == "Q8_0"        # the head: Q8_0 in both modes
    assert m.weights["token_embd.weight"].type_name == "F16"     # untied embeddings are only looked up
    assert all(t.dtype == torch.float32 for t in m.small.values())
    assert sorted(set(m.quantized_from.values())) == ["F16"] and len(m.quantized_from) == 2 * 7 + 1
    assert estimate(f16, 64, 2, 4, "cpu", "q4_0")["weights"] == _held_bytes(m)

    tied = tiny_models[("llama", "tied")]
    t = LoraModel(GGUFReader(tied), rank=0, base_weights="q8_0")
    assert t.weights["token_embd.weight"].type_name == "Q8_0" and t.weights["output.weight"] is t.weights["token_embd.weight"]
    assert {w.type_name for n, w in t.weights.items() if n.startswith("blk.")} == {"Q8_0"}
    assert estimate(tied, 64, 2, 4, "cpu", "q8_0")["weights"] == _held_bytes(t)
    for mode in ("keep", "q8_0", "q4_0"):
        assert estimate(f16, 64, 2, 4, "cpu", mode)["weights"] == _held_bytes(LoraModel(GGUFReader(f16), rank=0,
                                                                                         base_weights=mode))


def test_quantized_files_are_never_quantized_again(tiny_models):
    path = tiny_models[("qwen2", "q8_0")]
    keep = LoraModel(GGUFReader(path), rank=0)
    q4 = LoraModel(GGUFReader(path), rank=0, base_weights="q4_0")
    assert q4.quantized_from == {}
    for name, w in keep.weights.items():
        assert q4.weights[name].ggml_type == w.ggml_type and all(torch.equal(a, b) for a, b in zip(q4.weights[name].parts, w.parts))
    assert estimate(path, 64, 2, 4, "cpu", "q4_0")["total"] == estimate(path, 64, 2, 4, "cpu", "keep")["total"]


def test_quantized_copies_predict_like_the_file(tiny_models):
    path = tiny_models[("llama", "f16")]
    tokens = torch.tensor([[1, 3] + list(range(40, 80))])
    with torch.no_grad():
        p = {mode: LoraModel(GGUFReader(path), rank=0, base_weights=mode)(tokens).softmax(-1)
             for mode in ("keep", "q8_0", "q4_0")}
    d8, d4 = (float((p[m] - p["keep"]).abs().max()) for m in ("q8_0", "q4_0"))
    print(f"\nmax |p - p_f16|: q8_0 {d8:.2e}, q4_0 {d4:.2e}")
    assert 0 < d8 < 2e-2 and d8 < d4 < 2e-1


def _layers_for(target_keep_bytes: float, tmp_path) -> int:
    """Layers of a width-4096 sparse F16 model whose `keep` estimate (batch 1, 128 tokens) is about the target."""
    e = [estimate(sparse_model(tmp_path / f"probe{n}.gguf", 4096, n), 128, 1, 4, "cpu", "keep", True)["total"]
         for n in (1, 2)]
    return max(1, math.ceil((target_keep_bytes - e[0]) / (e[1] - e[0])) + 1)


def test_auto_keeps_when_it_fits_else_takes_q8_0_then_q4_0(tmp_path):
    """Real free memory of this machine, real (sparse) F16 models sized around it, the preflight's decision."""
    free = free_memory("cpu")
    assert free and free > 2 ** 30
    req = Settings(batch=1, grad_accum=1, grad_checkpoint=True, seq_len=128, rank=4, base_weights="auto")
    # The estimate of a Q8_0 copy is ~0.63x keep's here, of a Q4_0 copy ~0.42x (weights, and a per-layer share that does
    # not shrink): keep at 1.3x the usable memory (0.9 free) leaves Q8_0 fitting, at 2.0x only Q4_0.
    for factor, want in ((0.2, "keep"), (1.3, "q8_0"), (2.0, "q4_0")):
        path = sparse_model(tmp_path / f"m{factor}.gguf", 4096, _layers_for(factor * 0.9 * free, tmp_path))
        with GGUFReader(path) as r:
            plan = preflight(model_shape(r), "cpu", req, free)
        assert plan.settings.base_weights == want, (factor, plan.need, free)
        assert plan.need <= 0.9 * free
        sentence = plan.describe()
        if want == "keep":
            assert "fits in" in sentence and "as stored" in sentence
        else:
            assert "does not fit" in sentence and f"a {want.upper()} copy" in sentence, sentence


def _events(p, name):
    return [e for e in p[1] if e["event"] == name]


@pytest.mark.parametrize("mode", ["auto", "keep", "q8_0", "q4_0"])
def test_training_on_each_form(mode, tiny_models, small_dataset, tmp_path):
    run = run_cli(*train_args(tiny_models[("llama", "f16")], small_dataset, str(tmp_path / "run"),
                              str(tmp_path / "a.gguf"), "--steps", "12", "--batch", "4", "--rank", "4", "--lr", "1e-2",
                              "--eval-every", "12", "--base-weights", mode))
    p, events = run
    assert p.returncode == 0, p.stderr
    start, done = _events(run, "start")[0], _events(run, "done")[0]
    used = "keep" if mode == "auto" else mode      # a tiny model fits anywhere
    assert start["base_weights"] == {"requested": mode, "used": used, "quantized": 0 if used == "keep" else 15}
    assert start["weight_types"] == {"keep": ["F16"], "q8_0": ["F16", "Q8_0"], "q4_0": ["F16", "Q4_0", "Q8_0"]}[used]
    assert 0 < start["memory_estimate"] < start["memory_free"]
    assert done["val_loss"] < 0.8 * done["val_loss_base"]
    if used != "keep":
        assert f"Training on a {used.upper()} copy" in p.stderr
    bad = schema_failures(p.stdout)
    assert bad in (None, []), bad


def test_a_quantized_file_trains_as_stored_whatever_the_option(tiny_models, small_dataset, tmp_path):
    p, events = run_cli(*train_args(tiny_models[("qwen2", "q8_0")], small_dataset, str(tmp_path / "run"),
                                    str(tmp_path / "a.gguf"), "--steps", "1", "--batch", "2", "--rank", "2",
                                    "--base-weights", "q4_0"))
    assert p.returncode == 0, p.stderr
    start = [e for e in events if e["event"] == "start"][0]
    assert start["base_weights"] == {"requested": "q4_0", "used": "q4_0", "quantized": 0}
    assert start["weight_types"] == ["Q8_0"]
