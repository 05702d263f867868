"""Durable writes (temporary file, fsync, rename) and what a full disk means to the user.

A checkpoint or adapter is written whole or not at all: readers see the old file or the complete new one. When the
disk fills up, the half-written temporary file is removed and the error says which disk, how much is free, and
what to do, instead of a traceback.
"""
from __future__ import annotations

import errno
import os
import shutil
from typing import Callable, Optional

from .events import TrainerError

#: Test hook: each atomic write fails with ENOSPC once it has written this many bytes (a full disk on machines where
#: a small filesystem cannot be mounted). The failure goes through the same code path as a real one.
WRITE_LIMIT_ENV = "REPOTUNE_TEST_WRITE_LIMIT"

_FULL = (errno.ENOSPC, errno.EDQUOT)


class DiskFull(Exception):
    def __init__(self, path: str, cause: OSError):
        super().__init__(f"{path}: {cause}")
        self.path = path
        self.cause = cause


class _Latched:
    """The file as the writer sees it. The first failed write is remembered and later writes are dropped, so that
    the writer finishes normally and the failure is raised afterwards: PyTorch 1.13's zip writer aborts the whole
    process (std::terminate in a destructor) when a write raises in the middle of torch.save."""

    def __init__(self, f, limit: Optional[int]):
        self._f = f
        self._limit = limit
        self.written = 0
        self.failure: Optional[OSError] = None

    def write(self, data) -> int:
        n = memoryview(data).nbytes
        if self.failure is None:
            try:
                if self._limit is not None and self.written + n > self._limit:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC) + f" ({WRITE_LIMIT_ENV})")
                self._f.write(data)
                self.written += n
            except OSError as e:
                self.failure = e
        return n

    def flush(self) -> None:
        if self.failure is None:
            self._f.flush()

    def __getattr__(self, name):
        return getattr(self._f, name)


def _write_limit() -> Optional[int]:
    raw = os.environ.get(WRITE_LIMIT_ENV)
    return int(raw) if raw else None


def write_atomic(path: str, write_body: Callable) -> None:
    """Write through a temporary file in the same folder, fsync it, then rename: readers never see half a file.
    Raises DiskFull (and leaves no temporary file) when the disk or the user's quota is full."""
    folder = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(folder, f".{os.path.basename(path)}.tmp-{os.getpid()}")
    try:
        os.makedirs(folder, exist_ok=True)
        with open(tmp, "wb") as raw:
            out = _Latched(raw, _write_limit())
            write_body(out)
            if out.failure is not None:
                raise out.failure
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(e, OSError) and e.errno in _FULL:
            raise DiskFull(path, e) from e
        raise
    try:
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass  # some filesystems (and Windows) cannot fsync a directory; the rename itself is still atomic


def disk_full_error(e: DiskFull, what: str, needed: Optional[int], then: str) -> TrainerError:
    """The user's version of a full disk: `what` was being written, `then` says how to go on once space is free."""
    folder = os.path.dirname(os.path.abspath(e.path))
    try:
        free = f"{_size(shutil.disk_usage(folder).free)} free there"
    except OSError:
        free = "free space unknown"
    need = f"at least {_size(needed)}" if needed else "space"
    return TrainerError("disk_full", (
        f"The disk is full: the trainer could not write {what} to {folder} ({e.cause.strerror}; {free}). Nothing "
        f"was half-written. Free {need} on that disk, then {then}"))


def _size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"
