import hashlib
import json

import numpy as np
import pytest

from conftest import TOKEN_ID, run_cli
from repotune_trainer.gguf import GGUFReader
from repotune_trainer.tiny import write_tiny_model


def _sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_same_seed_same_bytes_other_seed_other_weights(tmp_path):
    a = write_tiny_model(str(tmp_path / "a.gguf"), "qwen2", seed=3)
    b = write_tiny_model(str(tmp_path / "b.gguf"), "qwen2", seed=3)
    c = write_tiny_model(str(tmp_path / "c.gguf"), "qwen2", seed=4)
    assert _sha(a) == _sha(b) != _sha(c)


@pytest.mark.parametrize("arch", ["llama", "qwen2", "starcoder2"])
@pytest.mark.parametrize("dtype,matrix_type", [("f32", "F32"), ("f16", "F16"), ("q8_0", "Q8_0")])
def test_cli_writes_a_complete_model(tmp_path, arch, dtype, matrix_type):
    out = str(tmp_path / "m.gguf")
    p, _ = run_cli("tiny-model", "--arch", arch, "--dtype", dtype, "--out", out)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == {"path": out, "arch": arch, "dtype": dtype}
    r = GGUFReader(out)
    assert r.architecture == arch
    assert r.get("tokenizer.ggml.model") == "llama" and r.get("tokenizer.ggml.add_space_prefix") is False
    tokens = r.get("tokenizer.ggml.tokens")
    assert tokens[:3] == ["<unk>", "<s>", "</s>"] and "<0x41>" in tokens and "\u2581" in tokens
    assert r.get("tokenizer.ggml.fim_pre_token_id") == TOKEN_ID["<|fim_prefix|>"]
    assert r.get("tokenizer.ggml.fim_suf_token_id") == TOKEN_ID["<|fim_suffix|>"]
    assert r.get("tokenizer.ggml.fim_mid_token_id") == TOKEN_ID["<|fim_middle|>"]
    assert r.get("tokenizer.ggml.eot_token_id") == TOKEN_ID["<|endoftext|>"]
    assert r.get(f"{arch}.block_count") == 2 and r.get(f"{arch}.embedding_length") == 64
    assert r.tensors["blk.0.attn_q.weight"].type_name == matrix_type
    assert r.tensors["blk.1.ffn_norm.weight"].type_name == "F32"
    assert ("blk.0.attn_q.bias" in r.tensors) == (arch in ("qwen2", "starcoder2"))
    assert "output.weight" in r.tensors
    sc2 = arch == "starcoder2"
    # starcoder2: LayerNorm (its own epsilon key) with biases, biased O/up/down, no gate (llama.cpp's tensor list)
    assert ("blk.0.ffn_gate.weight" in r.tensors) == (not sc2)
    for name in ("blk.1.attn_norm.bias", "blk.1.ffn_norm.bias", "output_norm.bias", "blk.0.attn_output.bias",
                 "blk.0.ffn_up.bias", "blk.0.ffn_down.bias"):
        assert (name in r.tensors) == sc2
        if sc2:
            assert r.tensors[name].type_name == "F32"
    assert (r.get(f"{arch}.attention.layer_norm_epsilon") is not None) == sc2
    assert (r.get(f"{arch}.attention.layer_norm_rms_epsilon") is not None) == (not sc2)


@pytest.mark.parametrize("arch", ["llama", "starcoder2"])
def test_tied_variant_has_no_output_head(tmp_path, arch):
    r = GGUFReader(write_tiny_model(str(tmp_path / "t.gguf"), arch, tied=True))
    assert "output.weight" not in r.tensors and "token_embd.weight" in r.tensors


def test_starcoder2_generator_is_deterministic(tmp_path):
    a = write_tiny_model(str(tmp_path / "a.gguf"), "starcoder2", seed=1, dtype="q8_0")
    b = write_tiny_model(str(tmp_path / "b.gguf"), "starcoder2", seed=1, dtype="q8_0")
    assert _sha(a) == _sha(b)


