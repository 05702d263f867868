"""The trainer's stdout protocol: one JSON object per line, shapes fixed by src/protocol/trainer.ts.

Nothing else in the package writes to stdout; human-readable logs go to stderr.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from typing import Any


#: Version of this protocol, in every event as "v". Bump it when a field changes meaning or goes away.
PROTOCOL_VERSION = 1

_run_id: "str | None" = None


def set_run_id(run_id: "str | None") -> None:
    """Every later event carries this id as "run_id", so a reader can tell whose run a line belongs to."""
    global _run_id
    _run_id = run_id


class TrainerError(Exception):
    """A failure the user can act on. `code` is one of TrainerErrorCode in src/protocol/trainer.ts."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def _clean(v: Any) -> Any:
    # JSON has no NaN/Infinity; a diverged loss is reported as a very large finite number rather than breaking the line.
    if isinstance(v, float) and not math.isfinite(v):
        return 1e30 if (v > 0 or math.isnan(v)) else -1e30
    return v


def worker_rank() -> int:
    """This process's rank under torchrun (RANK, with WORLD_SIZE > 1); 0 otherwise."""
    try:
        return int(os.environ.get("RANK", "0") or 0) if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1 else 0
    except ValueError:
        return 0


def emit(event: str, **fields: Any) -> None:
    """One event on stdout, from rank 0 only: under torchrun the other ranks stay silent on stdout (their `error`
    events go to stderr, so a failure on another rank still leaves a trace in the log)."""
    line = {"event": event, "time": time.time(), "v": PROTOCOL_VERSION,
            **({"run_id": _run_id} if _run_id is not None else {}), **{k: _clean(v) for k, v in fields.items()}}
    rank = worker_rank()
    if rank:
        if event == "error":
            log(json.dumps(line), always=True)
        return
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


def log(message: str, always: bool = False) -> None:
    """A human log line on stderr; under torchrun only rank 0's, unless `always` (then prefixed with the rank)."""
    rank = worker_rank()
    if rank and not always:
        return
    sys.stderr.write((f"[rank {rank}] " if rank else "") + message.rstrip("\n") + "\n")
    sys.stderr.flush()
