"""Will a run fit in memory? The check before the model is loaded, the choice behind `--base-weights auto`, and the
out_of_memory error that names settings that fit, before training and after a real allocation failure.

Every decision compares memory.estimate_shape (what `python -m repotune_trainer.memory` prints) with the free memory
of the training device (device.free_memory). The estimate is taken without the process's own baseline (runtime=0):
free memory is measured in a process that already holds it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Dict, Iterator, List, Optional, Tuple

from .events import TrainerError
from .memory import ModelShape, estimate_shape
from .gguf import type_name
from .quants import BASE_WEIGHT_MODES, base_weight_type

# The estimate must fit in this share of the free memory: the CUDA caching allocator's fragmentation, and a CPU
# process's RSS creeping ~10% above the estimate over a long run (memory.py).
HEADROOM = 0.9
# After a real out-of-memory failure the estimate of the failed settings was too low, so a suggestion must need at
# most this share of it (and fit in what is free then).
AFTER_FAILURE = 0.8
MIN_SEQ_LEN = 128          # shorter FIM examples lose most of the surrounding code
MIN_RANK = 4


@dataclass(frozen=True)
class Settings:
    batch: int
    grad_accum: int
    grad_checkpoint: bool
    seq_len: int
    rank: int
    base_weights: str      # keep | q8_0 | q4_0 (what auto resolved to)

    def change_from(self, old: "Settings", auto: bool = False) -> Tuple[str, str]:
        """(words, trainer flags) for what differs from `old`, e.g. ("batch 2 with grad-accum 4 and gradient
        checkpointing", "--batch 2 --grad-accum 4 --grad-checkpoint"). `auto`: the base-weight form is
        --base-weights auto's to pick, so it is mentioned without a flag."""
        words, flags = [], []
        if (self.batch, self.grad_accum) != (old.batch, old.grad_accum):
            words.append(f"batch {self.batch}" + (f" with grad-accum {self.grad_accum}" if self.grad_accum > 1 else ""))
            flags += [f"--batch {self.batch}", f"--grad-accum {self.grad_accum}"]
        if self.grad_checkpoint and not old.grad_checkpoint:
            words.append("gradient checkpointing")
            flags.append("--grad-checkpoint")
        if self.seq_len != old.seq_len:
            words.append(f"sequence length {self.seq_len} (the repotune.training.seqLen setting; the dataset is "
                         "prepared again)")
        if self.rank != old.rank:
            words.append(f"rank {self.rank}")
            flags.append(f"--rank {self.rank}")
        if self.base_weights != old.base_weights:
            words.append(f"a {self.base_weights.upper()} copy of the base weights"
                         + (" (which --base-weights auto then picks)" if auto else ""))
            if not auto:
                flags.append(f"--base-weights {self.base_weights}")
        text = words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]
        return text, " ".join(flags)


def fmt_bytes(n: float) -> str:
    for unit, size in (("TiB", 2 ** 40), ("GiB", 2 ** 30), ("MiB", 2 ** 20)):
        if n >= size * 0.95:
            return f"{n / size:.1f} {unit}"
    return f"{n / 2 ** 10:.0f} KiB"


