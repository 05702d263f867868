"""RepoTune against transformers + peft LoRA on Qwen2.5-Coder-1.5B's shapes, side by side in one run on one GPU.

Usage: python3 bench/gpu_compare.py [--small] [--steps 30] [--batch 4] [--seq 2048] [--grad-checkpoint off,on]
                                    [--dtypes q8_0,q4_k_m] [--results OUT.jsonl] [--work DIR]

- RepoTune: random GGUF models with the 1.5B model's shapes (Q8_0 and Q4_K_M, written by tiny.py's fast path), a
  dataset folder of random tokens, and the real trainer CLI as a subprocess (bf16 autocast on CUDA, as users get it).
  Its peak memory is the `done` event's `peak_memory_bytes` (torch.cuda.max_memory_allocated over the whole run).
- transformers + peft: the same shapes from a Qwen2Config with random weights, bf16 on the GPU, sdpa attention, LoRA
  r=16 / alpha 32 on the same seven matrices, AdamW on the LoRA parameters, bf16 autocast, gradient clipping at 1,
  the same batches; in its own subprocess, peak memory counted from after the model is built (reset there).
- Both: the same batch, sequence, steps, rank, learning rate and gradient checkpointing; tokens/s over steps 2..N
  (step 1 is warm-up on both sides); one JSON line per side and a table with the ratios RepoTune / peft and PASS/FAIL
  against the targets (at least peft's speed with at most half its peak memory). Nothing is asserted on time: exit
  code 0 whenever every side measured, whatever the figures.
- `--small`: 2 layers of width 256 on the CPU (peak memory is then each process's peak RSS); the peft side runs
  where transformers and peft import and is skipped with a message otherwise.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TRAINER = os.path.join(HERE, "..", "trainer")
sys.path.insert(0, TRAINER)

from repotune_trainer.tiny import SHAPES  # noqa: E402  (the trainer is imported from its folder)

# Qwen2.5-Coder-1.5B (config.json of Qwen/Qwen2.5-Coder-1.5B): tied embeddings, Q/K/V biases.
FULL = SHAPES["qwen2.5-coder-1.5b"]
SMALL = dict(width=256, n_layer=2, n_head=4, n_head_kv=2, n_ff=768, n_vocab=4096, rope_base=1e6, rms_eps=1e-6,
             context_length=4096)
# RepoTune --targets names and the Hugging Face module names of the same matrices.
TARGETS = {"q": "q_proj", "k": "k_proj", "v": "v_proj", "o": "o_proj", "gate": "gate_proj", "up": "up_proj",
           "down": "down_proj"}
SPEED_TARGET, MEMORY_TARGET = 1.0, 0.5


def versions() -> dict:
    import numpy
    import torch
    v = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
         "numpy": numpy.__version__}
    for name in ("transformers", "peft"):
        try:
            v[name] = __import__(name).__version__
        except Exception as e:  # noqa: BLE001 - any import failure means that side cannot run
            v[name] = None
            v[name + "_error"] = f"{type(e).__name__}: {e}"
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        v["gpu"] = p.name
        v["gpu_memory_bytes"] = int(p.total_memory)
    else:
        v["gpu"] = None
    return v


def run_measured(cmd, env, log_dir: str, name: str, timeout: float):
    """Run cmd with stdout/stderr in files; returns (exit code or None on timeout, stdout, stderr, peak RSS bytes).

    os.wait4 gives this child's own resource usage (its peak RSS), which Popen.wait does not."""
    out_path, err_path = os.path.join(log_dir, name + ".out"), os.path.join(log_dir, name + ".err")
    with open(out_path, "w") as out, open(err_path, "w") as err:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err)
        deadline = time.monotonic() + timeout
        code = None
        try:
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    code = os.waitstatus_to_exitcode(status)
                    break
                if time.monotonic() > deadline:
                    proc.kill()
                    _, status, usage = os.wait4(proc.pid, 0)
                    break
                time.sleep(0.2)
        except BaseException:
            proc.kill()
            raise
        finally:
            proc.returncode = code if code is not None else -9   # reaped here, so Popen must not wait again
    with open(out_path) as f:
        stdout = f.read()
    with open(err_path) as f:
        stderr = f.read()
    return code, stdout, stderr, usage.ru_maxrss * 1024   # Linux reports KiB


