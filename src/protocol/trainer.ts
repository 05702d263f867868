// The one schema module for the trainer boundary: JSON lines the Python trainer prints on stdout.
// Nothing else parses trainer output. Unknown or malformed lines are reported, never fatal.
import { z } from "zod";

// Every event carries the protocol version ("v", see trainer/repotune_trainer/events.py) and the run's id.
const base = { time: z.number().optional(), v: z.literal(1).optional(), run_id: z.string().optional() };

export const TrainerStart = z.object({
  ...base,
  event: z.literal("start"),
  device: z.string(),
  torch_version: z.string(),
  arch: z.string(),
  n_layer: z.number().int(),
  n_embd: z.number().int(),
  vocab_size: z.number().int(),
  weight_types: z.array(z.string()),
  trainable_params: z.number().int(),
  total_params: z.number().int(),
  steps: z.number().int(),
  batch: z.number().int(),
  seq_len: z.number().int(),
  train_sequences: z.number().int(),
  val_sequences: z.number().int(),
  resumed_from_step: z.number().int().nullable().optional(),
  /** Micro-batches per step (--grad-accum): a step trains on batch x grad_accum sequences. */
  grad_accum: z.number().int().optional(),
  /** --base-weights: as asked (`auto` decides by memory), the form full-precision (F32/F16/BF16) matrices are trained
   * in (`keep` = as stored, else a Q8_0 / Q4_0 copy made on the device), and how many matrices were quantized. */
  base_weights: z
    .object({
      requested: z.enum(["auto", "keep", "q8_0", "q4_0"]),
      used: z.enum(["keep", "q8_0", "q4_0"]),
      quantized: z.number().int(),
    })
    .optional(),
  /** The trainer's peak-memory estimate for this run on its device (bytes, beyond what the process already held). */
  memory_estimate: z.number().optional(),
  /** Free memory of the device when the run started (bytes); null when it cannot be told. */
  memory_free: z.number().nullable().optional(),
  /** --init-adapter: the adapter this run starts from; the step-0 validation loss (val_loss_base) is then base + it. */
  init_adapter: z.string().optional(),
});

export const TrainerStep = z.object({
  ...base,
  event: z.literal("step"),
  step: z.number().int(),
  steps: z.number().int(),
  loss: z.number(),
  lr: z.number(),
  tokens_per_s: z.number(),
  elapsed_s: z.number(),
});

export const TrainerEval = z.object({
  ...base,
  event: z.literal("eval"),
  step: z.number().int(),
  val_loss: z.number(),
});

export const TrainerCheckpoint = z.object({
  ...base,
  event: z.literal("checkpoint"),
  step: z.number().int(),
  path: z.string(),
});

export const TrainerDone = z.object({
  ...base,
  event: z.literal("done"),
  step: z.number().int(),
  adapter: z.string(),
  val_loss_base: z.number().nullable(),
  val_loss: z.number().nullable(),
  /** The step whose state the adapter holds (the evaluation with the lowest validation loss). */
  adapter_step: z.number().int().optional(),
  /** True when training ended before `steps` because the validation loss stopped improving (--patience). */
  early_stopped: z.boolean().optional(),
  /** Peak device memory of the run (CUDA: torch.cuda.max_memory_allocated); absent on other devices. */
  peak_memory_bytes: z.number().int().nonnegative().optional(),
});

export const TrainerStopped = z.object({
  ...base,
  event: z.literal("stopped"),
  step: z.number().int(),
  checkpoint: z.string().nullable(),
});

export const TrainerErrorCode = z.enum(["bad_model", "unsupported_arch", "bad_data", "bad_args", "out_of_memory", "disk_full", "internal"]);

export const TrainerError = z.object({
  ...base,
  event: z.literal("error"),
  code: TrainerErrorCode,
  message: z.string(),
});

export const TrainerEvent = z.discriminatedUnion("event", [
  TrainerStart, TrainerStep, TrainerEval, TrainerCheckpoint, TrainerDone, TrainerStopped, TrainerError,
]);
export type TrainerEvent = z.infer<typeof TrainerEvent>;

export type ParsedLine = { ok: true; event: TrainerEvent } | { ok: false; line: string; reason: string };

export function parseTrainerLine(line: string): ParsedLine {
  let json: unknown;
  try {
    json = JSON.parse(line);
  } catch {
    return { ok: false, line, reason: "not JSON" };
  }
  const r = TrainerEvent.safeParse(json);
  if (!r.success) return { ok: false, line, reason: r.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ") };
  return { ok: true, event: r.data };
}

/** `python -m repotune_trainer.memory ...` prints exactly one line of this shape: bytes, by part and in total. */
export const TrainerMemoryEstimate = z
  .object({ device: z.string(), total: z.number().nonnegative() })
  .catchall(z.union([z.number(), z.string()]));
export type TrainerMemoryEstimate = z.infer<typeof TrainerMemoryEstimate>;

/** `python -m repotune_trainer selftest` prints exactly one line of this shape. */
export const TrainerSelftest = z.object({
  ok: z.boolean(),
  python: z.string(),
  torch: z.string().nullable(),
  numpy: z.string().nullable(),
  device: z.string().nullable(),
  /** What the device is and its memory in bytes (total, and free now), when the selftest got that far. */
  device_name: z.string().nullable().optional(),
  memory_total: z.number().nullable().optional(),
  memory_free: z.number().nullable().optional(),
  /** Measured dense matmul throughput on that device (FLOP/s; bf16 on CUDA, float32 elsewhere), for time estimates. */
  matmul_flops: z.number().positive().nullable().optional(),
  message: z.string().optional(),
});
export type TrainerSelftest = z.infer<typeof TrainerSelftest>;
