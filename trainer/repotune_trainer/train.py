"""`train`: LoRA fine-tuning on a RepoTune token dataset, reporting JSON lines on stdout (events.py).

Read top to bottom: set up (device, model, data, optimizer, maybe resume), evaluate the base model, then for each
step: batch (in --grad-accum micro-batches) -> forward -> loss -> backward -> clip -> update, with evaluations and
checkpoints along the way, and the adapter GGUF at the end. SIGINT/SIGTERM stop cleanly at the next step boundary with
a checkpoint; --patience ends the run early when the validation loss stops improving. A run resumed from a checkpoint
repeats the numbers of an uninterrupted one exactly (tests/test_resume.py): everything a step depends on is either a
pure function of (seed, step) or saved in the checkpoint.

Under torchrun (WORLD_SIZE > 1, device.Dist) the same loop runs data-parallel: every rank builds the same step batch
(batch x grad_accum sequences, as one process would), trains on its contiguous share of it, and the LoRA gradients,
the loss sums and the stop flag are summed across ranks with all_reduce before clipping and the optimizer step, so
all ranks take identical steps and the numbers match a single-process run up to float summation order.
Validation is split the same way and its sums reduced, so every rank makes the same best-state and early-stopping
decisions. Rank 0 alone prints events and writes checkpoints and the adapter.

The adapter written is the evaluated state with the lowest validation loss (the last one when there is no validation
data): a small repository is seen dozens of times in a run, and past that point further steps memorize the training
files and lose on held-out ones.
"""
from __future__ import annotations

import contextlib
import math
import os
import signal
import threading
import time
import traceback

import numpy as np
import torch

from .adapter import read_adapter, write_adapter
from .checkpoint import how_to_go_on, latest_checkpoint, load_latest_checkpoint, save_checkpoint
from .data import Rows, batch_indices, count_targets, load_dataset, to_inputs_targets
from .device import Dist, free_memory, pick_device, set_cpu_threads
from .events import TrainerError, emit, log, set_run_id
from .files import DiskFull, disk_full_error
from .fit import LOADING, Settings, Watch, after_failure, is_out_of_memory, preflight
from .memory import model_shape
from .model import ARCH_MATRICES, LoraModel, model_config, open_model, parse_targets


class StopRequested:
    """Set by SIGINT/SIGTERM, or when the lease runs out; the loop polls it between steps so a stop never leaves
    half-written state."""

    def __init__(self):
        self.signal = None

    def __bool__(self) -> bool:
        return self.signal is not None

    def install(self) -> None:
        def handler(signum, _frame):
            if self.signal is not None:
                raise KeyboardInterrupt  # a second signal means: stop now
            self.signal = signum
            log(f"received {signal.Signals(signum).name}; stopping after the current step", always=True)
        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)

    def watch_lease(self, path: str, timeout_s: float, every_s: float = 2.0) -> None:
        """A trainer started detached outlives the VS Code window that started it, so that a reloaded window can
        attach to it again. That window touches `path` every few seconds; when nobody has for `timeout_s` (VS Code
        was closed), the run stops as on SIGINT: with a checkpoint, and nothing left holding the GPU."""
        def loop():
            while self.signal is None:
                try:
                    age = time.time() - os.stat(path).st_mtime
                except OSError:
                    age = float("inf")  # the lease file was removed: nobody will renew it
                if age > timeout_s:
                    self.signal = "lease"
                    log(f"no window has renewed the lease {path} for {min(age, 1e9):.0f} s; stopping after the "
                        "current step", always=True)
                    return
                time.sleep(every_s)
        threading.Thread(target=loop, name="lease", daemon=True).start()


def lr_at(step: int, steps: int, base_lr: float, warmup: int) -> float:
    """Linear warm-up, then cosine decay to 10% of the base rate."""
    if warmup > 0 and step <= warmup:
        return base_lr * step / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return base_lr * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress))))


def autocast_for(device: str):
    """bf16 autocast on CUDA GPUs that support it; full precision elsewhere (CPU autocast is slow, MPS patchy)."""
    if device == "cuda" and torch.cuda.is_bf16_supported():
        return lambda: torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext


