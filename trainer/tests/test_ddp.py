"""Data-parallel training (torchrun): 2 CPU processes on gloo against 1 process with the same global batch.

The ranks are started the way torchrun starts its workers (one process each, with MASTER_ADDR, MASTER_PORT,
WORLD_SIZE, RANK, LOCAL_RANK, LOCAL_WORLD_SIZE in the environment) rather than through torchrun itself: the
Debian python3-torch 1.13 on Python 3.11 that runs these tests has a torchrun that crashes before starting any
worker (its Std enum loses the zero member under Python 3.11's IntFlag), and the trainer sees no difference.
"""
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import TRAINER_ROOT, parse_events, run_cli, train_args
from repotune_trainer.gguf import GGUFReader

ARGS = ["--steps", "8", "--lr", "1e-2", "--rank", "4", "--alpha", "8", "--eval-every", "4", "--checkpoint-every", "3",
        "--seed", "2"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_ranks(args, world=2, tmp=None):
    port = _free_port()
    procs = []
    for rank in range(world):
        env = {**os.environ, "PYTHONPATH": TRAINER_ROOT, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
               "WORLD_SIZE": str(world), "RANK": str(rank), "LOCAL_RANK": str(rank), "LOCAL_WORLD_SIZE": str(world),
               "OMP_NUM_THREADS": "1"}
        err = open(os.path.join(tmp, f"rank{rank}.err"), "w")
        procs.append(subprocess.Popen([sys.executable, "-m", "repotune_trainer", *map(str, args)], env=env,
                                      stdout=subprocess.PIPE, stderr=err, text=True))
    return procs


def _finish(procs, timeout=120):
    outs = []
    for p in procs:
        out, _ = p.communicate(timeout=timeout)
        outs.append((p.returncode, out))
    return outs


def _adapter(path):
    r = GGUFReader(path)
    return {name: np.array(t.data) for name, t in r.tensors.items()}


def _of(events, name):
    return [e for e in events if e["event"] == name]


@pytest.mark.parametrize("batch", [4, 3])   # 3: shares of 2 and 1 sequences
def test_two_ranks_match_one_process(tiny_models, small_dataset, tmp_path, batch):
    model = tiny_models[("llama", "f32")]
    extra = [*ARGS, "--batch", str(batch)]
    p, ref = run_cli(*train_args(model, small_dataset, tmp_path / "one", tmp_path / "one.gguf", *extra))
    assert p.returncode == 0, p.stderr
    procs = _start_ranks(train_args(model, small_dataset, tmp_path / "two", tmp_path / "two.gguf", *extra),
                         tmp=str(tmp_path))
    (rc0, out0), (rc1, out1) = _finish(procs)
    assert (rc0, rc1) == (0, 0), open(tmp_path / "rank0.err").read() + open(tmp_path / "rank1.err").read()
    assert out1 == "", "rank 1 must stay silent on stdout"
    assert open(tmp_path / "rank1.err").read() == ""
    two = parse_events(out0)
    assert [e["event"] for e in two] == [e["event"] for e in ref]
    assert len(_of(two, "done")) == 1 and len(_of(two, "start")) == 1
    loss_1 = np.array([e["loss"] for e in _of(ref, "step")])
    loss_2 = np.array([e["loss"] for e in _of(two, "step")])
    val_1 = np.array([e["val_loss"] for e in _of(ref, "eval")])
    val_2 = np.array([e["val_loss"] for e in _of(two, "eval")])
    a1, a2 = _adapter(str(tmp_path / "one.gguf")), _adapter(str(tmp_path / "two.gguf"))
    assert a1.keys() == a2.keys()
    d_loss = float(np.max(np.abs(loss_1 - loss_2) / loss_1))
    d_val = float(np.max(np.abs(val_1 - val_2) / val_1))
    d_ad = max(float(np.max(np.abs(a1[k] - a2[k]))) for k in a1)
    scale = max(float(np.max(np.abs(a1[k]))) for k in a1)
    print(f"batch {batch}: step loss max rel diff {d_loss:.2e}, val loss {d_val:.2e}, adapter max abs diff {d_ad:.2e} "
          f"(largest entry {scale:.2f})")
    assert d_loss < 1e-5 and d_val < 1e-5 and d_ad < 1e-4 * max(1.0, scale)
    assert sorted(os.listdir(tmp_path / "two" / "checkpoints")) == ["step-000003.pt", "step-000006.pt"]
    assert not os.path.exists(tmp_path / "two.gguf.tmp")


def test_sigterm_on_one_rank_stops_all_with_a_checkpoint_and_resumes(tiny_models, small_dataset, tmp_path):
    model = tiny_models[("llama", "f32")]
    extra = ["--steps", "60", "--batch", "4", "--lr", "1e-2", "--rank", "4", "--eval-every", "1000",
             "--checkpoint-every", "1000", "--seed", "3"]
    args = train_args(model, small_dataset, tmp_path / "run", tmp_path / "a.gguf", *extra)
    procs = _start_ranks(args, tmp=str(tmp_path))
    first = procs[0].stdout.readline()   # "start"
    assert '"start"' in first, open(tmp_path / "rank0.err").read()
    deadline = time.time() + 60
    while time.time() < deadline:
        line = procs[0].stdout.readline()
        if not line or '"step"' in line:
            break
    procs[1].send_signal(signal.SIGTERM)   # only rank 1
    (rc0, out0), (rc1, out1) = _finish(procs)
    assert (rc0, rc1) == (0, 0), open(tmp_path / "rank0.err").read() + open(tmp_path / "rank1.err").read()
    assert out1 == ""
    events = [{"event": "start"}] + parse_events(out0)
    stopped = _of(events, "stopped")
    assert len(stopped) == 1 and stopped[0]["step"] < 60, "the run was not stopped"
    assert os.path.exists(stopped[0]["checkpoint"]) and _of(events, "checkpoint")
    assert "received SIGTERM" in open(tmp_path / "rank1.err").read()
    assert not os.path.exists(tmp_path / "a.gguf")

    # --resume on 2 ranks (rank 0 reads the checkpoint and sends it) ends where an uninterrupted 1-process run does.
    procs = _start_ranks(args + ["--resume"], tmp=str(tmp_path))
    (rc0, out0), (rc1, _) = _finish(procs)
    assert (rc0, rc1) == (0, 0), open(tmp_path / "rank0.err").read()
    resumed = parse_events(out0)
    assert resumed[0]["resumed_from_step"] == stopped[0]["step"] and resumed[-1]["event"] == "done"
    p, ref = run_cli(*train_args(model, small_dataset, tmp_path / "ref", tmp_path / "ref.gguf", *extra))
    assert p.returncode == 0, p.stderr
    ref_loss = {e["step"]: e["loss"] for e in _of(ref, "step")}
    for e in _of(resumed, "step"):
        assert abs(e["loss"] - ref_loss[e["step"]]) <= 1e-5 * ref_loss[e["step"]]
    a1, a2 = _adapter(str(tmp_path / "ref.gguf")), _adapter(str(tmp_path / "a.gguf"))
    d_ad = max(float(np.max(np.abs(a1[k] - a2[k]))) for k in a1)
    print(f"SIGTERM on rank 1 at step {stopped[0]['step']}, resumed on 2 ranks: adapter max abs diff {d_ad:.2e}")
    assert d_ad < 1e-4