def test_unknown_tiny_arch_is_a_usage_error(tmp_path):
    p, events = run_cli("tiny-model", "--arch", "gpt2", "--out", str(tmp_path / "x.gguf"))
    assert p.returncode == 2 and events[0]["code"] == "bad_args"


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_q4_k_m_mixture_at_width_256(tmp_path, arch):
    out = str(tmp_path / "k.gguf")
    p, _ = run_cli("tiny-model", "--arch", arch, "--dtype", "q4_k_m", "--width", "256", "--out", out)
    assert p.returncode == 0, p.stderr
    r = GGUFReader(out)
    assert r.get("general.file_type") == 15                       # LLAMA_FTYPE_MOSTLY_Q4_K_M
    assert r.get(f"{arch}.embedding_length") == 256 and r.get(f"{arch}.feed_forward_length") == 768
    assert r.get(f"{arch}.rope.dimension_count") == 64
    types = {n: t.type_name for n, t in r.tensors.items()}
    # llama.cpp's Q4_K_M for 2 layers: use_more_bits(i, 2) is true for layer 1 only -> Q6_K attn_v / ffn_down there.
    assert types["output.weight"] == "Q6_K" and types["token_embd.weight"] == "Q4_K"
    assert types["blk.0.attn_v.weight"] == types["blk.0.ffn_down.weight"] == "Q4_K"
    assert types["blk.1.attn_v.weight"] == types["blk.1.ffn_down.weight"] == "Q6_K"
    for name in ("attn_q", "attn_k", "attn_output", "ffn_gate", "ffn_up"):
        assert types[f"blk.0.{name}.weight"] == types[f"blk.1.{name}.weight"] == "Q4_K"
    assert types["blk.0.attn_norm.weight"] == "F32"
    if arch == "qwen2":
        assert types["blk.0.attn_q.bias"] == "F32"
    # the trainer reads the file: every matrix dequantizes to the generator's weights within Q4_K / Q6_K error
    from repotune_trainer.quants import pack
    from repotune_trainer.tiny import make_weights
    w = make_weights(arch, 0, width=256)
    for name in ("blk.1.ffn_down.weight", "blk.0.attn_q.weight", "output.weight"):
        x = w[name]
        got = pack(r.tensors[name]).dequantize().numpy()
        rel = np.sqrt(((got - x) ** 2).mean() / (x ** 2).mean())
        assert rel < (0.03 if types[name] == "Q6_K" else 0.12), (name, rel)


def test_q4_k_m_tied_head_is_q6_k(tmp_path):
    from repotune_trainer.tiny import q4_k_m_type
    from repotune_trainer.quants import Q4_K, Q6_K
    assert q4_k_m_type("token_embd.weight", 2, tied=True) == Q6_K
    assert q4_k_m_type("token_embd.weight", 2, tied=False) == Q4_K
    # 24 layers (Qwen2.5-0.5B): llama.cpp's use_more_bits picks layers 0-2, 21-23 and every third in between
    picked = [i for i in range(24) if q4_k_m_type(f"blk.{i}.ffn_down.weight", 24, False) == Q6_K]
    assert picked == [0, 1, 2, 5, 8, 11, 14, 17, 20, 21, 22, 23]


def test_q4_k_m_needs_a_width_of_a_multiple_of_256(tmp_path):
    p, events = run_cli("tiny-model", "--dtype", "q4_k_m", "--out", str(tmp_path / "x.gguf"))
    assert p.returncode == 2 and events[0]["code"] == "bad_args" and "--width 256" in events[0]["message"]


def test_wider_f32_model_loads(tmp_path):
    from repotune_trainer.gguf import GGUFReader as R
    r = R(write_tiny_model(str(tmp_path / "w.gguf"), "starcoder2", width=128))
    assert r.get("starcoder2.embedding_length") == 128 and r.tensors["blk.0.ffn_up.weight"].shape == (384, 128)