def evaluate(model: LoraModel, val: Rows, batch: int, device: str, autocast, stop: StopRequested,
             max_sequences: int, dist: Dist = None, stop_agreed: list = None, isolate: bool = False):
    """Token-weighted mean validation loss, or None without validation data (or when a stop interrupted it).

    Under torchrun each rank evaluates its share of the sequences and the sums (with the ranks' stop flags, into
    `stop_agreed[0]`) are reduced, so every rank gets the same value; a stop does not interrupt it there (the ranks
    would disagree on how many collectives remain)."""
    if val.shape[0] == 0:
        return None
    val = val[:max_sequences]
    distributed = dist is not None and dist.enabled
    if distributed:
        lo, hi = dist.share(val.shape[0])
        val = val[lo:hi]
    total, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for i in range(0, val.shape[0], batch):
            if stop and not distributed:
                return None
            inputs, targets, segments = to_inputs_targets(val[i:i + batch], device, isolate)
            with autocast():
                loss, n = model.loss(inputs, targets, segments)
            total += float(loss) * n
            count += n
    model.train()
    if distributed:
        sums = dist.all_sum(torch.tensor([total, count, 1.0 if stop else 0.0], dtype=torch.float64, device=device))
        total, count = float(sums[0]), int(sums[1])
        stop_agreed[0] = stop_agreed[0] or bool(sums[2] > 0)
    return total / count if count else None


def _validate_args(a) -> None:
    problems = []
    if a.steps < 1: problems.append("--steps must be at least 1")
    if a.rank < 1: problems.append("--rank must be at least 1")
    if not a.lr > 0: problems.append("--lr must be positive")
    if a.batch < 1: problems.append("--batch must be at least 1")
    if a.eval_every is not None and a.eval_every < 1: problems.append("--eval-every must be at least 1")
    if a.checkpoint_every is not None and a.checkpoint_every < 1:
        problems.append("--checkpoint-every must be at least 1")
    if a.alpha is not None and not a.alpha > 0: problems.append("--alpha must be positive")
    if a.grad_accum < 1: problems.append("--grad-accum must be at least 1")
    if a.patience < 0: problems.append("--patience must be 0 (off) or more")
    dropout = getattr(a, "lora_dropout", 0.0)
    if not 0.0 <= dropout < 1.0: problems.append("--lora-dropout must be at least 0 and below 1")
    if problems:
        raise TrainerError("bad_args", "; ".join(problems) + ".")


def _sum_lora_grads(params, dist: Dist) -> None:
    """All ranks' LoRA gradients summed into every rank's .grad, in one flattened all_reduce."""
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])
    dist.all_sum(flat)
    offset = 0
    for p in params:
        k = p.numel()
        p.grad = flat[offset:offset + k].view_as(p)
        offset += k


def _resume_state(a, dist: Dist):
    """(path, checkpoint) of the newest readable checkpoint; under torchrun rank 0 reads it and sends it to the
    others (so only rank 0 needs the run folder), failures included."""
    if not dist.enabled:
        return load_latest_checkpoint(a.out)
    got = None
    if dist.is_main:
        try:
            got = ("ok", load_latest_checkpoint(a.out))
        except TrainerError as e:
            got = ("error", (e.code, e.message))
    got = dist.broadcast_object(got)
    if got[0] == "error":
        raise TrainerError(*got[1])
    return got[1]


def _memory_plan(a, reader, device: str, seq_len: int, dist: Dist):
    """The preflight (fit.py): --base-weights auto resolved, and an out_of_memory error before anything is loaded when
    the estimate does not fit the free memory. Ranks of one machine share its RAM, so on the CPU each counts on its
    share of it."""
    requested = Settings(a.batch, a.grad_accum, bool(getattr(a, "grad_checkpoint", False)), seq_len, a.rank,
                         getattr(a, "base_weights", "keep"))
    free = free_memory(device)
    if free is not None and device == "cpu" and dist.enabled:
        free //= max(1, dist.local_world)
    plan = preflight(model_shape(reader), device, requested, free, check=not getattr(a, "no_memory_check", False))
    sentence = plan.describe()
    if sentence:
        log(sentence)
    return plan


