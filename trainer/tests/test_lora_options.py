"""Issue 3: gradient checkpointing (--grad-checkpoint), LoRA targets (--targets) and LoRA dropout (--lora-dropout)."""
import numpy as np
import pytest
import torch

from conftest import run_cli, saved_bytes, train_args
from repotune_trainer.events import TrainerError
from repotune_trainer.gguf import GGUFReader
from repotune_trainer.model import LORA_TARGETS, LoraModel, parse_targets
from repotune_trainer.probs import load_model
from repotune_trainer.tiny import CONFIG, write_tiny_model


def _tokens(n=48, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).integers(10, 266, size=(2, n)))


def _model(path, **kw):
    m = LoraModel(GGUFReader(path), rank=4, alpha=8, **kw)
    with torch.no_grad():   # B = 0 would leave A without gradient: give every B some value
        g = torch.Generator().manual_seed(1)
        for n, p in m.named_parameters():
            if "lora_b" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return m


def _loss_and_grads(m, t, seed=0):
    torch.manual_seed(seed)
    m.zero_grad(set_to_none=True)
    loss, _ = m.loss(t[:, :-1], t[:, 1:])
    loss.backward()
    return float(loss), {n: p.grad.clone() for n, p in m.named_parameters()}


@pytest.mark.parametrize("key,dropout", [(("llama", "f32"), 0.0), (("qwen2", "q8_0"), 0.0), (("llama", "f32"), 0.2)])
def test_grad_checkpoint_gives_the_same_loss_and_lora_gradients(tiny_models, key, dropout):
    t = _tokens()
    plain = _model(tiny_models[key], lora_dropout=dropout)
    ckpt = _model(tiny_models[key], lora_dropout=dropout, grad_checkpoint=True)
    l0, g0 = _loss_and_grads(plain, t)
    l1, g1 = _loss_and_grads(ckpt, t)   # same seed: the recomputation restores the RNG, so the same dropout masks
    assert l0 == pytest.approx(l1, rel=1e-6)
    assert set(g0) == set(g1) and len(g0) == 2 * 7 * CONFIG["n_layer"]
    for n in g0:
        assert g0[n].abs().max() > 0, n
        torch.testing.assert_close(g1[n], g0[n], rtol=1e-5, atol=1e-7)


def test_grad_checkpoint_keeps_only_block_inputs(tiny_models):
    t = _tokens(96)
    plain = _model(tiny_models[("llama", "f32")])
    ckpt = _model(tiny_models[("llama", "f32")], grad_checkpoint=True)
    # packed weights are held by the model anyway; count what autograd keeps beyond them, for the blocks only
    run = lambda m: m.hidden(t).sum()  # noqa: E731
    kept_plain = saved_bytes(lambda: run(plain))
    hooked = saved_bytes(lambda: run(ckpt))
    # the checkpoint keeps each block's input (batch x seq x n_embd f32) itself, outside the saved-tensor hooks
    block_inputs = CONFIG["n_layer"] * t.numel() * CONFIG["n_embd"] * 4
    kept_ckpt = hooked + block_inputs
    assert kept_ckpt * 5 < kept_plain, (kept_plain, hooked, block_inputs)
    # evaluation (no grad, or eval mode) never checkpoints
    ckpt.eval()
    with torch.no_grad():
        torch.testing.assert_close(ckpt(t), plain(t))


def test_lora_dropout_only_in_training_and_only_on_the_lora_path(tiny_models):
    t = _tokens()
    path = tiny_models[("llama", "f32")]
    ref, drop = _model(path), _model(path, lora_dropout=0.5)
    with torch.no_grad():
        ref.eval(), drop.eval()
        torch.testing.assert_close(drop(t), ref(t))          # eval mode: no dropout
        ref.train(), drop.train()
        torch.testing.assert_close(ref(t), ref(t))           # p = 0 draws nothing
        assert (drop(t) - ref(t)).abs().max() > 1e-4         # training mode: dropout changes the LoRA term
        for n, p in drop.named_parameters():                 # ... and only the LoRA term: B = 0 gives the base
            if "lora_b" in n:
                p.zero_()
        torch.testing.assert_close(drop(t), LoraModel(GGUFReader(path), rank=0)(t))