class RunFailed(Exception):
    """One side's training process failed; the others still run (an out-of-memory on one side is a finding)."""


def _failure(side: str, code, stdout: str, stderr: str, timeout: float) -> RunFailed:
    what = f"ran past {timeout:.0f} s and was stopped" if code is None else f"exited with code {code}"
    return RunFailed(f"{side} {what}.\n--- stdout (tail) ---\n{stdout[-3000:]}\n--- stderr (tail) ---\n"
                     f"{stderr[-3000:]}")


def rate_after_first(rates, n_steps: int) -> tuple:
    """The trainer's step events carry cumulative tokens/s (tokens so far / training time so far). With the same
    tokens in every step (no padding here), time after step n is n * tok / rate_n, so steps 2..N run at
    (N - 1) / (N / rate_N - 1 / rate_1) tokens/s. Returns (that rate, step 1's share of the time)."""
    r1, rn = rates[0], rates[-1]
    t_per_tok_1, t_per_tok_n = 1.0 / r1, n_steps / rn
    return (n_steps - 1) / (t_per_tok_n - t_per_tok_1), t_per_tok_1


def run_repotune(a, model: str, dtype: str, data: str, gc: bool, device: str, log_dir: str) -> dict:
    name = f"repotune-{dtype}-gc{int(gc)}"
    out = os.path.join(log_dir, name)
    cmd = [sys.executable, "-m", "repotune_trainer", "train", "--model", model, "--data", data, "--out", out,
           "--adapter-out", os.path.join(out, "adapter.gguf"), "--steps", str(a.steps), "--batch", str(a.batch),
           "--rank", str(a.rank), "--alpha", str(a.alpha), "--lr", str(a.lr), "--device", device,
           "--targets", ",".join(TARGETS), "--eval-every", str(a.steps), "--checkpoint-every", str(a.steps),
           "--patience", "0", "--seed", "0"] + (["--grad-checkpoint"] if gc else [])
    env = {**os.environ, "PYTHONPATH": TRAINER, "PYTHONUNBUFFERED": "1"}
    t0 = time.time()
    code, stdout, stderr, rss = run_measured(cmd, env, log_dir, name, a.timeout)
    wall = time.time() - t0
    events = []
    for line in stdout.splitlines():
        with contextlib.suppress(ValueError):
            events.append(json.loads(line))
    steps = [e for e in events if e.get("event") == "step"]
    done = next((e for e in events if e.get("event") == "done"), None)
    start = next((e for e in events if e.get("event") == "start"), None)
    if code != 0 or done is None or len(steps) != a.steps:
        raise _failure(f"RepoTune ({dtype})", code, stdout, stderr, a.timeout)
    rate, step1_s_per_tok = rate_after_first([e["tokens_per_s"] for e in steps], a.steps)
    if device == "cuda":
        peak, kind = done.get("peak_memory_bytes"), "cuda_max_allocated"
        if peak is None:
            print("RepoTune's done event has no peak_memory_bytes: this trainer predates it (train.py); the memory "
                  "ratio is left out.", file=sys.stderr)
    else:
        peak, kind = rss, "max_rss"
    return {"side": "repotune", "weights": dtype, "grad_checkpoint": gc, "device": start["device"],
            "batch": a.batch, "seq": a.seq, "steps": a.steps, "tokens_per_s": rate,
            "step1_s": step1_s_per_tok * a.batch * a.seq, "peak_memory_bytes": peak, "memory": kind,
            "trainable_params": start["trainable_params"], "weight_types": start["weight_types"],
            # the trainer's own preflight estimate, where it has one, to set against the measured peak
            "memory_estimate_bytes": start.get("memory_estimate"), "final_loss": steps[-1]["loss"],
            "peak_rss_bytes": rss, "wall_s": wall}


