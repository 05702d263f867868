"""Runs that survive: SIGKILL + --resume repeats an uninterrupted run, early stopping, gradient accumulation.

The reference run trains on the repetitive "zebra" line and validates on unrelated random lines, so the validation
loss first falls (the FIM format is learned) and then rises (the line is memorized): early stopping triggers a few
evaluations after the best one, and a resumed run has to carry the best state, the early-stopping count, the
optimizer, the learning-rate schedule and the data position across the kill to end with the same adapter.
"""
import os
import random
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import TRAINER_ROOT, fim_example, parse_events, repetitive_examples, run_cli, train_args, write_dataset
from repotune_trainer.checkpoint import load_checkpoint, load_latest_checkpoint, save_checkpoint
from repotune_trainer.gguf import GGUFReader

PATIENCE = 3
RUN_ARGS = ["--steps", "40", "--batch", "4", "--lr", "1e-2", "--rank", "4", "--alpha", "8", "--eval-every", "2",
            "--checkpoint-every", "3", "--patience", str(PATIENCE), "--seed", "5"]


def _by_event(events, name):
    return [e for e in events if e["event"] == name]


def _losses(events):
    return {e["step"]: e["loss"] for e in _by_event(events, "step")}


def _adapter(path):
    r = GGUFReader(path)
    return {name: np.array(t.data) for name, t in r.tensors.items()}


@pytest.fixture(scope="module")
def overfit_data(tmp_path_factory):
    rng = np.random.default_rng(3)
    val = [fim_example("", "".join(chr(c) for c in rng.integers(97, 123, 30)) + "\n", "") for _ in range(4)]
    return write_dataset(tmp_path_factory.mktemp("overfit"), repetitive_examples(24, 0), val, seq_len=96)


@pytest.fixture(scope="module")
def reference(tiny_models, overfit_data, tmp_path_factory):
    """The uninterrupted run."""
    out = tmp_path_factory.mktemp("reference")
    p, events = run_cli(*train_args(tiny_models[("llama", "f32")], overfit_data, str(out), str(out / "a.gguf"),
                                    *RUN_ARGS))
    assert p.returncode == 0, p.stderr
    return events, str(out / "a.gguf")


def test_early_stopping_writes_the_best_state(reference):
    events, adapter = reference
    evals = [(e["step"], e["val_loss"]) for e in _by_event(events, "eval")]
    done = events[-1]
    assert done["event"] == "done" and done["early_stopped"] is True and os.path.exists(adapter)
    best_step, best_loss = min(evals[1:], key=lambda x: x[1])
    # stopped at the PATIENCE-th evaluation in a row without improvement, and wrote the best state
    assert [s for s, _ in evals[-PATIENCE:]] == [best_step + 2 * k for k in range(1, PATIENCE + 1)]
    assert done["step"] == evals[-1][0] < 40 and max(_losses(events)) == done["step"]
    assert done["adapter_step"] == best_step and done["val_loss"] == best_loss
    assert all(v > best_loss for _, v in evals[-PATIENCE:])