def test_parse_targets():
    assert parse_targets(None) is None and parse_targets("") is None
    assert parse_targets("v, q") == ["attn_q", "attn_v"]
    assert parse_targets("q,k,v,o,gate,up,down") == list(LORA_TARGETS)
    assert parse_targets("attn_output,down") == ["attn_output", "ffn_down"]
    with pytest.raises(TrainerError) as e:
        parse_targets("q,query,mlp")
    assert e.value.code == "bad_args" and "'query'" in e.value.message and "'mlp'" in e.value.message
    assert "q, k, v, o, gate, up, down" in e.value.message


def test_cli_targets_subset_with_dropout_and_checkpointing(tiny_models, small_dataset, tmp_path):
    adapter = str(tmp_path / "qv.gguf")
    p, events = run_cli(*train_args(tiny_models[("qwen2", "f32")], small_dataset, str(tmp_path / "run"), adapter,
                                    "--steps", "6", "--batch", "4", "--rank", "4", "--lr", "1e-2", "--targets", "q,v",
                                    "--lora-dropout", "0.1", "--grad-checkpoint"))
    assert p.returncode == 0, p.stderr
    start, done = events[0], events[-1]
    assert start["event"] == "start" and done["event"] == "done" and done["val_loss"] < done["val_loss_base"]
    d, kv = CONFIG["n_embd"], CONFIG["n_embd"] // CONFIG["n_head"] * CONFIG["n_head_kv"]
    assert start["trainable_params"] == CONFIG["n_layer"] * 4 * ((d + d) + (d + kv))
    names = set(GGUFReader(adapter).tensors)
    assert names == {f"blk.{i}.{n}.weight.lora_{w}" for i in range(CONFIG["n_layer"]) for n in ("attn_q", "attn_v")
                     for w in "ab"}
    m = load_model(tiny_models[("qwen2", "f32")], adapter)
    assert sorted(m.lora_names) == sorted(n[:-len(".lora_a")] for n in names if n.endswith("lora_a"))


def test_cli_bad_targets_and_dropout_are_bad_args(tiny_models, small_dataset, tmp_path):
    def run(*extra, model=tiny_models[("llama", "f32")]):
        p, events = run_cli(*train_args(model, small_dataset, str(tmp_path / "run"), str(tmp_path / "a.gguf"),
                                        "--steps", "2", *extra))
        assert p.returncode == 1 and events[-1]["event"] == "error" and events[-1]["code"] == "bad_args", p.stdout
        return events[-1]["message"]
    assert "'qq'" in run("--targets", "q,qq")
    assert "--lora-dropout" in run("--lora-dropout", "1")
    sc2 = write_tiny_model(str(tmp_path / "sc2.gguf"), "starcoder2", 0, "f32")
    assert "ffn_gate" in run("--targets", "gate", model=sc2)


@pytest.mark.parametrize("key", [("llama", "f32"), ("qwen2", "q8_0")])
def test_the_head_loss_in_chunks_gives_the_same_loss_and_gradients(tiny_models, key):
    """The output head runs over chunks of target positions (recomputed in backward) so its logits never hold a whole
    batch: the loss and every LoRA gradient are those of the loss in one piece."""
    t = _tokens(n=64)
    whole, chunked = _model(tiny_models[key]), _model(tiny_models[key])
    chunked.loss_chunk = 7   # 126 targets: 18 chunks, the last one short
    loss_w, grads_w = _loss_and_grads(whole, t)
    loss_c, grads_c = _loss_and_grads(chunked, t)
    assert abs(loss_w - loss_c) < 1e-5
    for name, g in grads_w.items():
        assert torch.allclose(g, grads_c[name], atol=1e-6, rtol=1e-4), name
    with torch.no_grad():
        assert abs(float(chunked.loss(t[:, :-1], t[:, 1:])[0]) - loss_w) < 1e-5
