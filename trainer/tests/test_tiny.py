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
