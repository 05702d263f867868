import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from conftest import (TOKENS, TRAINER_ROOT, parse_events, repetitive_examples, run_cli, schema_failures,
                      train_args, write_dataset)
from repotune_trainer.gguf import FLOAT32, GGUFReader, GGUFWriter, u32
from repotune_trainer.model import LORA_TARGETS
from repotune_trainer.tiny import CONFIG

STEP_ARGS = ["--batch", "4", "--lr", "1e-2", "--rank", "4", "--alpha", "8", "--eval-every", "10"]


def _by_event(events, name):
    return [e for e in events if e["event"] == name]


@pytest.fixture(scope="module")
def trained(tiny_models, small_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    adapter = str(out / "adapter.gguf")
    p, events = run_cli(*train_args(tiny_models[("qwen2", "q8_0")], small_dataset, str(out), adapter, "--steps", "30",
                                    "--checkpoint-every", "20", *STEP_ARGS))
    return p, events, adapter, out


def test_training_reduces_validation_loss(trained):
    p, events, adapter, _ = trained
    assert p.returncode == 0, p.stderr
    start, done = _by_event(events, "start")[0], _by_event(events, "done")[0]
    assert start["arch"] == "qwen2" and start["weight_types"] == ["Q8_0"] and start["steps"] == 30
    assert start["trainable_params"] == 2 * 4 * sum(n_in + n_out for n_in, n_out in _shapes().values())
    steps = _by_event(events, "step")
    assert [s["step"] for s in steps] == list(range(1, 31))
    assert all(s["tokens_per_s"] > 0 and s["lr"] > 0 for s in steps)
    evals = _by_event(events, "eval")
    assert [e["step"] for e in evals] == [0, 10, 20, 30]
    # the adapter written is the evaluated state with the lowest validation loss
    assert done["val_loss_base"] == evals[0]["val_loss"]
    assert done["val_loss"] == min(e["val_loss"] for e in evals[1:])
    assert done["val_loss"] < 0.5 * done["val_loss_base"]
    assert np.mean([s["loss"] for s in steps[-5:]]) < np.mean([s["loss"] for s in steps[:5]])
    assert done["adapter"] == adapter and os.path.exists(adapter)
    assert [c["step"] for c in _by_event(events, "checkpoint")] == [20]
    assert events[-1]["event"] == "done"


def _shapes():
    d, kv, ff = CONFIG["n_embd"], CONFIG["n_embd"] // CONFIG["n_head"] * CONFIG["n_head_kv"], CONFIG["n_ff"]
    return {"attn_q": (d, d), "attn_k": (d, kv), "attn_v": (d, kv), "attn_output": (d, d), "ffn_gate": (d, ff),
            "ffn_up": (d, ff), "ffn_down": (ff, d)}  # (n_in, n_out)


def test_adapter_gguf_is_what_llama_cpp_loads(trained):
    _, _, adapter, _ = trained
    r = GGUFReader(adapter)
    assert r.get("general.type") == "adapter" and r.get("adapter.type") == "lora"
    assert r.get("general.architecture") == "qwen2"
    assert r.get("adapter.lora.alpha") == 8.0 and r.metadata_types["adapter.lora.alpha"] == FLOAT32
    expected = set()
    for i in range(CONFIG["n_layer"]):
        for name, (n_in, n_out) in _shapes().items():
            base = f"blk.{i}.{name}.weight"
            expected |= {base + ".lora_a", base + ".lora_b"}
            a, b = r.tensors[base + ".lora_a"], r.tensors[base + ".lora_b"]
            assert a.ne == [n_in, 4] and b.ne == [4, n_out]
            assert a.type_name == b.type_name == "F32"
    assert set(r.tensors) == expected and len(LORA_TARGETS) == 7
    assert any(np.abs(t.data).max() > 0 for n, t in r.tensors.items() if n.endswith("lora_b"))


def test_every_event_carries_the_protocol_version_and_run_id(trained, tiny_models, small_dataset, tmp_path):
    _, events, _, out = trained
    assert events and all(e["v"] == 1 and e["run_id"] == os.path.basename(str(out)) for e in events)
    p, events = run_cli(*train_args(tiny_models[("qwen2", "q8_0")], small_dataset, str(tmp_path), str(tmp_path / "a.gguf"),
                                    "--steps", "1", "--run-id", "run-42", *STEP_ARGS))
    assert p.returncode == 0, p.stderr
    assert events and all(e["run_id"] == "run-42" for e in events)


def test_events_match_the_typescript_schema(trained):
    """Parse every line with the real zod schema of src/protocol/trainer.ts (bundled on the fly with esbuild)."""
    p, _, _, _ = trained
    bad = schema_failures(p.stdout)
    if bad is None:
        pytest.skip("node or esbuild not available")
    assert bad == [] and all(line for line in p.stdout.splitlines()), "every stdout line is one event"


def test_sigint_checkpoints_and_stops_then_resume_finishes(tiny_models, small_dataset, tmp_path):
    out, adapter = tmp_path / "run", str(tmp_path / "a.gguf")
    args = train_args(tiny_models[("llama", "f32")], small_dataset, str(out), adapter, "--steps", "100000",
                      "--checkpoint-every", "100000", *STEP_ARGS)
    proc = subprocess.Popen([sys.executable, "-m", "repotune_trainer", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": TRAINER_ROOT})
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if '"event": "step"' in line and '"step": 3,' in line:
            proc.send_signal(signal.SIGINT)
            break
    rest, err = proc.communicate(timeout=60)
    events = parse_events("".join(lines) + rest)
    assert proc.returncode == 0, err
    stopped = events[-1]
    assert stopped["event"] == "stopped" and stopped["step"] >= 3
    ck = _by_event(events, "checkpoint")[-1]
    assert stopped["checkpoint"] == ck["path"] and ck["step"] == stopped["step"] and os.path.exists(ck["path"])
    assert not os.path.exists(adapter) and not _by_event(events, "done")

    p, resumed = run_cli(*train_args(tiny_models[("llama", "f32")], small_dataset, str(out), adapter,
                                     "--steps", str(stopped["step"] + 4), "--checkpoint-every", "100000",
                                     "--resume", *STEP_ARGS))
    assert p.returncode == 0, p.stderr
    assert _by_event(resumed, "start")[0]["resumed_from_step"] == stopped["step"]
    assert [s["step"] for s in _by_event(resumed, "step")] == list(range(stopped["step"] + 1, stopped["step"] + 5))
    done = _by_event(resumed, "done")[0]
    assert done["val_loss_base"] is not None and os.path.exists(adapter)


def test_resumed_run_matches_an_uninterrupted_one(tiny_models, small_dataset, tmp_path):
    model = tiny_models[("llama", "f32")]
    _, full = run_cli(*train_args(model, small_dataset, str(tmp_path / "a"), str(tmp_path / "a.gguf"), "--steps", "8",
                                  "--checkpoint-every", "4", *STEP_ARGS))
    os.makedirs(tmp_path / "b" / "checkpoints")
    ck = _by_event(full, "checkpoint")[0]["path"]
    os.link(ck, tmp_path / "b" / "checkpoints" / os.path.basename(ck))
    _, resumed = run_cli(*train_args(model, small_dataset, str(tmp_path / "b"), str(tmp_path / "b.gguf"), "--steps",
                                     "8", "--checkpoint-every", "100", "--resume", *STEP_ARGS))
    a = [s["loss"] for s in _by_event(full, "step")][4:]
    b = [s["loss"] for s in _by_event(resumed, "step")]
    np.testing.assert_allclose(a, b, rtol=1e-5)


def test_bad_model_file_gives_bad_model(small_dataset, tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"this is not a model")
    p, events = run_cli(*train_args(str(bad), small_dataset, str(tmp_path / "r"), str(tmp_path / "a.gguf")))
    assert p.returncode != 0
    assert events[-1]["event"] == "error" and events[-1]["code"] == "bad_model"
    assert "not a GGUF" in events[-1]["message"]


def test_unsupported_architecture_gives_unsupported_arch(small_dataset, tmp_path):
    w = GGUFWriter()
    w.add("general.architecture", "gpt2")
    w.add("gpt2.block_count", u32(1))
    w.add_tensor("token_embd.weight", np.zeros((len(TOKENS), 8), np.float32))
    w.write(str(tmp_path / "gpt2.gguf"))
    p, events = run_cli(*train_args(str(tmp_path / "gpt2.gguf"), small_dataset, str(tmp_path / "r"),
                                    str(tmp_path / "a.gguf")))
    assert p.returncode != 0
    assert events[-1]["event"] == "error" and events[-1]["code"] == "unsupported_arch"
    assert "gpt2" in events[-1]["message"]


def test_data_for_another_vocabulary_gives_bad_data(tiny_models, tmp_path):
    data = write_dataset(tmp_path / "d", repetitive_examples(4), [], 64, vocab_size=32000)
    p, events = run_cli(*train_args(tiny_models[("llama", "f32")], data, str(tmp_path / "r"), str(tmp_path / "a.gguf")))
    assert p.returncode != 0 and events[-1]["code"] == "bad_data" and "32000" in events[-1]["message"]


def test_invalid_arguments_give_bad_args(tiny_models, small_dataset, tmp_path):
    p, events = run_cli(*train_args(tiny_models[("llama", "f32")], small_dataset, str(tmp_path / "r"),
                                    str(tmp_path / "a.gguf"), "--steps", "0"))
    assert p.returncode != 0 and events[-1]["code"] == "bad_args" and "--steps" in events[-1]["message"]


def test_selftest_reports_torch():
    p, events = run_cli("selftest")
    assert p.returncode == 0
    assert events[0]["ok"] is True and events[0]["torch"] and events[0]["device"] in ("cpu", "cuda", "mps")
    # The plan's first time estimate: a measured matmul rate, between a slow laptop core and a data-centre GPU.
    assert 1e8 < events[0]["matmul_flops"] < 1e16


def test_probs_reports_greedy_tokens_and_distributions(trained, tiny_models):
    _, _, adapter, _ = trained
    model = tiny_models[("qwen2", "q8_0")]
    prompt = "1,3,20,30,40,4,5"
    base, _ = run_cli("probs", "--model", model, "--tokens", prompt, "--n-predict", "5")
    tuned, _ = run_cli("probs", "--model", model, "--adapter", adapter, "--tokens", prompt, "--n-predict", "5")
    import json
    for p in (base, tuned):
        assert p.returncode == 0, p.stderr
        out = json.loads(p.stdout)
        assert len(out["tokens"]) == 5 and len(out["probs"]) == 5
        for tok, dist in zip(out["tokens"], out["probs"]):
            assert len(dist) == len(TOKENS) and abs(sum(dist) - 1) < 1e-4 and int(np.argmax(dist)) == tok
    assert json.loads(base.stdout)["probs"] != json.loads(tuned.stdout)["probs"]
