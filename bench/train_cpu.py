"""Training speed on the CPU, side by side in one run: tokens/s of a full training step (forward, backward, AdamW on
the LoRA parameters) and the ratio of that step to a forward pass with the loss on the same batch. In full training
backward costs about twice the forward pass (gradients for inputs and for weights), so a step is about 3 forwards;
with LoRA the frozen weights need no gradient, only the inputs do, so about 2 is the floor here. Much more means
the backward path does extra work (such as dequantizing twice, or saving what it should recompute).

Usage: PYTHONPATH=trainer python3 bench/train_cpu.py [--batch 8] [--seq 256] [--iters 10]
Runs on generated tiny models (F32 and Q8_0 bases, llama and qwen2); medians of --iters iterations after warm-up.
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "trainer"))
from repotune_trainer.data import to_inputs_targets  # noqa: E402
from repotune_trainer.device import set_cpu_threads  # noqa: E402
from repotune_trainer.model import LoraModel, open_model  # noqa: E402
from repotune_trainer.tiny import write_tiny_model  # noqa: E402


def median_time(fn, iters: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(path: str, batch: int, seq: int, iters: int):
    model = LoraModel(open_model(path), rank=16, alpha=32, device="cpu", seed=0)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-3)
    rng = np.random.default_rng(0)
    inputs, targets, _ = to_inputs_targets(rng.integers(10, model.cfg.n_vocab, size=(batch, seq + 1)), "cpu")

    def forward():
        with torch.no_grad():
            model.loss(inputs, targets)

    def step():
        opt.zero_grad(set_to_none=True)
        loss, _ = model.loss(inputs, targets)
        loss.backward()
        opt.step()

    model.train()
    t_fwd = median_time(forward, iters)
    t_step = median_time(step, iters)
    return batch * seq / t_step, t_step / t_fwd


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--iters", type=int, default=10)
    a = ap.parse_args()
    threads = set_cpu_threads(None)
    print(f"torch {torch.__version__}, {threads} thread(s); batch {a.batch} x {a.seq} tokens, LoRA rank 16 on 7 projections")
    print(f"{'model':18s} {'train tokens/s':>15s} {'step / forward':>15s}")
    with tempfile.TemporaryDirectory() as tmp:
        for arch in ("llama", "qwen2"):
            for dtype in ("f32", "q8_0"):
                path = write_tiny_model(os.path.join(tmp, f"{arch}-{dtype}.gguf"), arch, 0, dtype)
                tps, ratio = measure(path, a.batch, a.seq, a.iters)
                print(f"{arch + ' ' + dtype:18s} {tps:15,.0f} {ratio:15.2f}")


if __name__ == "__main__":
    main()