# -- shape options and the fast generator (full-size random models for bench/gpu_compare.py) ----------------------

SHAPED = dict(n_layer=3, n_head=2, n_head_kv=1, n_ff=512, n_vocab=300, rope_base=1e6, rms_eps=1e-6,
              context_length=8192)


def test_shape_options_reach_the_file(tmp_path):
    from repotune_trainer.tiny import vocab
    r = GGUFReader(write_tiny_model(str(tmp_path / "s.gguf"), "qwen2", 0, "q4_k_m", tied=True, width=256, fast=True,
                                    **SHAPED))
    assert r.get("qwen2.block_count") == 3 and r.get("qwen2.embedding_length") == 256
    assert r.get("qwen2.attention.head_count") == 2 and r.get("qwen2.attention.head_count_kv") == 1
    assert r.get("qwen2.rope.dimension_count") == 128 and r.get("qwen2.feed_forward_length") == 512
    assert r.get("qwen2.context_length") == 8192
    assert r.get("qwen2.rope.freq_base") == pytest.approx(1e6)
    assert r.get("qwen2.attention.layer_norm_rms_epsilon") == pytest.approx(1e-6)
    tokens, types = r.get("tokenizer.ggml.tokens"), r.get("tokenizer.ggml.token_type")
    base = vocab()["tokens"]
    assert len(tokens) == 300 and tokens[:len(base)] == base and tokens[-1] == f"<|unused_{300 - len(base) - 1}|>"
    assert set(types[len(base):]) == {5}                            # llama.cpp's LLAMA_TOKEN_TYPE_UNUSED
    assert r.get("tokenizer.ggml.fim_mid_token_id") == TOKEN_ID["<|fim_middle|>"]
    shapes = {n: t.shape for n, t in r.tensors.items()}
    assert shapes["token_embd.weight"] == (300, 256) and "output.weight" not in shapes
    assert shapes["blk.2.attn_k.weight"] == (128, 256) and shapes["blk.2.attn_k.bias"] == (128,)
    assert shapes["blk.0.ffn_down.weight"] == (256, 512) and shapes["blk.0.ffn_gate.weight"] == (512, 256)
    types_of = {n: t.type_name for n, t in r.tensors.items()}
    # use_more_bits(i, 3) picks layer 2 only; the tied head (token_embd) is Q6_K
    assert types_of["token_embd.weight"] == "Q6_K"
    assert types_of["blk.2.ffn_down.weight"] == types_of["blk.2.attn_v.weight"] == "Q6_K"
    assert types_of["blk.1.ffn_down.weight"] == types_of["blk.1.attn_v.weight"] == "Q4_K"


def test_fast_generator_is_deterministic_and_writes_its_own_weights_in_order(tmp_path):
    from repotune_trainer.quants import pack
    from repotune_trainer.tiny import make_weights
    a = write_tiny_model(str(tmp_path / "a.gguf"), "qwen2", 5, "q8_0", width=128, fast=True, **SHAPED)
    b = write_tiny_model(str(tmp_path / "b.gguf"), "qwen2", 5, "q8_0", width=128, fast=True, **SHAPED)
    slow = write_tiny_model(str(tmp_path / "c.gguf"), "qwen2", 5, "q8_0", width=128, **SHAPED)
    assert _sha(a) == _sha(b) != _sha(slow)
    # the threads wrote every tensor under its own name: each reads back as make_weights(fast=True) gives it
    w = make_weights("qwen2", 5, width=128, fast=True, **SHAPED)
    r = GGUFReader(a)
    assert list(r.tensors) == list(w)
    for name, x in w.items():
        got = pack(r.tensors[name]).dequantize().numpy()
        assert got.shape == x.shape, name
        rel = np.sqrt(((got - x) ** 2).mean() / (x ** 2).mean())
        assert rel < (1e-6 if x.ndim == 1 else 0.01), (name, rel)