def ladder(req: Settings) -> Iterator[Settings]:
    """Settings from the requested ones down to the smallest sensible ones, each a little cheaper: batch halved with
    grad-accum raised to keep the sequences per step, then the same with gradient checkpointing, then (at batch 1 with
    checkpointing) shorter sequences down to MIN_SEQ_LEN, then lower ranks down to MIN_RANK."""
    per_step = req.batch * req.grad_accum
    batches, b = [], req.batch
    while True:
        batches.append(b)
        if b == 1:
            break
        b = max(1, b // 2)
    for ckpt in ([True] if req.grad_checkpoint else [False, True]):
        for b in batches:
            yield replace(req, batch=b, grad_accum=math.ceil(per_step / b), grad_checkpoint=ckpt)
    small = replace(req, batch=1, grad_accum=per_step, grad_checkpoint=True)
    while small.seq_len > MIN_SEQ_LEN:
        small = replace(small, seq_len=max(MIN_SEQ_LEN, small.seq_len // 2))
        yield small
    while small.rank > MIN_RANK:
        small = replace(small, rank=max(MIN_RANK, small.rank // 2))
        yield small


class Planner:
    """Estimates for one model on one device (cached), and the searches over settings and base-weight forms."""

    def __init__(self, shape: ModelShape, device: str, requested_base: str):
        self.shape, self.device, self.requested_base = shape, device, requested_base
        self._cache: Dict[Settings, Dict[str, object]] = {}
        # Forms that change something for this file (an all-quantized file has only "keep"), least compact first.
        self.forms = [m for m in BASE_WEIGHT_MODES
                      if m == "keep" or any(base_weight_type(n, t, s, m, shape.tied) for n, t, s, _ in shape.tensors)]

    def estimate(self, s: Settings) -> Dict[str, object]:
        if s not in self._cache:
            self._cache[s] = estimate_shape(self.shape, s.seq_len, s.batch, s.rank, self.device, s.base_weights,
                                            s.grad_checkpoint, runtime=0)
        return self._cache[s]

    def need(self, s: Settings) -> int:
        return int(self.estimate(s)["total"])

    def passes(self, used: str) -> List[List[str]]:
        """The base-weight forms to try on each rung, pass by pass. auto: every form at least as compact as `used`
        on each rung (auto would pick them itself); an explicit form: that form on every rung first, then the more
        compact ones (which the user has to ask for)."""
        compact = [m for m in self.forms if self.forms.index(m) >= self.forms.index(used)] if used in self.forms \
            else [used]
        if self.requested_base == "auto":
            return [compact]
        return [[used], compact[1:]] if len(compact) > 1 else [[used]]

    def first_fit(self, req: Settings, budget: float, skip_first: bool = False) -> Optional[Settings]:
        for forms in self.passes(req.base_weights):
            for i, rung in enumerate(ladder(req)):
                if skip_first and i == 0:
                    continue
                for form in forms:
                    s = replace(rung, base_weights=form)
                    if self.need(s) <= budget:
                        return s
        return None

    def smallest(self, req: Settings) -> Settings:
        *_, last = ladder(req)
        return replace(last, base_weights=self.forms[-1])


@dataclass
class Plan:
    """What the preflight decided; kept for the out-of-memory message of a failure later in the run."""
    planner: Planner
    settings: Settings          # the run's settings, base_weights resolved
    free: Optional[int]         # free device memory when the run started (bytes), None if unknown
    need: int                   # the estimate for `settings`

    @property
    def device(self) -> str:
        return self.planner.device

    def describe(self) -> Optional[str]:
        """A sentence for the log on what was done with a full-precision base, or None when there is none."""
        p, used = self.planner, self.settings.base_weights
        if len(p.forms) == 1:
            return None
        kept = replace(self.settings, base_weights="keep")
        types = "/".join(sorted({type_name(t) for n, t, s, _ in p.shape.tensors
                                 if base_weight_type(n, t, s, "q8_0", p.shape.tied)}))
        base = f"The {types} base ({fmt_bytes(p.estimate(kept)['weights'])}"
        if used == "keep":
            if p.requested_base != "auto":
                return None
            room = f"{fmt_bytes(self.free)} free" if self.free is not None else "unknown free memory"
            return f"{base}; the run needs about {fmt_bytes(self.need)}) fits in {room}: training on it as stored."
        copy = (f"a {used.upper()} copy of its matrices ({fmt_bytes(p.estimate(self.settings)['weights'])}; "
                f"the run needs about {fmt_bytes(self.need)})")
        if p.requested_base != "auto":
            return f"Training on {copy}, as --base-weights {used} asks."
        if self.free is None:
            return f"Training on {copy}."
        return (f"{base}; the run needs about {fmt_bytes(p.need(kept))}) does not fit in the {fmt_bytes(self.free)} "
                f"free on {_device_words(self.device)}; training on {copy}.")


class Watch:
    """Where the run is, for an out-of-memory failure's message: the preflight's plan, once made, and the phase."""

    def __init__(self):
        self.plan: Optional[Plan] = None
        self.phase = "preparing the run"


def preflight(shape: ModelShape, device: str, requested: Settings, free: Optional[int], check: bool = True) -> Plan:
    """Resolve `--base-weights auto` and refuse (out_of_memory) settings whose estimate does not fit in `free`.

    auto keeps the file's weights when the run fits, else takes the first of Q8_0, Q4_0 that fits. With `check`
    False (--no-memory-check) nothing is refused; auto still decides by the estimate. With `free` unknown, auto
    keeps the weights and nothing is checked."""
    planner = Planner(shape, device, requested.base_weights)
    if requested.base_weights == "auto":
        chosen = replace(requested, base_weights="keep")
        if free is not None:
            fitting = [f for f in planner.forms if planner.need(replace(requested, base_weights=f)) <= HEADROOM * free]
            chosen = replace(requested, base_weights=(fitting[0] if fitting else planner.forms[-1]))
    else:
        chosen = requested
    plan = Plan(planner, chosen, free, planner.need(chosen))
    if not check or free is None or plan.need <= HEADROOM * free:
        return plan
    where = f"{fmt_bytes(free)} free on {_device_words(device)}"
    auto = requested.base_weights == "auto"
    # auto tries every form on each rung, from the file's own weights on.
    asked = replace(requested, base_weights="keep") if auto else requested
    suggestion = planner.first_fit(asked, HEADROOM * free)
    if suggestion is None:
        raise TrainerError("out_of_memory", _too_big(planner, asked, where))
    words, flags = suggestion.change_from(asked, auto)
    form = "" if chosen.base_weights == "keep" else f", {_form_words(chosen.base_weights)}"
    raise TrainerError("out_of_memory", (
        f"This run needs about {fmt_bytes(plan.need)} (the trainer's estimate for batch {asked.batch}, sequence "
        f"length {asked.seq_len}, rank {asked.rank}{form}) but there is only {where}. Try {words}"
        f"{f' ({flags})' if flags else ''}: about {fmt_bytes(planner.need(suggestion))}. "
        "Or close other programs that use this memory. (--no-memory-check skips this check.)"))


def _too_big(planner: Planner, req: Settings, where: str) -> str:
    low = planner.smallest(req)
    return (f"This model does not fit for training: even the smallest settings (batch 1, gradient checkpointing, "
            f"sequence length {low.seq_len}, rank {low.rank}, {_form_words(low.base_weights)}) need about "
            f"{fmt_bytes(planner.need(low))}, and there is only {where}. Choose a smaller model in the "
            "repotune.modelPath setting (or a more quantized GGUF of it), or train on a device with more memory.")


def _form_words(form: str) -> str:
    return "the base weights as stored" if form == "keep" else f"a {form.upper()} copy of the base weights"


def _device_words(device: str) -> str:
    return {"cuda": "the GPU", "mps": "the Apple GPU"}.get(device, "this machine (RAM)")


def is_out_of_memory(e: BaseException) -> bool:
    """A real allocation failure: CUDA's OutOfMemoryError, PyTorch's RuntimeError for any device ("out of memory",
    the CPU allocator's "can't allocate memory"), or Python's MemoryError (numpy, the interpreter)."""
    if isinstance(e, MemoryError):
        return True
    try:
        import torch
        oom = getattr(torch.cuda, "OutOfMemoryError", None)
        if oom is not None and isinstance(e, oom):
            return True
    except ImportError:  # pragma: no cover
        pass
    text = str(e).lower()
    return isinstance(e, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


LOADING = "loading the model"


def after_failure(e: BaseException, plan: Optional[Plan], free: Optional[int], phase: str) -> TrainerError:
    """The out_of_memory error for a real allocation failure during `phase` (LOADING, "training"), with the first
    settings on the ladder that need at most AFTER_FAILURE of the failed estimate and fit in `free` (measured after
    the failed run's memory was released). While loading, only the weights were allocated, so only a more compact
    form of them can help: the first one there is, else the model is too big."""
    first_line = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
    who = _device_words(plan.device) if plan is not None else "the device"
    happened = f"{who[0].upper()}{who[1:]} ran out of memory while {phase} ({type(e).__name__}: {first_line})."
    if plan is None:
        return TrainerError("out_of_memory", f"{happened} Lower the batch size or the sequence length "
                            "(repotune.training.seqLen), or turn on gradient checkpointing (--grad-checkpoint).")
    budget = AFTER_FAILURE * plan.need
    if free is not None:
        budget = min(budget, HEADROOM * free)
    forms = plan.planner.forms
    if phase == LOADING:
        used = plan.settings.base_weights
        smaller = forms[forms.index(used) + 1:] if used in forms else []
        suggestion = replace(plan.settings, base_weights=smaller[0]) if smaller else None
    else:
        suggestion = plan.planner.first_fit(plan.settings, budget, skip_first=True)
    if suggestion is None:
        where = f"{fmt_bytes(free)} free on {_device_words(plan.device)}" if free is not None else \
            f"less than the {fmt_bytes(plan.need)} these settings were estimated to need"
        return TrainerError("out_of_memory", f"{happened} {_too_big(plan.planner, plan.settings, where)}")
    words, flags = suggestion.change_from(plan.settings, plan.planner.requested_base == "auto")
    return TrainerError("out_of_memory", (
        f"{happened} These settings were estimated at {fmt_bytes(plan.need)}; try {words}"
        f"{f' ({flags})' if flags else ''}: about {fmt_bytes(plan.planner.need(suggestion))}. Or close other "
        "programs that use this memory. The adapter and checkpoints written before are unchanged."))
