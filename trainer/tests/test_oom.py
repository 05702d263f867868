"""Out of memory: an `out_of_memory` error event that names settings that fit, at once and never a hang.

Before training (the preflight): real settings whose estimate exceeds this machine's free memory (a huge batch of
long sequences on the tiny model; a sparse GGUF too big for any settings). During training: a real allocation
failure, made by lowering the trainer process's address-space limit (RLIMIT_AS) after PyTorch is imported, so the
model loads and the step's allocation fails; the adapter and checkpoints already on disk must be left as they were."""
import hashlib
import math
import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import TRAINER_ROOT, parse_events, schema_failures, sparse_model, train_args, write_dataset
from repotune_trainer.memory import estimate
from repotune_trainer.tiny import write_tiny_model

# Runs the trainer CLI with RLIMIT_AS = the address space in use once PyTorch and the trainer are imported, plus
# argv[1] bytes: the libraries' own mappings are in place, and what the run allocates comes out of that headroom.
_LIMITED = (
    "import resource, runpy, sys\n"
    "import torch, numpy, repotune_trainer.train\n"
    "vm = [int(l.split()[1]) * 1024 for l in open('/proc/self/status') if l.startswith('VmSize:')][0]\n"
    "limit = vm + int(sys.argv[1])\n"
    "resource.setrlimit(resource.RLIMIT_AS, (limit, limit))\n"
    "sys.argv = ['repotune_trainer'] + sys.argv[2:]\n"
    "runpy.run_module('repotune_trainer', run_name='__main__', alter_sys=True)\n")


def _run(args, headroom=None, timeout=120):
    env = {**os.environ, "PYTHONPATH": TRAINER_ROOT}
    cmd = [sys.executable, "-m", "repotune_trainer", *map(str, args)] if headroom is None else \
        [sys.executable, "-c", _LIMITED, str(headroom), *map(str, args)]
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    return p, parse_events(p.stdout), time.time() - t0


def _data(folder, seq_len: int, n_train: int):
    rng = np.random.default_rng(0)
    return write_dataset(folder, [list(rng.integers(10, 266, seq_len)) for _ in range(n_train)],
                         [list(rng.integers(10, 266, seq_len))], seq_len=seq_len)


def _gib(text: str, what: str) -> float:
    m = re.search(what, text)
    assert m, (what, text)
    return float(m.group(1)) * {"TiB": 2 ** 40, "GiB": 2 ** 30, "MiB": 2 ** 20, "KiB": 2 ** 10}[m.group(2)]


def _only_error(p, events, elapsed):
    assert p.returncode == 1, p.stderr
    assert [e["event"] for e in events] == ["error"], events
    assert events[0]["code"] == "out_of_memory"
    assert elapsed < 60
    bad = schema_failures(p.stdout)
    assert bad in (None, []), bad
    return events[0]["message"]


@pytest.mark.skipif(not os.path.exists("/proc/meminfo"), reason="free memory is read from /proc/meminfo here")
def test_settings_that_do_not_fit_are_refused_with_ones_that_do(tiny_models, tmp_path):
    model = tiny_models[("llama", "f32")]
    data = _data(tmp_path / "data", 4096, 4)
    p, events, elapsed = _run(train_args(model, data, tmp_path / "run", tmp_path / "a.gguf", "--batch", "4096",
                                         "--steps", "5"))
    msg = _only_error(p, events, elapsed)
    print("\n" + msg)
    m = re.search(r"Try batch (\d+) with grad-accum (\d+)", msg)
    assert m, msg
    batch, accum = int(m.group(1)), int(m.group(2))
    assert batch < 4096 and batch * accum >= 4096 and f"--batch {batch} --grad-accum {accum}" in msg
    free = _gib(msg, r"only ([\d.]+) (\w+) free")
    needed = estimate(model, 4096, batch, 16, "cpu", "keep")
    assert needed["total"] - needed["runtime"] <= free            # the suggestion fits (0.9 x free, before rounding)
    twice = estimate(model, 4096, 2 * batch, 16, "cpu", "keep")
    assert twice["total"] - twice["runtime"] > 0.8 * free          # and it is the first on the ladder that does
    assert not os.path.exists(tmp_path / "run" / "checkpoints") and not os.path.exists(tmp_path / "a.gguf")


