"""A detached trainer outlives its window: it keeps training while the lease file is renewed, and stops as on SIGINT
(checkpoint, `stopped` event, exit 0) once nobody has touched it for --lease-timeout seconds."""
import os
import signal
import subprocess
import sys
import time

from conftest import TRAINER_ROOT, parse_events, train_args


def test_training_stops_with_a_checkpoint_when_the_lease_is_not_renewed(tiny_models, small_dataset, tmp_path):
    lease = tmp_path / "lease"
    lease.write_text("")
    out, adapter = tmp_path / "run", str(tmp_path / "a.gguf")
    args = train_args(tiny_models[("llama", "f32")], small_dataset, str(out), adapter, "--steps", "100000",
                      "--checkpoint-every", "100000", "--eval-every", "100000", "--lease-file", str(lease),
                      "--lease-timeout", "3")
    proc = subprocess.Popen([sys.executable, "-m", "repotune_trainer", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": TRAINER_ROOT})
    # Renewed for a while: training goes on past the timeout.
    renewed_until = time.time() + 8
    while time.time() < renewed_until:
        os.utime(lease)
        time.sleep(0.5)
        assert proc.poll() is None, "the trainer stopped although its lease was renewed"
    started_waiting = time.time()
    stdout, stderr = proc.communicate(timeout=60)
    waited = time.time() - started_waiting
    events = parse_events(stdout)
    assert proc.returncode == 0, stderr[-2000:]
    stopped = [e for e in events if e["event"] == "stopped"]
    assert stopped, [e["event"] for e in events][-5:]
    assert stopped[0]["step"] > 1 and os.path.isfile(stopped[0]["checkpoint"])
    assert not os.path.exists(adapter), "a stopped run writes no adapter"
    assert "renewed the lease" in stderr
    assert waited >= 1, f"stopped {waited:.1f} s after the last renewal: before the timeout"


def test_a_missing_lease_file_stops_the_run_at_once(tiny_models, small_dataset, tmp_path):
    out, adapter = tmp_path / "run", str(tmp_path / "a.gguf")
    args = train_args(tiny_models[("llama", "f32")], small_dataset, str(out), adapter, "--steps", "100000",
                      "--eval-every", "100000", "--lease-file", str(tmp_path / "nobody-writes-this"))
    p = subprocess.run([sys.executable, "-m", "repotune_trainer", *args], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": TRAINER_ROOT})
    events = parse_events(p.stdout)
    assert p.returncode == 0, p.stderr[-2000:]
    assert events[-1]["event"] == "stopped"


def test_a_stop_while_pytorch_is_still_importing_ends_as_a_clean_stop(tiny_models, small_dataset, tmp_path):
    """Stop pressed right after Start: the SIGINT arrives during `import torch` and must give a `stopped` event and
    exit 0, not a KeyboardInterrupt traceback."""
    out, adapter = tmp_path / "run", str(tmp_path / "a.gguf")
    args = train_args(tiny_models[("llama", "f32")], small_dataset, str(out), adapter, "--steps", "50")
    proc = subprocess.Popen([sys.executable, "-m", "repotune_trainer", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": TRAINER_ROOT})
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    events = parse_events(stdout)
    assert proc.returncode == 0, stderr[-2000:]
    assert events and events[-1]["event"] == "stopped", [e["event"] for e in events]
    assert "KeyboardInterrupt" not in stderr
    assert not os.path.exists(adapter)