def train(a, stop: StopRequested, dist: Dist = None, watch: Watch = None) -> int:
    dist = dist or Dist()
    watch = watch or Watch()
    _validate_args(a)
    targets = parse_targets(getattr(a, "targets", None))   # None = every matrix the architecture has
    lora_dropout = float(getattr(a, "lora_dropout", 0.0) or 0.0)
    a.eval_every = a.eval_every or max(1, a.steps // 8)
    a.checkpoint_every = a.checkpoint_every or max(1, a.steps // 4)
    device = pick_device(a.device)
    dist.init(device)
    threads = set_cpu_threads(a.threads, dist.local_world if dist.enabled else 1) if device == "cpu" else None
    torch.manual_seed(a.seed)
    # Model metadata and the dataset first, then the memory check, and only then the weights: a run that cannot fit
    # fails in seconds, before loading gigabytes.
    with open_model(a.model) as reader:
        data = load_dataset(a.data, model_config(reader).n_vocab)
        watch.plan = plan = _memory_plan(a, reader, device, data.seq_len, dist)
        watch.phase = LOADING
        model = LoraModel(reader, rank=a.rank, alpha=a.alpha, targets=targets, device=device, seed=a.seed,
                          lora_dropout=lora_dropout, grad_checkpoint=bool(getattr(a, "grad_checkpoint", False)),
                          base_weights=plan.settings.base_weights)
    # The file is unmapped here (GGUFReader.close): the weights live in the model's own tensors.
    if device == "cuda" and model.quantized_from:
        torch.cuda.empty_cache()   # the full-precision copies quantized away, for other processes and the check
    watch.phase = "training"
    if targets is not None:
        missing = [t for t in targets if t not in ARCH_MATRICES[model.cfg.arch]]
        if not model.lora_names:
            raise TrainerError("bad_args", f"--targets selects only {', '.join(missing)}, which a {model.cfg.arch} "
                               f"model does not have; it has {', '.join(ARCH_MATRICES[model.cfg.arch])}.")
        if missing:
            log(f"--targets: a {model.cfg.arch} model has no {', '.join(missing)}; training the others")
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=a.lr, betas=(0.9, 0.999), weight_decay=0.0)
    warmup = a.warmup if a.warmup is not None else min(50, max(1, a.steps // 20))
    autocast = autocast_for(device)
    log(f"device {device}{f' ({threads} threads)' if threads else ''}, torch {torch.__version__}, "
        f"model {model.cfg.arch} {model.cfg.n_layer} layers x {model.cfg.n_embd}, weights {model.weight_types()}")
    if dist.enabled:
        import socket
        log(f"data-parallel: {dist.world} processes ({dist.backend}), rank 0 on {socket.gethostname()} writes the "
            f"events, checkpoints and adapter; each rank trains on ~{a.batch * a.grad_accum / dist.world:.1f} of the "
            f"{a.batch * a.grad_accum} sequences of a step")

    # Everything that decides the numbers of the steps to come. A resumed run with the same settings continues exactly
    # where the interrupted one was (tests/test_resume.py); other settings are allowed but logged.
    settings = {"batch": a.batch, "grad_accum": a.grad_accum, "seed": a.seed, "lr": a.lr, "steps": a.steps,
                "warmup": warmup, "eval_every": a.eval_every, "patience": a.patience,
                "max_eval_sequences": a.max_eval_sequences,
                "targets": sorted({n.split(".")[2] for n in model.lora_names}), "lora_dropout": lora_dropout,
                "base_weights": plan.settings.base_weights}
    init_adapter = getattr(a, "init_adapter", None)
    if init_adapter and not a.resume:
        _load_init_adapter(model, init_adapter)
    start_step, val_loss_base = 0, None
    best = {"val_loss": None, "step": None, "lora": None}   # the evaluated state with the lowest validation loss
    early = {"bad_evals": 0}   # evaluations since the best one (early stopping)
    if a.resume:
        path, ck = _resume_state(a, dist)
        if path is None:
            log(f"--resume: no checkpoint in {a.out}/checkpoints, starting from step 0")
        else:
            if ck.get("rank") != a.rank or ck.get("model_size") != os.path.getsize(a.model):
                raise TrainerError("bad_args", f"The checkpoint {path} was made with another model or LoRA rank; "
                                   "start a new run instead of resuming.")
            if set(ck["lora"]) != set(model.lora_state()):
                raise TrainerError("bad_args", f"The checkpoint {path} was made with other LoRA targets (--targets); "
                                   "start a new run instead of resuming, or resume with the same targets.")
            model.load_lora_state(ck["lora"])
            opt.load_state_dict(ck["optimizer"])
            start_step, val_loss_base = int(ck["step"]), ck.get("val_loss_base")
            best.update(ck.get("best") or {})
            early.update(ck.get("early_stop") or {})
            changed = [f"{k} {v!r} -> {settings[k]!r}" for k, v in (ck.get("settings") or {}).items()
                       if k in settings and settings[k] != v]
            if changed:
                log("resuming with other settings than the checkpoint's (" + ", ".join(changed) + "): the run will "
                    "not repeat the numbers an uninterrupted run would have given")
            log(f"resumed from {path} (step {start_step})")

    emit("start", device=device, torch_version=torch.__version__, arch=model.cfg.arch, n_layer=model.cfg.n_layer,
         n_embd=model.cfg.n_embd, vocab_size=model.cfg.n_vocab, weight_types=model.weight_types(),
         trainable_params=model.trainable_params(), total_params=model.total_params(), steps=a.steps,
         batch=a.batch, seq_len=data.seq_len, train_sequences=int(data.train.shape[0]),
         val_sequences=int(data.val.shape[0]), resumed_from_step=start_step if a.resume and start_step else None,
         grad_accum=a.grad_accum,
         base_weights={"requested": getattr(a, "base_weights", "keep"), "used": plan.settings.base_weights,
                       "quantized": len(model.quantized_from)},
         memory_estimate=plan.need, memory_free=plan.free,
         **({"init_adapter": init_adapter} if init_adapter else {}))

    # Under torchrun the stop decision must be the same on every rank (a signal may reach only one): it is the
    # stop flags summed in the last all_reduce. Without torchrun it is the local flag.
    stop_agreed = [False]

    def stopping() -> bool:
        return stop_agreed[0] if dist.enabled else bool(stop)

    def run_eval(step: int):
        v = evaluate(model, data.val, a.batch, device, autocast, stop, a.max_eval_sequences, dist, stop_agreed,
                     a.isolate_examples)
        if v is not None:
            emit("eval", step=step, val_loss=v)
            if step > 0:
                if best["val_loss"] is None or v < best["val_loss"]:
                    best.update(val_loss=v, step=step, lora=model.lora_state())
                    early["bad_evals"] = 0
                else:
                    early["bad_evals"] += 1
        return v

    def patience_ran_out() -> bool:
        return a.patience > 0 and early["bad_evals"] >= a.patience

    def checkpoint(step: int):
        if not dist.is_main:
            return None
        path = save_checkpoint(a.out, step, {"lora": model.lora_state(), "optimizer": opt.state_dict(),
                                             "val_loss_base": val_loss_base, "best": best, "rank": a.rank,
                                             "alpha": model.alpha, "model_size": os.path.getsize(a.model),
                                             "seed": a.seed, "early_stop": dict(early), "settings": settings})
        emit("checkpoint", step=step, path=path)
        return path

    def stopped(step: int) -> int:
        path = checkpoint(step) if step > start_step else latest_checkpoint(a.out)
        emit("stopped", step=step, checkpoint=path)
        return 0

    if start_step == 0:
        # B = 0 at step 0, so this is the base model alone; with --init-adapter it is base + the parent adapter
        val_loss_base = run_eval(0)
    step, trained_tokens, train_time, t_begin = start_step, 0, 0.0, time.time()
    val_loss, early_stopped = None, False
    model.train()
    while step < a.steps:
        if stopping():
            return stopped(step)
        step += 1
        t0 = time.time()
        lr = lr_at(step, a.steps, a.lr, warmup)
        for g in opt.param_groups:
            g["lr"] = lr
        # One step = batch x grad_accum sequences (the same ones a run with that batch and no accumulation takes), in
        # grad_accum micro-batches. Each micro-batch's mean loss is weighted by its share of the step's target tokens,
        # so the summed gradient is that of the token-weighted mean over the whole step, as with one big batch.
        # Under torchrun each rank takes its contiguous share of these rows, in micro-batches of at most --batch, and
        # weights by the step's global token count; the all_reduce below sums the shares' gradients.
        rows = data.train[batch_indices(data.train.shape[0], a.batch * a.grad_accum, step, a.seed)]
        n_step = max(1, count_targets(rows))
        if dist.enabled:
            lo, hi = dist.share(rows.shape[0])
            rows = rows[lo:hi]
        micro = [rows[i:i + a.batch] for i in range(0, rows.shape[0], a.batch)]
        weighted = len(micro) > 1 or dist.enabled
        opt.zero_grad(set_to_none=True)
        if lora_dropout > 0:
            # The dropout masks are a pure function of (seed, step), like the batches, so --resume stays exact.
            torch.manual_seed(a.seed * 1_000_003 + step)
        loss_sum, n_tokens = 0.0, 0
        for part in micro:
            inputs, targets, segments = to_inputs_targets(part, device, a.isolate_examples)
            with autocast():
                loss, n = model.loss(inputs, targets, segments)
            (loss * (n / n_step) if weighted else loss).backward()
            loss_sum += float(loss) * n  # synchronizes the GPU, so the timing below is real
            n_tokens += n
        if dist.enabled:
            _sum_lora_grads(params, dist)
            sums = dist.all_sum(torch.tensor([loss_sum, n_tokens, 1.0 if stop else 0.0], dtype=torch.float64,
                                             device=device))
            loss_sum, n_tokens = float(sums[0]), int(sums[1])
            stop_agreed[0] = stop_agreed[0] or bool(sums[2] > 0)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        loss_value = loss_sum / max(1, n_tokens)
        train_time += time.time() - t0
        trained_tokens += n_tokens
        emit("step", step=step, steps=a.steps, loss=loss_value, lr=lr,
             tokens_per_s=trained_tokens / max(train_time, 1e-9), elapsed_s=time.time() - t_begin)
        if not math.isfinite(loss_value):
            raise TrainerError("internal", f"The training loss became {loss_value} at step {step}. Lower the learning "
                               "rate (repotune.training.learningRate) and train again.")
        if step % a.eval_every == 0 and step < a.steps:
            val_loss = run_eval(step)
            if val_loss is not None and patience_ran_out():
                early_stopped = True
                log(f"early stop at step {step}: the validation loss has not improved for {a.patience} evaluations "
                    f"(best {best['val_loss']:.4f} at step {best['step']})")
                break
        if step % a.checkpoint_every == 0 and step < a.steps:
            checkpoint(step)
    if not early_stopped:
        val_loss = run_eval(step)
    if stopping():
        return stopped(step)
    lora, adapter_step = model.lora_state(), step
    if best["val_loss"] is not None and best["val_loss"] < val_loss:
        log(f"validation loss was lowest at step {best['step']} ({best['val_loss']:.4f} < {val_loss:.4f} at the end): "
            "writing that adapter")
        lora, val_loss, adapter_step = best["lora"], best["val_loss"], best["step"]
    if dist.is_main:
        try:
            write_adapter(a.adapter_out, model.cfg.arch, model.alpha, lora, os.path.basename(a.model))
        except DiskFull as e:
            raise disk_full_error(e, "the adapter", sum(t.numel() * 4 for t in lora.values()),
                                  how_to_go_on(a.out)) from e
    log(f"adapter written to {a.adapter_out}; {trained_tokens / max(train_time, 1e-9):.0f} tokens/s")
    # The CUDA allocator's peak over the whole run (bench/gpu_compare.py compares it with transformers + peft);
    # absent on other devices, which have no such counter.
    peak = {"peak_memory_bytes": int(torch.cuda.max_memory_allocated())} if device == "cuda" else {}
    emit("done", step=step, adapter=a.adapter_out, val_loss_base=val_loss_base, val_loss=val_loss,
         adapter_step=adapter_step, early_stopped=early_stopped, **peak)
    return 0


def _load_init_adapter(model: LoraModel, path: str) -> None:
    """Starts the LoRA pairs from a parent adapter (--init-adapter). It must match this run exactly: the same
    architecture, rank and adapted matrices; alpha follows the run's --alpha (the caller passes the parent's)."""
    if not os.path.isfile(path):
        raise TrainerError("bad_args", f"--init-adapter {path} does not exist; choose an existing adapter file.")
    arch, alpha, rank, state = read_adapter(path)
    ours = model.lora_state()
    differs = []
    if arch != model.cfg.arch:
        differs.append(f"architecture {arch} (this model: {model.cfg.arch})")
    if rank != model.rank:
        differs.append(f"rank {rank} (this run: --rank {model.rank})")
    if set(state) != set(ours):
        extra = sorted({n.split(".")[2] for n in set(state) - set(ours)})
        missing = sorted({n.split(".")[2] for n in set(ours) - set(state)})
        differs.append("LoRA targets" + (f": the adapter also adapts {', '.join(extra)}" if extra else "")
                       + (f": the adapter does not adapt {', '.join(missing)}" if missing else ""))
    elif not differs:
        shapes = [n for n in ours if tuple(state[n].shape) != tuple(ours[n].shape)]
        if shapes:
            differs.append(f"tensor shapes ({shapes[0]}: {tuple(state[shapes[0]].shape)} vs "
                           f"{tuple(ours[shapes[0]].shape)}): it was trained on another base model")
    if differs:
        raise TrainerError("bad_args", f"The adapter {path} cannot be continued by this run: its "
                           + "; ".join(differs) + ". Train with the same model, --rank and --targets as the adapter, "
                           "or fine-tune from scratch without --init-adapter.")
    if alpha and abs(alpha - model.alpha) > 1e-6:
        log(f"--init-adapter: the adapter's alpha is {alpha:g}, this run's {model.alpha:g}; the adapter's effect "
            "changes by their ratio (pass --alpha to keep it)")
    model.load_lora_state(state)
    log(f"starting from adapter {path} (rank {rank}, {len(state) // 2} matrices)")


def _release_memory(e: BaseException) -> None:
    """After an allocation failure: drop the failed run's tensors (the model, optimizer state and activations are
    held by the traceback's frames), so that the error can be built and the free memory measured without them."""
    import gc
    tb = e.__traceback__
    if tb is not None:
        traceback.clear_frames(tb)
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def run_train(a, early_signals=()) -> int:
    set_run_id(a.run_id or os.path.basename(os.path.normpath(a.out)))
    stop = StopRequested()
    stop.install()
    if early_signals:
        stop.signal = early_signals[0]
        log(f"received {signal.Signals(early_signals[0]).name} while starting; stopping at the first step boundary", always=True)
    if getattr(a, "lease_file", None):
        stop.watch_lease(a.lease_file, a.lease_timeout)
    dist = Dist()
    watch = Watch()
    try:
        return train(a, stop, dist, watch)
    except TrainerError as e:
        emit("error", code=e.code, message=e.message)
    except KeyboardInterrupt:
        emit("error", code="internal", message="Training was interrupted twice and stopped without a checkpoint.")
        return 130
    except Exception as e:  # noqa: BLE001 - every failure must reach the extension as an event
        traceback.print_exc()
        if is_out_of_memory(e):
            _release_memory(e)
            err = after_failure(e, watch.plan, free_memory(watch.plan.device) if watch.plan else None, watch.phase)
            emit("error", code=err.code, message=err.message)
        else:
            emit("error", code="internal", message=f"The trainer failed unexpectedly: {type(e).__name__}: {e}. "
                 "The trainer log has the details.")
    finally:
        try:
            dist.close()
        except Exception:  # noqa: BLE001 - a broken process group must not hide the event above
            pass
    return 1
