import numpy as np
import pytest
import torch

from conftest import saved_bytes
from repotune_trainer.events import TrainerError
from repotune_trainer.gguf import GGUFReader, GGUFWriter, u32
from repotune_trainer.adapter import read_adapter, write_adapter
from repotune_trainer.model import FrozenMatmul, LoraModel, frozen_matmul, open_model
from repotune_trainer.probs import load_model
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
    w.add("general.architecture", "phi3")
    w.add("phi3.block_count", u32(1))
    w.add_tensor("token_embd.weight", np.zeros((4, 8), np.float32))
    path = str(tmp_path / "phi3.gguf")
    w.write(path)
    with pytest.raises(TrainerError) as e:
        LoraModel(GGUFReader(path))
    assert e.value.code == "unsupported_arch" and "phi3" in e.value.message
    assert "starcoder2" in e.value.message   # the list of what is supported


# -- starcoder2 ---------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sc2_models(tmp_path_factory):
    d = tmp_path_factory.mktemp("sc2")
    out = {dtype: write_tiny_model(str(d / f"sc2-{dtype}.gguf"), "starcoder2", 0, dtype) for dtype in ("f32", "q8_0")}
    out["tied"] = write_tiny_model(str(d / "sc2-tied.gguf"), "starcoder2", 0, "f32", tied=True)
    return out


