"""memory.estimate against the peak RSS of real `train` runs (CPU), on tiny models wide enough that the model's share
(weights, activations) is a large part of the total, not just the PyTorch baseline."""
import json
import os
import subprocess
import sys

import numpy as np

from conftest import TRAINER_ROOT, write_dataset
from repotune_trainer.memory import estimate
from repotune_trainer.tiny import write_tiny_model

# (width, dtype, seq_len, batch, rank)
CONFIGS = [(256, "q8_0", 256, 4, 8), (512, "f32", 256, 4, 16), (512, "q8_0", 512, 2, 4)]
_MEASURE = ("import resource, subprocess, sys\n"
            "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
            "print(p.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)\n"
            "sys.stderr.write(p.stderr)\n")


def _peak_rss(args) -> int:
    """Peak RSS of `python -m repotune_trainer <args>`, alone in a fresh wrapper so RUSAGE_CHILDREN is its own."""
    env = {**os.environ, "PYTHONPATH": TRAINER_ROOT}
    p = subprocess.run([sys.executable, "-c", _MEASURE, sys.executable, "-m", "repotune_trainer", *map(str, args)],
                       capture_output=True, text=True, env=env, timeout=120)
    rc, rss = map(int, p.stdout.split())
    assert rc == 0, p.stderr
    return rss


def test_estimate_within_15_percent_of_measured_peak_rss(tmp_path):
    rows = []
    for width, dtype, seq, batch, rank in CONFIGS:
        model = write_tiny_model(str(tmp_path / f"w{width}-{dtype}.gguf"), "qwen2", 0, dtype, width=width)
        rng = np.random.default_rng(0)
        data = write_dataset(tmp_path / f"data-{seq}", [list(rng.integers(10, 266, seq * 8))],
                             [list(rng.integers(10, 266, seq))], seq_len=seq, version=1)
        out = tmp_path / f"run-{width}-{dtype}"
        measured = _peak_rss(["train", "--model", model, "--data", data, "--out", out, "--adapter-out",
                              out / "a.gguf", "--threads", "1", "--steps", "2", "--batch", batch, "--rank", rank,
                              "--eval-every", "100", "--checkpoint-every", "100"])
        e = estimate(model, seq, batch, rank, "cpu")
        rows.append((width, dtype, seq, batch, rank, e, measured))
    mb = 2 ** 20
    print("\nwidth dtype  seq batch rank | runtime weights activ. alloc transient | estimate measured  ratio")
    for width, dtype, seq, batch, rank, e, measured in rows:
        print(f"{width:5} {dtype:5} {seq:4} {batch:5} {rank:4} | {e['runtime'] / mb:7.1f} "
              f"{e['weights'] / mb:7.1f} {e['activations'] / mb:6.1f} {e['cpu_allocator'] / mb:5.1f} "
              f"{e['transient'] / mb:9.1f} | {e['total'] / mb:8.1f} {measured / mb:8.1f} {e['total'] / measured:6.3f}")
    for width, dtype, seq, batch, rank, e, measured in rows:
        assert e["total"] - e["runtime"] > 0.35 * e["total"], "the model-dependent share is too small to test"
        assert abs(e["total"] - measured) <= 0.15 * measured, (width, dtype, e, measured)


def test_cli_prints_one_json_line(tmp_path):
    model = write_tiny_model(str(tmp_path / "m.gguf"), "llama", 0, "q8_0")
    p = subprocess.run([sys.executable, "-m", "repotune_trainer.memory", "--model", model, "--seq-len", "64",
                        "--batch", "2", "--rank", "4", "--device", "cuda"], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": TRAINER_ROOT}, timeout=60)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert len(lines) == 1
    e = json.loads(lines[0])
    assert e["device"] == "cuda" and e["runtime"] == 0 and e["cpu_allocator"] == 0
    assert e["total"] == sum(e[k] for k in ("weights", "lora", "activations", "transient", "cpu_allocator",
                                            "runtime"))
