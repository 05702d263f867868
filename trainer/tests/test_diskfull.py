"""Disk full while the trainer writes a checkpoint or the adapter: a clear `error` event, exit 1, no temporary file
left, the previous checkpoint and adapter byte-identical, and resuming from that checkpoint works once space is free.

Two disks: a real 4 MB tmpfs filled up with a filler file (where this machine lets the test mount one: root with
CAP_SYS_ADMIN), and everywhere the trainer's own atomic-write helper told to fail with ENOSPC after a few bytes
(REPOTUNE_TEST_WRITE_LIMIT), which takes the same path through the trainer as a real full disk.
"""
import hashlib
import os
import shutil
import subprocess
import uuid

import pytest

from conftest import run_cli, schema_failures, train_args
from repotune_trainer.files import WRITE_LIMIT_ENV

ARGS = ["--batch", "2", "--rank", "4", "--lr", "1e-2", "--eval-every", "2", "--checkpoint-every", "2", "--seed", "1",
        "--max-eval-sequences", "4"]


class InjectedDisk:
    """The trainer's writes fail after a few bytes while `full`."""

    def __init__(self, root):
        self.root = root
        self.full = False

    def env(self):
        return {WRITE_LIMIT_ENV: "64"} if self.full else {}

    def fill(self):
        self.full = True

    def free(self):
        self.full = False


class Tmpfs:
    """A real 4 MB tmpfs; `fill` leaves a few KB free (less than any checkpoint or adapter needs)."""

    def __init__(self, root):
        self.root = root
        self.filler = os.path.join(root, "filler")

    def env(self):
        return {}

    def fill(self):
        with open(self.filler, "wb") as f:
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError:
                pass
        with open(self.filler, "r+b") as f:
            f.truncate(max(0, os.path.getsize(self.filler) - 4096))
        assert shutil.disk_usage(self.root).free <= 16384

    def free(self):
        os.unlink(self.filler)


@pytest.fixture(params=["injected", "tmpfs"])
def disk(request, tmp_path):
    if request.param == "injected":
        root = tmp_path / "disk"
        root.mkdir()
        yield InjectedDisk(str(root))
        return
    root = f"/tmp/repotune-tmpfs-{uuid.uuid4().hex[:8]}"
    os.mkdir(root)
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", root], capture_output=True,
                       text=True)
    if p.returncode != 0:
        os.rmdir(root)
        pytest.skip(f"cannot mount a tmpfs here ({p.stderr.strip() or p.returncode}); the injected disk covers it")
    try:
        yield Tmpfs(root)
    finally:
        subprocess.run(["umount", "-l", root], check=False)
        os.rmdir(root)


def _sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _state(disk):
    """{file: sha256} of everything on the disk but the filler."""
    names = (os.path.relpath(os.path.join(d, n), disk.root) for d, _, files in os.walk(disk.root) for n in files)
    return {name: _sha(os.path.join(disk.root, name)) for name in sorted(names) if name != "filler"}


def _train(model, data, disk, *extra):
    out, adapter = os.path.join(disk.root, "run"), os.path.join(disk.root, "adapter.gguf")
    return run_cli(*train_args(model, data, out, adapter, *ARGS, *extra), env_extra=disk.env())


def _first_run(tiny_models, small_dataset, disk):
    """4 steps: a checkpoint at step 2 and the adapter, the state a failed later write must leave alone."""
    p, events = _train(tiny_models[("llama", "f32")], small_dataset, disk, "--steps", "4")
    assert p.returncode == 0, p.stderr
    before = _state(disk)
    assert sorted(before) == ["adapter.gguf", "run/checkpoints/step-000002.pt"]
    return before


def _assert_refused(p, events, disk, before, what, folder):
    assert p.returncode == 1, p.stderr
    assert "Traceback" not in p.stderr and "terminate called" not in p.stderr, p.stderr
    assert events[-1]["event"] == "error" and events[-1]["code"] == "disk_full", events
    message = events[-1]["message"]
    assert message.startswith(f"The disk is full: the trainer could not write {what}"), message
    assert f"to {folder} (No space left on device" in message and "Nothing was half-written. Free at least" in message
    assert "resume the run: it continues from its checkpoint of step 2, which is intact." in message, message
    assert [e for e in events if e["event"] in ("checkpoint", "done")] == []
    assert schema_failures(p.stdout) in ([], None)
    assert _state(disk) == before  # same files, same bytes: no temporary file, nothing half-written or replaced


def test_disk_full_at_a_checkpoint_keeps_the_previous_one(tiny_models, small_dataset, disk):
    before = _first_run(tiny_models, small_dataset, disk)
    disk.fill()
    p, events = _train(tiny_models[("llama", "f32")], small_dataset, disk, "--steps", "8", "--resume")
    # the steps after the checkpoint ran; the next checkpoint (step 4) could not be written
    assert [e["step"] for e in events if e["event"] == "step"] == [3, 4]
    _assert_refused(p, events, disk, before, "the checkpoint of step 4",
                    os.path.join(disk.root, "run", "checkpoints"))

    disk.free()
    p, events = _train(tiny_models[("llama", "f32")], small_dataset, disk, "--steps", "8", "--resume")
    assert p.returncode == 0, p.stderr
    assert [e["step"] for e in events if e["event"] == "step"] == [3, 4, 5, 6, 7, 8]
    assert events[-1]["event"] == "done"


def test_disk_full_at_the_adapter_keeps_the_previous_adapter(tiny_models, small_dataset, disk):
    before = _first_run(tiny_models, small_dataset, disk)
    disk.fill()
    # resuming the finished 4-step run trains steps 3 and 4 again and writes only the adapter (no checkpoint at the end)
    p, events = _train(tiny_models[("llama", "f32")], small_dataset, disk, "--steps", "4", "--resume")
    assert [e["step"] for e in events if e["event"] == "step"] == [3, 4]
    _assert_refused(p, events, disk, before, "the adapter", disk.root)
