"""The trainer's stdout protocol: one JSON object per line, shapes fixed by src/protocol/trainer.ts.

Nothing else in the package writes to stdout; human-readable logs go to stderr.
"""
from __future__ import annotations

import json
import math
import sys
import time
from typing import Any


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


def emit(event: str, **fields: Any) -> None:
    line = {"event": event, "time": time.time(), **{k: _clean(v) for k, v in fields.items()}}
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


def log(message: str) -> None:
    sys.stderr.write(message.rstrip("\n") + "\n")
    sys.stderr.flush()