def run_peft(a, shape: dict, data: str, gc: bool, device: str, log_dir: str) -> dict:
    name = f"peft-gc{int(gc)}"
    spec = {"shape": shape, "data": data, "seq": a.seq, "batch": a.batch, "steps": a.steps, "rank": a.rank,
            "alpha": a.alpha, "lr": a.lr, "grad_checkpoint": gc, "device": device}
    env = {**os.environ, "PYTHONPATH": TRAINER, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    t0 = time.time()
    code, stdout, stderr, rss = run_measured([sys.executable, os.path.abspath(__file__), "--peft-worker",
                                              json.dumps(spec)], env, log_dir, name, a.timeout)
    lines = [l for l in stdout.splitlines() if l.startswith("{")]
    if code != 0 or not lines:
        raise _failure("transformers + peft", code, stdout, stderr, a.timeout)
    r = json.loads(lines[-1])
    if device != "cuda":
        r["peak_memory_bytes"], r["memory"] = rss, "max_rss"
    r["peak_rss_bytes"] = rss
    r["wall_s"] = time.time() - t0
    return r


def peft_worker(spec: dict) -> None:
    """The transformers + peft side, in its own process: one JSON line on stdout."""
    import numpy as np
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, Qwen2Config
    from repotune_trainer.data import batch_indices

    s, device = spec["shape"], spec["device"]
    cuda = device == "cuda"
    dtype = torch.bfloat16 if cuda else torch.float32     # the trainer also runs in full precision off CUDA
    cfg = Qwen2Config(vocab_size=s["n_vocab"], hidden_size=s["width"], intermediate_size=s["n_ff"],
                      num_hidden_layers=s["n_layer"], num_attention_heads=s["n_head"],
                      num_key_value_heads=s["n_head_kv"], max_position_embeddings=s["context_length"],
                      rope_theta=s["rope_base"], rms_norm_eps=s["rms_eps"], tie_word_embeddings=True,
                      use_cache=False, use_sliding_window=False, attention_dropout=0.0)
    # Built directly on the device (torch >= 2.0 device context) so a 1.5B model is initialized there in seconds.
    where = torch.device(device)
    place = where if hasattr(where, "__enter__") else contextlib.nullcontext()
    model = None
    for dtype_kw in ("dtype", "torch_dtype"):    # transformers renamed torch_dtype to dtype (4.56)
        try:
            with place:
                model = AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa", **{dtype_kw: dtype})
            break
        except TypeError:
            continue
    if model is None:
        with place:
            model = AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa")
    model = model.to(device=device, dtype=dtype)
    if spec["grad_checkpoint"]:
        try:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        except TypeError:   # transformers < 4.35: reentrant only, which needs an input that requires grad
            model.gradient_checkpointing_enable()
            model.enable_input_require_grads()
    lora = LoraConfig(r=spec["rank"], lora_alpha=spec["alpha"], lora_dropout=0.0, bias="none",
                      target_modules=list(TARGETS.values()), task_type="CAUSAL_LM")
    model = get_peft_model(model, lora)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=spec["lr"], betas=(0.9, 0.999), weight_decay=0.0)
    seq = spec["seq"]
    rows_all = np.fromfile(os.path.join(spec["data"], "train.bin"), dtype="<i4").reshape(-1, seq + 1)
    autocast = (lambda: torch.autocast(device_type="cuda", dtype=torch.bfloat16)) if cuda else contextlib.nullcontext
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times, loss = [], None
    for step in range(1, spec["steps"] + 1):
        # the trainer's batches; its inputs are a row's first seq tokens, as here
        rows = rows_all[batch_indices(rows_all.shape[0], spec["batch"], step, 0)]
        t0 = time.perf_counter()
        ids = torch.from_numpy(rows[:, :-1].astype(np.int64)).to(device)
        opt.zero_grad(set_to_none=True)
        with autocast():
            out = model(input_ids=ids, labels=ids, use_cache=False)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        loss = float(out.loss)       # waits for the GPU
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    tokens = spec["batch"] * seq
    lora_dtypes = sorted({str(p.dtype).replace("torch.", "") for p in params})
    print(json.dumps({
        "side": "peft", "weights": str(dtype).replace("torch.", ""), "grad_checkpoint": spec["grad_checkpoint"],
        "device": device, "batch": spec["batch"], "seq": seq, "steps": spec["steps"],
        "tokens_per_s": tokens * (len(times) - 1) / sum(times[1:]), "step1_s": times[0],
        "peak_memory_bytes": int(torch.cuda.max_memory_allocated()) if cuda else None,
        "peak_reserved_bytes": int(torch.cuda.max_memory_reserved()) if cuda else None,
        "memory": "cuda_max_allocated" if cuda else "max_rss",
        "trainable_params": sum(p.numel() for p in params), "lora_dtypes": lora_dtypes,
        "attn_implementation": getattr(model.get_base_model().config, "_attn_implementation", None),
        "gradient_checkpointing": bool(getattr(model.get_base_model(), "is_gradient_checkpointing", False)),
        "final_loss": loss}))