def _reference_starcoder2(path, tokens):
    """An independent float64 transcription of llama.cpp's starcoder2 graph (src/models/starcoder2.cpp) in HF terms:
    LayerNorm(w, b) -> Q/K/V (+bias) -> NEOX RoPE (rotate halves) -> GQA causal attention -> O (+bias) -> residual;
    LayerNorm(w, b) -> up (+bias) -> tanh GELU -> down (+bias) -> residual; output LayerNorm(w, b) -> head."""
    r = GGUFReader(path)
    W = {n: torch.from_numpy(np.array(t.data, dtype=np.float64)) for n, t in r.tensors.items()}
    eps = r.get("starcoder2.attention.layer_norm_epsilon")
    n_head, n_kv = r.get("starcoder2.attention.head_count"), r.get("starcoder2.attention.head_count_kv")
    base = r.get("starcoder2.rope.freq_base")
    d = W["token_embd.weight"].shape[1]
    hd = d // n_head

    def ln(x, name):
        mu = x.mean(-1, keepdim=True)
        var = ((x - mu) ** 2).mean(-1, keepdim=True)
        return (x - mu) / torch.sqrt(var + eps) * W[name + ".weight"] + W[name + ".bias"]

    def rope(x):   # (seq, heads, hd), rotate halves
        pos = torch.arange(x.shape[0], dtype=torch.float64)[:, None]
        theta = pos * base ** (-2.0 * torch.arange(hd // 2, dtype=torch.float64) / hd)
        cos, sin = theta.cos()[:, None, :], theta.sin()[:, None, :]
        x0, x1 = x[..., :hd // 2], x[..., hd // 2:]
        return torch.cat([x0 * cos - x1 * sin, x0 * sin + x1 * cos], -1)

    h = W["token_embd.weight"][tokens]
    n = len(tokens)
    for i in range(r.get("starcoder2.block_count")):
        p = f"blk.{i}."
        x = ln(h, p + "attn_norm")
        q = rope((x @ W[p + "attn_q.weight"].T + W[p + "attn_q.bias"]).view(n, n_head, hd))
        k = rope((x @ W[p + "attn_k.weight"].T + W[p + "attn_k.bias"]).view(n, n_kv, hd))
        v = (x @ W[p + "attn_v.weight"].T + W[p + "attn_v.bias"]).view(n, n_kv, hd)
        heads = []
        for hh in range(n_head):
            kv = hh // (n_head // n_kv)
            s = q[:, hh] @ k[:, kv].T / np.sqrt(hd)
            s = s.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf"))
            heads.append(s.softmax(-1) @ v[:, kv])
        h = h + torch.cat(heads, -1) @ W[p + "attn_output.weight"].T + W[p + "attn_output.bias"]
        x = ln(h, p + "ffn_norm")
        u = x @ W[p + "ffn_up.weight"].T + W[p + "ffn_up.bias"]
        g = 0.5 * u * (1 + torch.tanh(np.sqrt(2 / np.pi) * (u + 0.044715 * u ** 3)))
        h = h + g @ W[p + "ffn_down.weight"].T + W[p + "ffn_down.bias"]
    return ln(h, "output_norm") @ W.get("output.weight", W["token_embd.weight"]).T


@pytest.mark.parametrize("which", ["f32", "tied"])
def test_starcoder2_forward_equals_an_independent_reference(sc2_models, which):
    m = LoraModel(GGUFReader(sc2_models[which]), rank=0)
    assert m.cfg.layer_norm and not m.cfg.gated_ffn and m.cfg.neox_rope and m.cfg.rms_eps == pytest.approx(1e-5)
    assert m.tied == (which == "tied")
    tokens = _tokens(20, seed=5)[0]
    with torch.no_grad():
        ours = m(tokens[None])[0].double()
    ref = _reference_starcoder2(sc2_models[which], tokens)
    torch.testing.assert_close(ours, ref, rtol=0, atol=2e-5)   # erf GELU instead of tanh: 9.6e-4 off
    # the weights the reference reads all matter: the model is not trivially insensitive to the biases
    assert ours.softmax(-1).max() > 0.5


def test_starcoder2_shapes_determinism_and_lora_targets(sc2_models):
    r = GGUFReader(sc2_models["q8_0"])
    m = LoraModel(r, rank=4, alpha=8)
    assert {n.split(".")[2] for n in m.lora_names} == {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_up", "ffn_down"}
    assert len(m.lora_names) == 6 * CONFIG["n_layer"] and "blk.0.ffn_gate.weight" not in m.weights
    t = _tokens()
    with torch.no_grad():
        a, b = m(t), m(t)
        c = LoraModel(GGUFReader(sc2_models["q8_0"]), rank=4, alpha=8)(t)
    assert a.shape == (2, 24, 267) and torch.equal(a, b) and torch.equal(a, c)
    # an explicit target list that names the gate (llama's list) takes what starcoder2 has
    assert LoraModel(r, rank=2, targets=["ffn_gate", "ffn_up"]).lora_names == ["blk.0.ffn_up.weight", "blk.1.ffn_up.weight"]


def test_starcoder2_lora_trains_and_round_trips_through_the_adapter_file(sc2_models, tmp_path):
    path = sc2_models["f32"]
    m = LoraModel(GGUFReader(path), rank=4, alpha=8)
    t = _tokens(16)
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    losses = []
    for _ in range(5):
        opt.zero_grad()
        loss, _ = m.loss(t[:, :-1], t[:, 1:])
        loss.backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for n, p in m.named_parameters() if "lora_b" in n)
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < losses[0]
    adapter = str(tmp_path / "sc2-lora.gguf")
    write_adapter(adapter, m.cfg.arch, m.alpha, m.lora_state())
    arch, alpha, rank, state = read_adapter(adapter)
    assert (arch, alpha, rank) == ("starcoder2", 8.0, 4)
    # tensor names are the base's, so llama.cpp finds every one of them in the model
    base_names = set(GGUFReader(path).tensors)
    assert state and all(n.rsplit(".", 1)[0] in base_names for n in state)
    loaded = load_model(path, adapter)
    with torch.no_grad():
        torch.testing.assert_close(loaded(t), m(t))


def test_starcoder2_missing_bias_or_epsilon_is_bad_model(sc2_models, tmp_path):
    r = GGUFReader(sc2_models["f32"])
    del r.tensors["blk.1.ffn_up.bias"]
    with pytest.raises(TrainerError) as e:
        LoraModel(r)
    assert e.value.code == "bad_model" and "blk.1.ffn_up.bias" in e.value.message
    r = GGUFReader(sc2_models["f32"])
    r.metadata.pop("starcoder2.attention.layer_norm_epsilon")
    with pytest.raises(TrainerError) as e:
        LoraModel(r)
    assert e.value.code == "bad_model" and "layer_norm_epsilon" in e.value.message


def test_missing_tensor_and_unreadable_file_are_bad_model(tmp_path, tiny_models):
    r = GGUFReader(tiny_models[("llama", "f32")])
    del r.tensors["blk.1.ffn_down.weight"]
    with pytest.raises(TrainerError) as e:
        LoraModel(r)
    assert e.value.code == "bad_model" and "blk.1.ffn_down.weight" in e.value.message
    with pytest.raises(TrainerError) as e:
        open_model(str(tmp_path / "nope.gguf"))
    assert e.value.code == "bad_model"