def test_a_model_too_big_for_any_settings_fails_at_once(tmp_path):
    total = [int(line.split()[1]) * 1024 for line in open("/proc/meminfo") if line.startswith("MemTotal:")][0] \
        if os.path.exists("/proc/meminfo") else 64 * 2 ** 30
    # Width 4096: a layer is 201M weights, 113 MB as Q4_0; make even the Q4_0 copy twice this machine's RAM.
    layers = math.ceil(2 * total / 113e6)
    model = sparse_model(tmp_path / "huge.gguf", 4096, layers)
    data = _data(tmp_path / "data", 256, 2)
    p, events, elapsed = _run(train_args(model, data, tmp_path / "run", tmp_path / "a.gguf"))
    msg = _only_error(p, events, elapsed)
    print("\n" + msg)
    assert "does not fit for training: even the smallest settings (batch 1, gradient checkpointing, sequence length " \
           "128, rank 4, a Q4_0 copy of the base weights)" in msg
    assert "smaller model" in msg


def _digest(path) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_an_allocation_failure_during_training_is_reported_and_leaves_the_files(tmp_path):
    model = write_tiny_model(str(tmp_path / "w512.gguf"), "qwen2", 0, "f32", width=512)
    data = _data(tmp_path / "data", 512, 32)
    out, adapter = tmp_path / "run", tmp_path / "adapter.gguf"
    # A finished run first: its adapter at --adapter-out and its checkpoints in the run folder.
    p, events, _ = _run(train_args(model, data, out, adapter, "--steps", "3", "--batch", "1", "--rank", "2",
                                   "--checkpoint-every", "1", "--eval-every", "1"))
    assert p.returncode == 0 and events[-1]["event"] == "done", p.stderr
    files = sorted(os.path.join(out, "checkpoints", f) for f in os.listdir(out / "checkpoints")) + [str(adapter)]
    before = {f: _digest(f) for f in files}
    assert len(files) == 3
    # The same run folder and adapter path, batch 16 x 512 tokens (estimated ~2.8 GB), 600 MB of address space:
    # the model (26 MB) and the step-0 evaluation fit, the first training step does not.
    p, events, elapsed = _run(train_args(model, data, out, adapter, "--steps", "5", "--batch", "16", "--rank", "16",
                                         "--checkpoint-every", "1"), headroom=600 * 2 ** 20)
    assert p.returncode == 1, p.stderr
    kinds = [e["event"] for e in events]
    assert kinds[:2] == ["start", "eval"] and kinds[-1] == "error" and "step" not in kinds, kinds
    err = events[-1]
    print("\n" + err["message"])
    assert err["code"] == "out_of_memory" and "while training" in err["message"]
    assert "can't allocate memory" in err["message"] or "MemoryError" in err["message"]
    m = re.search(r"try batch (\d+) with grad-accum (\d+)", err["message"])
    assert m and int(m.group(1)) * int(m.group(2)) >= 16 and int(m.group(1)) < 16, err["message"]
    assert elapsed < 60
    assert {f: _digest(f) for f in files} == before
    assert sorted(os.listdir(out / "checkpoints")) == sorted(os.path.basename(f) for f in files[:-1])
    assert not [f for f in os.listdir(tmp_path) if ".tmp-" in f]
    bad = schema_failures(p.stdout)
    assert bad in (None, []), bad


def test_no_memory_check_skips_the_preflight(tiny_models, tmp_path):
    """The run that the preflight refuses starts with --no-memory-check, and a real failure then ends it as
    out_of_memory (the address-space limit stands in for the machine's RAM)."""
    model = tiny_models[("llama", "f32")]
    data = _data(tmp_path / "data", 4096, 4)
    p, events, elapsed = _run(train_args(model, data, tmp_path / "run", tmp_path / "a.gguf", "--batch", "4096",
                                         "--steps", "5", "--no-memory-check"), headroom=600 * 2 ** 20)
    assert p.returncode == 1, p.stderr
    assert events[0]["event"] == "start" and events[-1]["event"] == "error", events
    assert events[-1]["code"] == "out_of_memory" and "ran out of memory while training" in events[-1]["message"]
    assert re.search(r"try batch \d+ with grad-accum \d+", events[-1]["message"]), events[-1]["message"]
    assert elapsed < 60