def gib(n) -> str:
    return "n/a" if n is None else f"{n / 2**30:.2f} GiB"


def table(results: list, peft: dict, skipped: str, gc: bool, a, device: str) -> list:
    lines = [f"gradient checkpointing {'on' if gc else 'off'}: batch {a.batch} x {a.seq} tokens, {a.steps} steps "
             f"(tokens/s over steps 2..{a.steps}), rank {a.rank}, {device}"]
    lines.append(f"  {'side':28s} {'tokens/s':>10s} {'peak memory':>12s} {'speed ratio':>12s} {'memory ratio':>13s}  "
                 "targets (speed >= 1, memory <= 0.5)")
    if peft is not None:
        lines.append(f"  {'transformers + peft ' + peft['weights']:28s} {peft['tokens_per_s']:10,.0f} "
                     f"{gib(peft['peak_memory_bytes']):>12s} {1.0:12.2f} {1.0:13.2f}")
    else:
        lines.append(f"  {'transformers + peft':28s} skipped: {skipped}")
    for r in results:
        speed = r["tokens_per_s"] / peft["tokens_per_s"] if peft else None
        mem = (r["peak_memory_bytes"] / peft["peak_memory_bytes"]
               if peft and r["peak_memory_bytes"] and peft["peak_memory_bytes"] else None)
        r["speed_ratio"], r["memory_ratio"] = speed, mem
        if speed is None or mem is None:
            verdict = "n/a (no peft figures)"
        else:
            misses = ([f"speed {speed:.2f} < {SPEED_TARGET:g}"] if speed < SPEED_TARGET else []) + \
                     ([f"memory {mem:.2f} > {MEMORY_TARGET:g}"] if mem > MEMORY_TARGET else [])
            verdict = "PASS" if not misses else "FAIL (" + "; ".join(misses) + ")"
        r["verdict"] = verdict
        fmt = lambda x: f"{x:.2f}" if x is not None else "n/a"  # noqa: E731
        lines.append(f"  {'repotune ' + r['weights'].upper():28s} {r['tokens_per_s']:10,.0f} "
                     f"{gib(r['peak_memory_bytes']):>12s} {fmt(speed):>12s} {fmt(mem):>13s}  {verdict}")
    if peft is not None and results and results[0]["trainable_params"] != peft["trainable_params"]:
        lines.append(f"  NOTE: trainable parameters differ: RepoTune {results[0]['trainable_params']:,}, peft "
                     f"{peft['trainable_params']:,}; the two sides do not train the same LoRA.")
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", action="store_true", help="2 layers of width 256 on the CPU (no GPU needed)")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch", type=int, default=None, help="sequences per step (default 4; --small 2)")
    ap.add_argument("--seq", type=int, default=None, help="tokens per sequence (default 2048; --small 256)")
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--alpha", type=float, default=32.0)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--dtypes", default="q8_0,q4_k_m", help="RepoTune GGUF weight types (q8_0, q4_k_m)")
    ap.add_argument("--grad-checkpoint", default="off,on", help="off, on, or off,on (both, each on both sides)")
    ap.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    ap.add_argument("--timeout", type=float, default=240.0, help="seconds allowed for each training process")
    ap.add_argument("--work", default=None, help="folder for models, data and logs (default: a temporary one)")
    ap.add_argument("--results", default=None, help="also append every JSON line to this file")
    ap.add_argument("--peft-worker", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.peft_worker is not None:
        peft_worker(json.loads(a.peft_worker))
        return 0

    import torch
    from trainer_throughput import write_data
    from repotune_trainer.tiny import write_tiny_model

    shape = SMALL if a.small else FULL
    a.batch = a.batch or (2 if a.small else 4)
    a.seq = a.seq or (256 if a.small else 2048)
    device = a.device if a.device != "auto" else ("cuda" if torch.cuda.is_available() and not a.small else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: PyTorch sees no CUDA GPU here. Run with --small for the reduced CPU check.",
              file=sys.stderr)
        return 2
    if device == "cpu" and not a.small and a.device != "cpu":
        print("No CUDA GPU: the full-size comparison needs one (a 1.5B model on the CPU takes hours). Run with "
              "--small for the reduced CPU check, or --device cpu to insist.", file=sys.stderr)
        return 2
    modes = [{"off": False, "on": True}[m.strip()] for m in a.grad_checkpoint.split(",") if m.strip()]
    dtypes = [d.strip() for d in a.dtypes.split(",") if d.strip()]
    results_file = open(a.results, "a") if a.results else None

    def report(obj: dict) -> None:
        line = json.dumps(obj)
        print(line, flush=True)
        if results_file:
            results_file.write(line + "\n")
            results_file.flush()

    env = versions()
    report({"phase": "versions", **env})
    peft_skip = None
    if env["transformers"] is None or env["peft"] is None:
        missing = [n for n in ("transformers", "peft") if env[n] is None]
        peft_skip = (f"{' and '.join(missing)} not importable ({'; '.join(env[n + '_error'] for n in missing)}); "
                     "install them to compare")
        print(f"transformers + peft side skipped: {peft_skip}", flush=True)

    with (contextlib.nullcontext(a.work) if a.work else tempfile.TemporaryDirectory(prefix="gpu-compare-")) as work:
        os.makedirs(work, exist_ok=True)
        models = {}
        gen_shape = {k: v for k, v in shape.items() if k != "width"}
        for dtype in dtypes:
            path = os.path.join(work, f"qwen2-{'small' if a.small else '1.5b'}-{dtype}.gguf")
            t0 = time.time()
            write_tiny_model(path, "qwen2", 0, dtype, True, shape["width"], fast=True, **gen_shape)
            models[dtype] = path
            report({"phase": "generate", "weights": dtype, "seconds": round(time.time() - t0, 2),
                    "bytes": os.path.getsize(path), "cpus": os.cpu_count(), **shape})
        data = os.path.join(work, "data")
        # seq + 1 tokens per row: the trainer trains on positions 0..seq-1 against 1..seq, seq tokens per row
        write_data(data, shape["n_vocab"], a.seq + 1, max(8, 2 * a.batch), 0)
        summary, failures = [], 0

        def attempt(side: str, fn):
            nonlocal failures
            try:
                r = fn()
            except RunFailed as e:
                failures += 1
                print(str(e), file=sys.stderr, flush=True)
                report({"side": side, "grad_checkpoint": gc, "error": str(e).split("\n")[0]})
                return None
            report(r)
            return r

        for gc in modes:
            results = [r for r in (attempt("repotune " + d, lambda d=d: run_repotune(a, models[d], d, data, gc, device,
                                                                                    work)) for d in dtypes) if r]
            peft, skipped = None, peft_skip
            if peft_skip is None:
                peft = attempt("peft", lambda: run_peft(a, shape, data, gc, device, work))
                skipped = None if peft else "failed (see the message above)"
            summary += table(results, peft, skipped, gc, a, device)
            for r in results:
                report({"phase": "ratio", "weights": r["weights"], "grad_checkpoint": gc,
                        "speed_ratio": r["speed_ratio"], "memory_ratio": r["memory_ratio"], "verdict": r["verdict"]})
    print(f"\nRepoTune vs transformers + peft; torch {env['torch']} (CUDA {env['cuda']}), transformers "
          f"{env['transformers']}, peft {env['peft']}, GPU {env['gpu']}; model "
          f"{'small ' if a.small else 'Qwen2.5-Coder-1.5B shapes '}({shape['n_layer']} layers x {shape['width']}, "
          f"vocab {shape['n_vocab']}); memory = "
          f"{'torch.cuda.max_memory_allocated' if device == 'cuda' else 'peak RSS of each process'}")
    print("\n".join(summary))
    if failures:
        print(f"{failures} training run(s) failed; their messages are above.", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
