"""Trainer throughput, side by side in one run: the same model, data and steps on each available device.

Usage: PYTHONPATH=trainer python3 bench/trainer_throughput.py [--steps 40] [--dtype f32|f16|q8_0]
Prints tokens/s per device (median of the step events after warm-up) and each device's ratio to the CPU.
Runs the real trainer CLI, so what is measured is what users get.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

import numpy as np
import torch

TRAINER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "trainer")


def write_data(folder: str, vocab: int, seq_len: int, n_train: int, n_val: int) -> None:
    rng = np.random.default_rng(0)
    os.makedirs(folder, exist_ok=True)
    for name, n in (("train", n_train), ("val", n_val)):
        rng.integers(10, vocab, size=(n, seq_len), dtype=np.int32).astype("<i4").tofile(os.path.join(folder, f"{name}.bin"))
    meta = {"format": "repotune-tokens", "version": 1, "seq_len": seq_len, "dtype": "int32", "pad": -1,
            "train_sequences": n_train, "val_sequences": n_val, "vocab_size": vocab, "prompt_format": "qwen2.5-coder",
            "model_path": "", "summary": {}}
    with open(os.path.join(folder, "meta.json"), "w") as f:
        json.dump(meta, f)


def run(device: str, model: str, data: str, out: str, steps: int) -> float:
    env = {**os.environ, "PYTHONPATH": TRAINER, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "repotune_trainer", "train", "--model", model, "--data", data, "--out", out,
           "--adapter-out", os.path.join(out, "adapter.gguf"), "--steps", str(steps), "--device", device,
           "--eval-every", str(steps), "--checkpoint-every", str(steps * 10)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    rates = [e["tokens_per_s"] for e in map(json.loads, proc.stdout.splitlines()) if e.get("event") == "step"]
    if proc.returncode != 0 or not rates:
        raise SystemExit(f"{device}: trainer failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return statistics.median(rates[len(rates) // 4:])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--dtype", default="f32", choices=["f32", "f16", "q8_0"])
    a = ap.parse_args()
    sys.path.insert(0, TRAINER)
    from repotune_trainer.tiny import write_tiny_model, vocab

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else []) + \
        (["mps"] if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available() else [])
    with tempfile.TemporaryDirectory() as tmp:
        model = write_tiny_model(os.path.join(tmp, "tiny.gguf"), "qwen2", 0, a.dtype)
        data = os.path.join(tmp, "data")
        write_data(data, len(vocab()["tokens"]), 256, 64, 8)
        results = {d: run(d, model, data, os.path.join(tmp, d), a.steps) for d in devices}
    print(f"torch {torch.__version__}; tiny qwen2 {a.dtype}, batch 8 x 256 tokens, {a.steps} steps")
    for d, r in results.items():
        print(f"{d:5s} {r:12,.0f} tokens/s   ratio to cpu {r / results['cpu']:.2f}")


if __name__ == "__main__":
    main()
