"""Device choice and CPU threading, feature-detected so the same code runs on PyTorch 1.13 (CPU) and 2.x (CUDA/MPS)."""
from __future__ import annotations

import os
from typing import Optional

import torch

from .events import TrainerError


def mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def pick_device(requested: str = "auto") -> str:
    if requested == "auto":
        if torch.cuda.is_available():
            return "cuda"
        return "mps" if mps_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise TrainerError("bad_args", "--device cuda was requested but PyTorch sees no CUDA GPU. Install a CUDA build "
                           "of PyTorch or use --device auto.")
    if requested == "mps" and not mps_available():
        raise TrainerError("bad_args", "--device mps was requested but this PyTorch has no Apple MPS support. Use "
                           "--device auto (the repotune.training.device setting) or cpu.")
    return requested


def free_memory(device: str) -> Optional[int]:
    """Bytes this process can still allocate on `device`, or None when that cannot be told.

    cuda: the driver's free memory on the current GPU (torch.cuda.mem_get_info; the CUDA context is already counted).
    mps: the recommended maximum working set of the Metal device less what the driver has allocated (PyTorch 2.3+).
    cpu: MemAvailable from /proc/meminfo (free plus reclaimable page cache; elsewhere the free pages sysconf reports),
    capped by the container's cgroup memory limit, which MemAvailable does not see."""
    if device == "cuda":
        try:
            return int(torch.cuda.mem_get_info()[0])
        except Exception:  # noqa: BLE001 - no CUDA build raises AssertionError, a broken driver RuntimeError
            return None
    if device == "mps":
        mps = getattr(torch, "mps", None)
        limit = getattr(mps, "recommended_max_memory", None)
        if limit is None:
            return None
        used = getattr(mps, "driver_allocated_memory", lambda: 0)
        return max(0, int(limit()) - int(used()))
    avail = system_memory("MemAvailable", "SC_AVPHYS_PAGES")
    room = _cgroup_room()
    if room is not None:
        avail = room if avail is None else min(avail, room)
    return avail


def system_memory(meminfo_key: str, sysconf_pages: str) -> Optional[int]:
    """RAM in bytes from /proc/meminfo (`MemTotal`, `MemAvailable`), else from the pages sysconf counts (other
    Unixes); None where neither is known."""
    found = _meminfo(meminfo_key)
    if found is not None:
        return found
    try:
        return os.sysconf(sysconf_pages) * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _meminfo(key: str) -> Optional[int]:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


# Per cgroup version: where the hierarchy is mounted, and the limit, usage and stat files and reclaimable-cache key.
_CGROUP_V2 = ("/sys/fs/cgroup", "memory.max", "memory.current", "inactive_file")
_CGROUP_V1 = ("/sys/fs/cgroup/memory", "memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file")


def _cgroup_room() -> Optional[int]:
    """The least (limit - usage + inactive page cache) over this process's memory cgroup and its ancestors (a
    container's limit, which MemAvailable does not show); None when none of them has a limit."""
    try:
        with open("/proc/self/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    rooms = []
    for line in lines:
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if controllers == "":
            layout = _CGROUP_V2
        elif "memory" in controllers.split(","):
            layout = _CGROUP_V1
        else:
            continue
        parts = [p for p in path.split("/") if p]
        for depth in range(len(parts), -1, -1):
            room = _room(os.path.join(layout[0], *parts[:depth]), *layout[1:])
            if room is not None:
                rooms.append(room)
    return min(rooms) if rooms else None


def _room(folder: str, limit_file: str, usage_file: str, cache_key: str) -> Optional[int]:
    try:
        with open(os.path.join(folder, limit_file)) as f:
            raw = f.read().strip()
        if raw == "max" or int(raw) >= 1 << 60:     # unlimited (v1 writes a huge number)
            return None
        with open(os.path.join(folder, usage_file)) as f:
            usage = int(f.read().strip())
    except (OSError, ValueError):
        return None
    reclaimable = 0
    try:
        with open(os.path.join(folder, "memory.stat")) as f:
            for line in f:
                name, _, value = line.partition(" ")
                if name == cache_key:
                    reclaimable = int(value)
    except (OSError, ValueError):
        pass
    return max(0, int(raw) - usage + reclaimable)


def set_cpu_threads(threads: int | None, procs_on_host: int = 1) -> int:
    """On small CPUs one PyTorch thread is fastest: the BLAS library starts its own threads, and two layers of
    threads on two cores ran a training step 2x slower here. Larger machines get half their cores (shared among the
    `procs_on_host` processes that torchrun started on this machine)."""
    if threads is None:
        cores = (os.cpu_count() or 1) // max(1, procs_on_host)
        threads = 1 if cores <= 4 else max(1, cores // 2)
    torch.set_num_threads(max(1, threads))
    return torch.get_num_threads()


class Dist:
    """Data parallelism under torchrun (`python -m torch.distributed.run`): one process per GPU (or per CPU share),
    found through the environment torchrun sets (WORLD_SIZE, RANK, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR/PORT).
    Without torchrun, or with WORLD_SIZE 1, `enabled` is False and nothing here does anything.

    Gradients are summed with explicit all_reduce calls (train.py) rather than DistributedDataParallel: the model's
    entry point is `LoraModel.loss`, not `forward`; ranks may hold an unequal number of micro-batches (even none)
    in a step, which DDP's per-forward hooks would hang on; and the trainable LoRA tensors are small, so one
    flattened all_reduce per step after the last micro-batch costs little against the overlap DDP would give."""

    def __init__(self):
        self.world = int(os.environ.get("WORLD_SIZE", "1") or 1)
        self.rank = int(os.environ.get("RANK", "0") or 0)
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0") or 0)
        self.local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(self.world)) or 1)
        self.enabled = self.world > 1
        self.is_main = self.rank == 0
        self.backend = None

    def init(self, device: str) -> None:
        """Join the process group: nccl on CUDA (each process on GPU LOCAL_RANK), gloo on CPU. MPS has no
        collective backend and is refused."""
        if not self.enabled:
            return
        import torch.distributed as dist
        if not dist.is_available():
            raise TrainerError("bad_args", "This PyTorch build has no torch.distributed; run without torchrun.")
        if device == "mps":
            raise TrainerError("bad_args", "Multi-process training (torchrun) is not supported on Apple MPS; use "
                               "--device cpu or one process.")
        if device == "cuda":
            if self.local_rank >= torch.cuda.device_count():
                raise TrainerError("bad_args", f"LOCAL_RANK {self.local_rank} but only {torch.cuda.device_count()} "
                                   "CUDA GPUs are visible: use --nproc-per-node at most the GPU count.")
            torch.cuda.set_device(self.local_rank)   # so "cuda" means this process's GPU everywhere
            self.backend = "nccl"
        else:
            self.backend = "gloo"
        if not dist.is_initialized():
            dist.init_process_group(backend=self.backend)

    def all_sum(self, t: torch.Tensor) -> torch.Tensor:
        """In-place sum over ranks (identity without torchrun)."""
        if self.enabled:
            import torch.distributed as dist
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    def broadcast_object(self, obj):
        """rank 0's `obj` on every rank (identity without torchrun)."""
        if not self.enabled:
            return obj
        import torch.distributed as dist
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def share(self, n: int):
        """This rank's contiguous part of range(n) (sizes differ by at most one; possibly empty)."""
        lo = n * self.rank // self.world
        hi = n * (self.rank + 1) // self.world
        return lo, hi

    def close(self) -> None:
        if self.enabled:
            import torch.distributed as dist
            if dist.is_initialized():
                dist.destroy_process_group()
