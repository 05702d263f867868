"""Training checkpoints: LoRA weights, optimizer state, step and RNG, written atomically to RUN_DIR/checkpoints/."""
from __future__ import annotations

import glob
import inspect
import os
import re
from typing import Optional, Tuple

import torch

from .events import TrainerError, log
from .files import DiskFull, disk_full_error, write_atomic

KEEP = 2
_NAME = re.compile(r"step-(\d+)\.pt$")


def checkpoint_dir(run_dir: str) -> str:
    return os.path.join(run_dir, "checkpoints")


def save_checkpoint(run_dir: str, step: int, state: dict) -> str:
    """Write RUN_DIR/checkpoints/step-NNNNNN.pt atomically (temporary file, fsync, rename: a SIGKILL at any moment
    leaves either the complete new file or none, never half of one) and keep the KEEP newest."""
    folder = checkpoint_dir(run_dir)
    path = os.path.join(folder, f"step-{step:06d}.pt")
    # Temporary files of a process killed in the middle of a write ("." prefix: never matched as checkpoints).
    for tmp in glob.glob(os.path.join(folder, ".step-*.pt.tmp-*")):
        try:
            os.unlink(tmp)
        except OSError:
            pass
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    try:
        write_atomic(path, lambda f: torch.save({"version": 1, "step": step, "rng": rng, **state}, f))
    except DiskFull as e:
        previous = latest_checkpoint(run_dir)
        raise disk_full_error(e, f"the checkpoint of step {step}", os.path.getsize(previous) if previous else None,
                              how_to_go_on(run_dir)) from e
    for old in sorted(_list(folder))[:-KEEP]:
        try:
            os.unlink(old[1])
        except OSError:
            pass
    return path


def _list(folder: str):
    out = []
    for p in glob.glob(os.path.join(folder, "step-*.pt")):
        m = _NAME.search(p)
        if m:
            out.append((int(m.group(1)), p))
    return out


def latest_checkpoint(run_dir: str) -> Optional[str]:
    found = sorted(_list(checkpoint_dir(run_dir)))
    return found[-1][1] if found else None


def how_to_go_on(run_dir: str) -> str:
    """What a user can do after this run failed: resume from its newest checkpoint, or start again without one."""
    found = sorted(_list(checkpoint_dir(run_dir)))
    if not found:
        return "fine-tune again (this run has no checkpoint to resume from yet)."
    return f"resume the run: it continues from its checkpoint of step {found[-1][0]}, which is intact."


def load_latest_checkpoint(run_dir: str) -> Tuple[Optional[str], Optional[dict]]:
    """The newest checkpoint that reads back, as (path, state); (None, None) without one. An unreadable newest file
    (which atomic writes should make impossible, but a full disk or a foreign file can do) falls back to the one
    before it; if none reads, the newest one's error is raised."""
    found = sorted(_list(checkpoint_dir(run_dir)), reverse=True)
    first_error = None
    for _, path in found:
        try:
            return path, load_checkpoint(path)
        except TrainerError as e:
            first_error = first_error or e
            log(f"{e.message.split('. ')[0]}; trying an older checkpoint")
    if first_error is not None:
        raise first_error
    return None, None


def load_checkpoint(path: str) -> dict:
    kwargs = {"map_location": "cpu"}
    # Checkpoints hold only tensors and plain values, so the safe loader suffices where it can read floats
    # (PyTorch 2.x; 1.13's weights_only unpickler rejects the floats in an optimizer state).
    if "weights_only" in inspect.signature(torch.load).parameters:
        kwargs["weights_only"] = int(torch.__version__.split(".")[0]) >= 2
    try:
        ck = torch.load(path, **kwargs)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means the same thing to the user
        raise TrainerError("bad_args", f"The checkpoint {path} could not be read ({e}). Start a new run instead of "
                           "resuming.") from e
    if not isinstance(ck, dict) or ck.get("version") != 1:
        raise TrainerError("bad_args", f"{path} is not a RepoTune checkpoint. Start a new run instead of resuming.")
    rng = ck.get("rng", {})
    if "torch" in rng:
        torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    return ck
