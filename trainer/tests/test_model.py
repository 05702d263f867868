import numpy as np
import pytest
import torch

from repotune_trainer.events import TrainerError
from repotune_trainer.gguf import GGUFReader, GGUFWriter, u32
from repotune_trainer.model import FrozenMatmul, LoraModel, frozen_matmul, open_model
from repotune_trainer.quants import Q8_0, dequantize, pack
from repotune_trainer.tiny import CONFIG, _permute_for_norm_rope, write_tiny_model


def _tokens(n=24, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).integers(10, 266, size=(2, n)))


def test_frozen_matmul_gradient_equals_plain_autograd(tiny_models):
    w = LoraModel(GGUFReader(tiny_models[("llama", "q8_0")]), rank=0).weights["blk.0.ffn_up.weight"]
    x1 = torch.randn(3, 5, 64, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_(True)
    g = torch.randn(3, 5, 192)
    (frozen_matmul(x1, w) * g).sum().backward()
    (x2 @ w.dequantize().t() * g).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad)


def test_autograd_keeps_only_the_packed_weight(tiny_models):
    """The memory trap: a naive `x @ dequant(W).T` keeps the dequantized f32 W alive until backward."""
    w = LoraModel(GGUFReader(tiny_models[("llama", "q8_0")]), rank=0).weights["blk.0.ffn_up.weight"]
    x = torch.randn(4, 64, requires_grad=True)

    def saved_bytes(fn):
        total = []
        def pack_hook(t):
            total.append(t.numel() * t.element_size())
            return t
        with torch.autograd.graph.saved_tensors_hooks(pack_hook, lambda t: t):
            fn()
        return sum(total)

    ours = saved_bytes(lambda: frozen_matmul(x, w))
    naive = saved_bytes(lambda: x @ dequantize(w.ggml_type, w.shape, w.parts).t())
    assert ours == w.nbytes() == 192 * 64 // 32 * 34
    assert naive == 192 * 64 * 4   # the whole f32 matrix (x is not saved: W needs no gradient)
    assert ours * 3.5 < naive


def test_rank_zero_equals_fresh_lora_and_lora_changes_output(tiny_models):
    r = GGUFReader(tiny_models[("qwen2", "f32")])
    base, lora = LoraModel(r, rank=0), LoraModel(r, rank=4, alpha=8)
    t = _tokens()
    with torch.no_grad():
        torch.testing.assert_close(base(t), lora(t))   # B starts at zero
        getattr(lora, lora._pname("blk.1.attn_v.weight", "b")).fill_(0.1)
        assert (base(t) - lora(t)).abs().max() > 1e-3


def test_norm_rope_on_permuted_weights_equals_neox_rope_on_original_weights(tiny_models):
    """llama.cpp's llama layout (permuted Q/K + adjacent-pair RoPE) must equal HF's (original Q/K + halves)."""
    m = LoraModel(GGUFReader(tiny_models[("llama", "f32")]), rank=0)
    with torch.no_grad():
        ref = m(_tokens())
        for i in range(CONFIG["n_layer"]):
            for name, heads in (("attn_q", CONFIG["n_head"]), ("attn_k", CONFIG["n_head_kv"])):
                pw = m.weights[f"blk.{i}.{name}.weight"]
                w = pw.parts[0].numpy()
                # inverse of the converter's permutation
                inv = w.reshape(heads, w.shape[0] // heads // 2, 2, -1).swapaxes(1, 2).reshape(w.shape)
                assert np.array_equal(_permute_for_norm_rope(inv, heads), w)
                pw.parts[0] = torch.from_numpy(inv.copy())
        m.rope.neox = True
        torch.testing.assert_close(m(_tokens()), ref, rtol=1e-4, atol=1e-4)


def test_tied_model_uses_token_embd_as_head(tiny_models):
    m = LoraModel(GGUFReader(tiny_models[("llama", "tied")]), rank=2)
    assert m.tied and m.weights["output.weight"] is m.weights["token_embd.weight"]
    assert m(_tokens()).shape == (2, 24, 267)


def test_quantized_models_stay_close_to_f32(tiny_models):
    t = _tokens()
    with torch.no_grad():
        p32 = LoraModel(GGUFReader(tiny_models[("llama", "f32")]), rank=0)(t).softmax(-1)
        p16 = LoraModel(GGUFReader(tiny_models[("llama", "f16")]), rank=0)(t).softmax(-1)
        p8 = LoraModel(GGUFReader(tiny_models[("llama", "q8_0")]), rank=0)(t).softmax(-1)
    assert 0 < (p16 - p32).abs().max() < 0.01
    assert 0 < (p8 - p32).abs().max() < 0.05


def test_unsupported_architecture_is_refused_by_name(tmp_path):
    w = GGUFWriter()
    w.add("general.architecture", "starcoder2")
    w.add("starcoder2.block_count", u32(1))
    w.add_tensor("token_embd.weight", np.zeros((4, 8), np.float32))
    path = str(tmp_path / "sc2.gguf")
    w.write(path)
    with pytest.raises(TrainerError) as e:
        LoraModel(GGUFReader(path))
    assert e.value.code == "unsupported_arch" and "starcoder2" in e.value.message


def test_missing_tensor_and_unreadable_file_are_bad_model(tmp_path, tiny_models):
    r = GGUFReader(tiny_models[("llama", "f32")])
    del r.tensors["blk.1.ffn_down.weight"]
    with pytest.raises(TrainerError) as e:
        LoraModel(r)
    assert e.value.code == "bad_model" and "blk.1.ffn_down.weight" in e.value.message
    with pytest.raises(TrainerError) as e:
        open_model(str(tmp_path / "nope.gguf"))
    assert e.value.code == "bad_model"
