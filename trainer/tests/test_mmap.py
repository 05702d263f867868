"""The model file's memory map does not outlive loading: each tensor's pages leave the resident set once copied
(GGUFReader.release), and the map itself is gone after the reader is closed, in the loader and in a real `train`."""
import os
import select
import signal
import subprocess
import sys

import pytest

from conftest import TRAINER_ROOT, parse_events, train_args
from repotune_trainer.model import LoraModel, open_model
from repotune_trainer.tiny import write_tiny_model

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/smaps"), reason="needs Linux /proc")


def _mapped_rss(pid, path: str):
    """(is the file mapped, resident bytes of its mappings) for process `pid`, from /proc/PID/smaps."""
    mapped, rss, inside = False, 0, False
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            fields = line.split()
            if fields and "-" in fields[0] and len(fields[0]) > 8 and not fields[0].endswith(":"):
                inside = len(fields) >= 6 and fields[5] == path
                mapped = mapped or inside
            elif inside and fields[0] == "Rss:":
                rss += int(fields[1]) * 1024
    return mapped, rss


def _rss_file() -> int:
    with open("/proc/self/status") as f:
        return [int(line.split()[1]) * 1024 for line in f if line.startswith("RssFile:")][0]


@pytest.fixture(scope="module")
def wide_model(tmp_path_factory):
    # 26 MB of F32 weights: large against the page-sized remainders release() may leave
    path = str(tmp_path_factory.mktemp("mm") / "w512.gguf")
    return os.path.realpath(write_tiny_model(path, "qwen2", 0, "f32", width=512))


def test_loading_releases_each_tensor_and_closing_unmaps(wide_model):
    size = os.path.getsize(wide_model)
    before = _rss_file()
    reader = open_model(wide_model)
    for info in reader.tensors.values():      # what a reader that is never released would hold: every page
        info.data.sum()
    mapped, touched = _mapped_rss("self", wide_model)
    assert mapped and touched > 0.9 * size
    model = LoraModel(reader, rank=4)
    mapped, rss = _mapped_rss("self", wide_model)
    # What may remain: the header, and pages the kernel's fault-around (up to 64 KiB about each page fault) mapped
    # back next to the tensor being read, so a bound per tensor, not per byte.
    bound = 128 * 1024 * (len(reader.tensors) + 1)
    assert mapped and rss <= bound < 0.25 * size, f"{rss} of {size} bytes of the file still resident after loading"
    reader.close()
    assert _mapped_rss("self", wide_model) == (False, 0)
    with open("/proc/self/maps") as f:
        assert wide_model not in f.read()
    assert _rss_file() - before < 0.25 * size
    assert model.weights["blk.0.ffn_up.weight"].dequantize().abs().sum() > 0      # the copies outlive the map


def test_reader_as_context_manager_and_after_close(wide_model):
    with open_model(wide_model) as r:
        n = len(r.tensors)
    assert n > 0 and all(t.data is None for t in r.tensors.values())
    with open("/proc/self/maps") as f:
        assert wide_model not in f.read()


def test_a_training_process_does_not_map_the_model(wide_model, tmp_path):
    import numpy as np
    from conftest import write_dataset
    rng = np.random.default_rng(0)
    data = write_dataset(tmp_path / "data", [list(rng.integers(10, 266, 64 * 16))], [list(rng.integers(10, 266, 64))],
                         seq_len=64)
    args = train_args(wide_model, data, str(tmp_path / "run"), str(tmp_path / "a.gguf"), "--steps", "100000",
                      "--batch", "2", "--rank", "2", "--eval-every", "100000", "--checkpoint-every", "100000")
    p = subprocess.Popen([sys.executable, "-m", "repotune_trainer", *args], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": TRAINER_ROOT})
    try:
        lines = []
        while True:
            ready, _, _ = select.select([p.stdout], [], [], 120)
            assert ready, "no event for 120 s"
            line = p.stdout.readline()
            assert line, p.stderr.read()
            lines.append(line)
            if '"event": "step"' in line:
                break
        mapped, _ = _mapped_rss(p.pid, wide_model)
        with open(f"/proc/{p.pid}/maps") as f:
            maps = f.read()
    finally:
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=120)
    assert not mapped and wide_model not in maps
    events = parse_events("".join(lines) + out)
    assert p.returncode == 0, err
    assert events[-1]["event"] == "stopped"