def test_sigkill_then_resume_repeats_the_uninterrupted_run(reference, tiny_models, overfit_data, tmp_path):
    ref_events, ref_adapter = reference
    end = ref_events[-1]["step"]
    seed = random.randrange(1 << 30)
    kill_at = random.Random(seed).randint(4, max(4, end - 4))   # after the first checkpoint (step 3), before the end
    why = f"kill after step {kill_at} (random seed {seed})"
    out, adapter = tmp_path / "run", str(tmp_path / "a.gguf")
    args = train_args(tiny_models[("llama", "f32")], overfit_data, str(out), adapter, *RUN_ARGS)
    proc = subprocess.Popen([sys.executable, "-m", "repotune_trainer", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env={**os.environ, "PYTHONPATH": TRAINER_ROOT})
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if '"event": "step"' in line and f'"step": {kill_at},' in line:
            proc.send_signal(signal.SIGKILL)
            break
    rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, why
    killed = parse_events("".join(lines) + "".join(l for l in rest.splitlines(True) if l.endswith("\n")))
    assert not _by_event(killed, "done") and not os.path.exists(adapter), why
    # atomic checkpoints: whatever is on disk after the kill reads back completely
    on_disk = sorted(os.listdir(out / "checkpoints"))
    for name in on_disk:
        if not name.startswith("."):
            assert load_checkpoint(str(out / "checkpoints" / name))["step"] >= 3, (why, name)
    # a half-written temporary file as a kill in the middle of a write leaves it: ignored, then removed
    stale = out / "checkpoints" / ".step-999999.pt.tmp-12345"
    stale.write_bytes(b"half a checkpoint")

    p, resumed = run_cli(*train_args(tiny_models[("llama", "f32")], overfit_data, str(out), adapter, "--resume",
                                     *RUN_ARGS))
    assert p.returncode == 0, (why, p.stderr)
    start = _by_event(resumed, "start")[0]["resumed_from_step"]
    assert start >= max(c["step"] for c in _by_event(killed, "checkpoint")) and start % 3 == 0, why
    assert not stale.exists() and not [n for n in os.listdir(out / "checkpoints") if n.startswith(".")]

    ref, before, after = _losses(ref_events), _losses(killed), _losses(resumed)
    assert sorted(after) == list(range(start + 1, end + 1)), why
    for step, loss in list(before.items()) + list(after.items()):
        assert loss == pytest.approx(ref[step], rel=1e-6, abs=0), (why, step)
    ref_evals = {e["step"]: e["val_loss"] for e in _by_event(ref_events, "eval")}
    for e in _by_event(resumed, "eval"):
        assert e["val_loss"] == pytest.approx(ref_evals[e["step"]], rel=1e-6), (why, e)
    ref_done, done = ref_events[-1], resumed[-1]
    assert done["event"] == "done", why
    for k in ("step", "adapter_step", "early_stopped"):
        assert done[k] == ref_done[k], (why, k)
    for k in ("val_loss", "val_loss_base"):
        assert done[k] == pytest.approx(ref_done[k], rel=1e-6), (why, k)
    a, b = _adapter(ref_adapter), _adapter(adapter)
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_allclose(b[name], a[name], rtol=0, atol=1e-6, err_msg=f"{why}: {name}")


def test_gradient_accumulation_matches_the_bigger_batch(tiny_models, small_dataset, tmp_path):
    common = ["--steps", "10", "--lr", "1e-2", "--rank", "4", "--alpha", "8", "--eval-every", "5", "--patience", "0"]
    model = tiny_models[("qwen2", "f32")]
    _, big = run_cli(*train_args(model, small_dataset, str(tmp_path / "a"), str(tmp_path / "a.gguf"), "--batch", "8",
                                 *common))
    _, acc = run_cli(*train_args(model, small_dataset, str(tmp_path / "b"), str(tmp_path / "b.gguf"), "--batch", "2",
                                 "--grad-accum", "4", *common))
    assert _by_event(acc, "start")[0]["grad_accum"] == 4 and acc[-1]["event"] == "done"
    a, b = _losses(big), _losses(acc)
    assert sorted(a) == sorted(b) == list(range(1, 11))
    np.testing.assert_allclose([b[s] for s in sorted(b)], [a[s] for s in sorted(a)], rtol=1e-5)
    np.testing.assert_allclose([e["val_loss"] for e in _by_event(acc, "eval")],
                               [e["val_loss"] for e in _by_event(big, "eval")], rtol=1e-5)
    x, y = _adapter(str(tmp_path / "a.gguf")), _adapter(str(tmp_path / "b.gguf"))
    for name in x:
        np.testing.assert_allclose(y[name], x[name], rtol=0, atol=5e-5, err_msg=name)  # measured 4.4e-6


def test_resume_falls_back_past_an_unreadable_checkpoint(tmp_path):
    state = {"lora": {"x": torch.ones(2)}, "optimizer": {}, "rank": 4}
    save_checkpoint(str(tmp_path), 3, state)
    (tmp_path / "checkpoints" / "step-000006.pt").write_bytes(b"not a checkpoint")
    path, ck = load_latest_checkpoint(str(tmp_path))
    assert path.endswith("step-000003.pt") and ck["step"] == 3 and torch.equal(ck["lora"]["x"], torch.ones(2))
    assert load_latest_checkpoint(str(tmp_path / "nothing")) == (None, None)


def test_invalid_accumulation_or_patience_gives_bad_args(tiny_models, small_dataset, tmp_path):
    p, events = run_cli(*train_args(tiny_models[("llama", "f32")], small_dataset, str(tmp_path / "r"),
                                    str(tmp_path / "a.gguf"), "--grad-accum", "0", "--patience", "-1"))
    assert p.returncode != 0 and events[-1]["code"] == "bad_args"
    assert "--grad-accum" in events[-1]["message"] and "--patience" in events[-1]["message"]


def test_twenty_kills_in_a_row_end_with_the_uninterrupted_runs_adapter(tiny_models, overfit_data, tmp_path):
    """Issue 9: SIGKILL at random points 20 times in one run (between steps, inside a checkpoint write): every attempt
    resumes from the newest complete checkpoint, every step's loss is the uninterrupted run's, and so is the adapter."""
    args = ["--steps", "30", "--batch", "4", "--lr", "1e-2", "--rank", "4", "--alpha", "8", "--eval-every", "10",
            "--checkpoint-every", "1", "--patience", "0", "--seed", "7"]
    model = tiny_models[("llama", "f32")]
    ref_out = tmp_path / "reference"
    p, ref_events = run_cli(*train_args(model, overfit_data, str(ref_out), str(ref_out / "a.gguf"), *args))
    assert p.returncode == 0, p.stderr
    ref = _losses(ref_events)

    out, adapter = tmp_path / "run", str(tmp_path / "a.gguf")
    rng = random.Random(random.randrange(1 << 30))
    seen = {}
    kills = 0
    while kills < 20:
        newest = load_latest_checkpoint(str(out))[1] if out.exists() else None
        cmd = train_args(model, overfit_data, str(out), adapter, *args, *(["--resume"] if kills else []))
        proc = subprocess.Popen([sys.executable, "-m", "repotune_trainer", *cmd], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True, env={**os.environ, "PYTHONPATH": TRAINER_ROOT})
        # Killed after 1-3 lines of this attempt's progress: right after a step (the checkpoint of that step may
        # be half-written) or right after a checkpoint.
        budget, lines = rng.randint(1, 3), []
        for line in proc.stdout:
            lines.append(line)
            if '"event": "step"' in line or '"event": "checkpoint"' in line:
                budget -= 1
                if budget == 0:
                    proc.send_signal(signal.SIGKILL)
                    break
        proc.communicate(timeout=60)
        events = parse_events("".join(l for l in lines if l.endswith("\n")))
        assert not _by_event(events, "done"), f"the run finished after {kills} kills: too few steps for the test"
        kills += 1
        start = _by_event(events, "start")
        if kills > 1 and start:
            # resumed from the newest checkpoint that was complete when it started
            assert start[0]["resumed_from_step"] == (newest["step"] if newest else None), kills
        for e in _by_event(events, "step"):
            seen[e["step"]] = e["loss"]
    p, final = run_cli(*train_args(model, overfit_data, str(out), adapter, "--resume", *args))
    assert p.returncode == 0, p.stderr
    assert final[-1]["event"] == "done"
    for e in _by_event(final, "step"):
        seen[e["step"]] = e["loss"]
    assert sorted(seen) == list(range(1, 31))
    for step, loss in seen.items():
        assert loss == pytest.approx(ref[step], rel=1e-6, abs=0), step
    a, b = _adapter(str(ref_out / "a.gguf")), _adapter(adapter)
    for name in a:
        np.testing.assert_allclose(b[name], a[name], rtol=0, atol=1e-6, err_msg=name)