def test_fast_generator_keeps_the_weight_scales():
    from repotune_trainer.tiny import make_weights
    from repotune_trainer.tiny import BASE_VOCAB
    w = make_weights("llama", 0, width=256, fast=True, n_ff=1024, n_vocab=2000)
    assert all(x.dtype == np.float32 for x in w.values())
    assert np.std(w["token_embd.weight"][:BASE_VOCAB]) == pytest.approx(1.0, rel=0.02)
    assert np.std(w["blk.0.attn_q.weight"]) == pytest.approx(1 / np.sqrt(256), rel=0.02)
    assert np.std(w["blk.1.ffn_down.weight"]) == pytest.approx(0.5 / np.sqrt(1024), rel=0.02)
    assert np.std(w["output.weight"][:BASE_VOCAB]) == pytest.approx(2 / np.sqrt(256), rel=0.02)
    # The padding's unused tokens are never predicted: zero rows in the embedding and the output head.
    assert not w["token_embd.weight"][BASE_VOCAB:].any() and not w["output.weight"][BASE_VOCAB:].any()
    assert np.mean(w["blk.0.attn_norm.weight"]) == pytest.approx(1.0, abs=0.03)
    assert np.std(w["blk.0.attn_norm.weight"]) == pytest.approx(0.1, rel=0.2)


@pytest.mark.parametrize("shape,dtype,message", [
    (dict(n_head=3), "f32", "heads of an even size"),
    (dict(n_head=4, n_head_kv=3), "f32", "multiple of the KV heads"),
    (dict(n_vocab=100), "f32", "at least the 267 base tokens"),
    (dict(n_ff=320), "q4_k_m", "FFN size that is a multiple of 256"),
    (dict(n_ff=80), "q8_0", "multiple of 32"),
    (dict(n_layer=0), "f32", "at least 1"),
])
def test_impossible_shapes_are_refused(tmp_path, shape, dtype, message):
    with pytest.raises(ValueError, match=message):
        write_tiny_model(str(tmp_path / "x.gguf"), "qwen2", 0, dtype, width=256, **shape)


def test_trainer_trains_a_model_with_other_shapes(tmp_path):
    from conftest import repetitive_examples, train_args, write_dataset
    model = write_tiny_model(str(tmp_path / "m.gguf"), "qwen2", 0, "q8_0", tied=True, width=128, fast=True, **SHAPED)
    data = write_dataset(tmp_path / "data", repetitive_examples(8, 0), repetitive_examples(2, 1), seq_len=96,
                         vocab_size=300)
    p, events = run_cli(*train_args(model, data, str(tmp_path / "run"), str(tmp_path / "a.gguf"), "--steps", "3"))
    assert p.returncode == 0, p.stderr
    start = next(e for e in events if e["event"] == "start")
    assert (start["n_layer"], start["n_embd"], start["vocab_size"]) == (3, 128, 300)
    done = events[-1]
    assert done["event"] == "done" and done["val_loss"] < done["val_loss_base"]
    # CPU run: no CUDA allocator peak to report
    assert "peak_memory_bytes" not in done


def test_real_model_shapes_are_valid_and_the_cli_knows_them(tmp_path):
    from repotune_trainer.tiny import SHAPES, config
    for name, shape in SHAPES.items():
        s = dict(shape)
        c = config(s.pop("width"), **s)
        # Qwen2.5-Coder's head size is 64 (0.5B: 896 / 14) and 128 (1.5B: 1536 / 12).
        assert c["n_embd"] // c["n_head"] == {"qwen2.5-coder-0.5b": 64, "qwen2.5-coder-1.5b": 128}[name]
        assert c["n_vocab"] == 151936 and c["n_ff"] % 32 == 0
    # Those shapes are qwen2's: another architecture is refused with the reason.
    p, events = run_cli("tiny-model", "--arch", "llama", "--shape", "qwen2.5-coder-0.5b", "--out", str(tmp_path / "x.gguf"))
    assert p.returncode == 2 and "give --arch qwen2" in events[-1]["message"]
    assert not (tmp_path / "x.gguf").exists()
