// The training plan shown before a run starts: from the device, the model's shape and the dataset's size, the
// settings a run should use (base-weight form, LoRA rank, sequence length, micro-batch, gradient accumulation,
// steps) with the predicted peak memory and time. The user confirms or edits it; edited values are kept as given
// and the rest is planned around them.
//
// Memory comes from the trainer's own estimator (trainer/repotune_trainer/memory.py, via src/core/memoryEstimate.ts),
// asked about candidate settings from the most wanted down until one fits, in the same budget the trainer's
// preflight allows (fit.py HEADROOM). Steps follow the dataset step's epochs rule (dataset/report.ts
// recommendedSteps). Time is scaled from a measured run on this device when there is one; otherwise it is worked
// out from the device's matmul throughput, and says so.
import { estimateMemory } from "./memoryEstimate";
import { recommendedSteps } from "./dataset/report";
import type { ModelShape } from "./models/shape";
import { CATALOG, shapeOf } from "./models/catalog";

export type DeviceKind = "cuda" | "rocm" | "mps" | "cpu";

/** A training device as detected (the trainer's selftest and free-memory report), or as recorded in tests. */
export interface DeviceDescription {
  kind: DeviceKind;
  name: string;
  /** The device's memory: a GPU's own, or the RAM for the CPU and Apple's unified memory. */
  totalBytes: number;
  /** What training can take now (the trainer's device.free_memory: free GPU memory, MPS's recommended working set,
   * available RAM); the total is used when unknown. */
  freeBytes?: number | null;
  /** Peak dense matmul throughput at the precision training computes in (bf16 on CUDA/ROCm, float32 on MPS and
   * the CPU), FLOP/s, when known. */
  matmulFlops?: number | null;
}

export type BaseWeights = "keep" | "q8_0" | "q4_0";

export interface EstimateSettings {
  seqLen: number;
  batch: number;
  rank: number;
  baseWeights: BaseWeights;
  gradCheckpoint: boolean;
}

/** Peak bytes of a run, and the base-weight form and checkpointing the estimate was really made for (an estimator
 * that does not know these options answers for the defaults). */
export type Estimator = (s: EstimateSettings) => Promise<{ totalBytes: number; baseWeights: string; gradCheckpoint: boolean }>;

/** A measured run on the same device: what time predictions scale from. */
export interface MeasuredRun {
  device: string;
  trainSeconds: number;
  steps: number;
  /** Tokens in one optimizer step (seqLen x batch x gradient accumulation). */
  tokensPerStep: number;
  /** Parameters of the model it trained (scaled by when the next run's model differs); null when unknown. */
  params: number | null;
}

export interface PlanInput {
  device: DeviceDescription;
  model: ModelShape;
  /** Training tokens in the dataset (from a dataset summary, or estimated from the repository's size). */
  datasetTokens: number;
  estimate: Estimator;
  /** The user's own values: kept as given. */
  fixed?: Partial<{ seqLen: number; rank: number; batch: number; gradAccum: number; steps: number; baseWeights: BaseWeights; gradCheckpoint: boolean }>;
  measured?: MeasuredRun | null;
}

export interface TrainingPlan {
  baseWeights: BaseWeights;
  rank: number;
  alpha: number;
  seqLen: number;
  /** Sequences per forward/backward pass. */
  batch: number;
  gradAccum: number;
  /** Recompute each block's activations in the backward pass (trainer --grad-checkpoint): less memory, about a
   * half more compute. */
  gradCheckpoint: boolean;
  steps: number;
  /** Passes over the training data these steps make. */
  epochs: number;
  /** The trainer's estimate of peak memory for these settings. */
  peakBytes: number;
  /** What the run may use on this device (the same share of free memory the trainer's preflight allows). */
  budgetBytes: number;
  fits: boolean;
  /** Predicted training time (the trainer only: not dataset preparation or evaluation). */
  seconds: number | null;
  timeBasis: string;
  /** Things the user should know (a CPU run's length, a smaller model, settings that do not fit). */
  notes: string[];
}

/** Share of free memory a run may plan to use: the trainer's preflight allows the same (fit.py HEADROOM). */
export const HEADROOM = 0.9;
/** Sequences in one optimizer step: the trainer's default batch (tune.ts DEFAULT_TRAIN_SETTINGS), kept with
 * gradient accumulation when the micro-batch must shrink. */
export const SEQUENCES_PER_STEP = 8;
const MIN_SEQ_LEN = 128;   // fit.py MIN_SEQ_LEN: shorter FIM windows lose most of the surrounding code
const MIN_RANK = 4;        // fit.py MIN_RANK
/**
 * Share of peak matmul throughput a LoRA step reaches when the time is worked out rather than measured. The trainer
 * dequantizes every frozen matrix in each pass, which costs extra memory traffic; a third of peak is the usual figure
 * for small-model fine-tuning in PyTorch. Unmeasured here (no GPU): the first run's measurement replaces it.
 */
const ASSUMED_UTILIZATION = 0.3;

/** The LoRA rank for a dataset: more capacity for more code, little for a small repository that it would overfit. */
export function rankFor(datasetTokens: number): number {
  if (datasetTokens < 200_000) return 8;
  if (datasetTokens < 5_000_000) return 16;
  return 32;
}

function preferredSeqLen(device: DeviceDescription, model: ModelShape): number {
  // On a GPU longer windows show more of each file at little cost per token; on the CPU time grows with every token.
  const wanted = device.kind === "cpu" ? 256 : 512;
  return Math.min(wanted, model.contextLength);
}

/** Forms of the base weights to try, least compact first: only full-precision files can be trained as a copy. */
function baseForms(model: ModelShape): BaseWeights[] {
  return ["F32", "F16", "BF16"].includes(model.weightType) ? ["keep", "q8_0", "q4_0"] : ["keep"];
}

interface Candidate extends EstimateSettings {
  gradAccum: number;
}

interface RunSize {
  steps: number;
  tokensPerStep: number;
  seqLen: number;
  gradCheckpoint: boolean;
}

/**
 * Candidates from the most wanted settings down, cheapest loss first. Within each level the micro-batch is halved
 * (accumulation keeps the step's sequences: only speed changes). The levels: the base weights as stored, then as a
 * Q8_0 copy (almost no precision lost, no time), then both with gradient checkpointing (a half more compute), then
 * a 4-bit copy (some precision) without and with it. fit.py's out-of-memory ladder uses the same kinds of rungs.
 */
function levelCandidates(start: Candidate, forms: BaseWeights[], fixed: NonNullable<PlanInput["fixed"]>): Candidate[] {
  const perStep = start.batch * start.gradAccum;
  const batches: number[] = [];
  for (let b = start.batch; ; b = Math.max(1, Math.floor(b / 2))) {
    batches.push(b);
    if (b === 1 || fixed.batch !== undefined) break;
  }
  const checkpointing = fixed.gradCheckpoint !== undefined ? [fixed.gradCheckpoint] : [false, true];
  const out: Candidate[] = [];
  for (const group of [["keep", "q8_0"], ["q4_0"]] as BaseWeights[][]) {
    for (const gradCheckpoint of checkpointing) {
      for (const baseWeights of group.filter((f) => forms.includes(f))) {
        for (const batch of batches) out.push({ ...start, baseWeights, gradCheckpoint, batch, gradAccum: fixed.gradAccum ?? Math.ceil(perStep / batch) });
      }
    }
  }
  return out;
}

/** Past the cheapest level: shorter sequences, then lower ranks (what the adapter learns), unless the user set them. */
function* shrink(from: Candidate, fixed: NonNullable<PlanInput["fixed"]>): Generator<Candidate> {
  let small = from;
  while (fixed.seqLen === undefined && small.seqLen > MIN_SEQ_LEN) {
    small = { ...small, seqLen: Math.max(MIN_SEQ_LEN, Math.floor(small.seqLen / 2)) };
    yield small;
  }
  while (fixed.rank === undefined && small.rank > MIN_RANK) {
    small = { ...small, rank: Math.max(MIN_RANK, Math.floor(small.rank / 2)) };
    yield small;
  }
}

export async function planTraining(input: PlanInput): Promise<TrainingPlan> {
  const { device, model, fixed = {} } = input;
  const budget = HEADROOM * (device.freeBytes ?? device.totalBytes);
  const forms = fixed.baseWeights !== undefined ? [fixed.baseWeights] : baseForms(model);
  const batch = fixed.batch ?? SEQUENCES_PER_STEP;
  const start: Candidate = {
    seqLen: fixed.seqLen ?? preferredSeqLen(device, model),
    rank: fixed.rank ?? rankFor(input.datasetTokens),
    batch,
    gradAccum: fixed.gradAccum ?? Math.max(1, Math.ceil(SEQUENCES_PER_STEP / batch)),
    baseWeights: forms[0],
    gradCheckpoint: fixed.gradCheckpoint ?? false,
  };
  const notes: string[] = [];
  const cache = new Map<string, number | null>();
  const need = async (c: Candidate): Promise<number | null> => {
    const key = JSON.stringify([c.seqLen, c.batch, c.rank, c.baseWeights, c.gradCheckpoint]);
    if (!cache.has(key)) {
      const e = await input.estimate({ seqLen: c.seqLen, batch: c.batch, rank: c.rank, baseWeights: c.baseWeights, gradCheckpoint: c.gradCheckpoint });
      // An estimator that cannot estimate these options answers for others: they are then not planned with.
      cache.set(key, e.baseWeights === c.baseWeights && e.gradCheckpoint === c.gradCheckpoint ? e.totalBytes : null);
    }
    return cache.get(key)!;
  };

  // The first candidate that fits, and the last one the estimator could estimate (the cheapest known settings,
  // where shrinking starts and what a plan that does not fit shows).
  interface Search { fit: { c: Candidate; n: number } | null; last: { c: Candidate; n: number } | null }
  let unknownForms = false;
  const firstFit = async (list: Iterable<Candidate>, last: Search["last"] = null): Promise<Search> => {
    for (const c of list) {
      const n = await need(c);
      if (n === null) {
        unknownForms = true;
        continue;
      }
      last = { c, n };
      if (n <= budget) return { fit: last, last };
    }
    return { fit: null, last };
  };
  let search = await firstFit(levelCandidates(start, forms, fixed));
  if (!search.fit && search.last) search = await firstFit(shrink(search.last.c, fixed), search.last);
  const found = search.fit ?? search.last;
  if (!found) throw new Error("The trainer's memory estimator gave no estimate for any setting of this model.");
  const chosen = found.c;
  const chosenNeed = found.n;
  const fits = search.fit !== null;
  if (unknownForms) notes.push("The memory estimator could not estimate gradient checkpointing or a quantized copy of the base weights, so the plan does without them.");
  if (!fits) {
    const kept = Object.entries(fixed).map(([k, v]) => `${k} ${v}`);
    const which = kept.length > 0 ? `with your ${kept.join(", ")} and the smallest of the other settings` : "even the smallest settings";
    const instead = kept.length > 0 ? "Lower the values you set, choose a smaller model" : "Choose a smaller model";
    notes.push(
      `This model does not fit for training on ${device.name}: ${which} need about ${gib(chosenNeed)} and ` +
        `${gib(budget)} is available. ${instead}${forms.length === 1 && model.weightType !== "Q4_0" ? " or a more quantized GGUF of it" : ""}, or close programs that use this memory.`,
    );
  } else if (chosen.baseWeights !== "keep") {
    notes.push(`The ${model.weightType} base weights do not fit as stored; the run trains on a ${chosen.baseWeights.toUpperCase()} copy of them (about ${gib(chosenNeed)} in all).`);
  }

  const perStep = chosen.batch * chosen.gradAccum;
  const trainSequences = Math.max(1, Math.ceil(input.datasetTokens / chosen.seqLen));
  const steps = fixed.steps ?? recommendedSteps(trainSequences, perStep);
  const tokensPerStep = chosen.seqLen * perStep;
  const run = { steps, tokensPerStep, seqLen: chosen.seqLen, gradCheckpoint: chosen.gradCheckpoint };
  const time = trainTime(input, model, run);
  if (device.kind === "cpu" && fits) notes.push(cpuNote(model, time.seconds, run));
  return {
    baseWeights: chosen.baseWeights, rank: chosen.rank, alpha: 2 * chosen.rank, seqLen: chosen.seqLen, batch: chosen.batch,
    gradAccum: chosen.gradAccum, gradCheckpoint: chosen.gradCheckpoint, steps, epochs: (steps * perStep) / trainSequences,
    peakBytes: chosenNeed, budgetBytes: budget, fits, seconds: time.seconds, timeBasis: time.basis, notes,
  };
}

/** A CPU run is slow: what the smallest catalog model would take instead (the plan's time line says how slow). */
function cpuNote(model: ModelShape, seconds: number | null, run: RunSize): string {
  const smallest = [...CATALOG].sort((a, b) => shapeOf(a).params - shapeOf(b).params)[0];
  const small = shapeOf(smallest);
  if (model.params <= 1.2 * small.params) return "No GPU: training runs on the CPU.";
  const faster = flopsPerToken(model, run.seqLen, run.gradCheckpoint) / flopsPerToken(small, run.seqLen, run.gradCheckpoint);
  const instead = seconds !== null ? ` (about ${duration(seconds / faster)})` : "";
  return `No GPU: training runs on the CPU. ${smallest.displayName} trains about ${faster.toFixed(0)} times faster${instead}; choose it for a first adapter.`;
}

/** FLOPs of one training token: forward and input-gradient passes through the frozen matrices (2 + 2 per
 * parameter; frozen weights get no weight gradient), and attention's scores and mixing (forward 4·L·n·d, backward
 * twice that); with checkpointing, one more forward pass. */
export function flopsPerToken(model: ModelShape, seqLen: number, gradCheckpoint = false): number {
  const forward = 2 * model.params + 4 * model.nLayer * seqLen * model.nEmbd;
  return (gradCheckpoint ? 4 : 3) * forward - 2 * model.params;
}

/**
 * Training seconds scaled from a measured run: its seconds per token, times the next run's tokens, and times the
 * ratio of work per token when the model differs. (The Run view's "next run" estimate scales the same way.)
 */
export function secondsFromMeasured(m: MeasuredRun, next: { steps: number; tokensPerStep: number; params: number | null }): number | null {
  if (m.steps <= 0 || m.tokensPerStep <= 0) return null;
  const perToken = m.trainSeconds / (m.steps * m.tokensPerStep);
  const modelRatio = m.params !== null && next.params !== null ? next.params / m.params : 1;
  return perToken * next.steps * next.tokensPerStep * modelRatio;
}

function trainTime(input: PlanInput, model: ModelShape, run: RunSize): { seconds: number | null; basis: string } {
  const m = input.measured;
  if (m && m.device === input.device.kind) {
    const seconds = secondsFromMeasured(m, { steps: run.steps, tokensPerStep: run.tokensPerStep, params: model.params });
    if (seconds !== null) return { seconds, basis: `scaled from the last run on this device (${m.steps} steps in ${Math.round(m.trainSeconds)} s)` };
  }
  const flops = input.device.matmulFlops;
  if (!flops) return { seconds: null, basis: "measured by the first run on this device" };
  const seconds = (flopsPerToken(model, run.seqLen, run.gradCheckpoint) * run.tokensPerStep * run.steps) / (flops * ASSUMED_UTILIZATION);
  return { seconds, basis: `worked out from the device's ${flops >= 1e12 ? `${(flops / 1e12).toFixed(1)} TFLOP/s` : `${Math.round(flops / 1e9)} GFLOP/s`} at an assumed ${ASSUMED_UTILIZATION * 100}% utilisation; the first run measures it` };
}

/** The trainer's estimator for a model file on a device kind (ROCm is CUDA to PyTorch). */
export function trainerEstimator(opts: { python: string; trainerRoot: string; modelPath: string; device: DeviceKind }): Estimator {
  return async (s) => {
    const request = {
      python: opts.python, trainerRoot: opts.trainerRoot, modelPath: opts.modelPath, seqLen: s.seqLen, batch: s.batch, rank: s.rank,
      device: opts.device === "rocm" ? "cuda" : opts.device, baseWeights: s.baseWeights, gradCheckpoint: s.gradCheckpoint,
    };
    const e = await estimateMemory(request);
    // The trainer echoes the options it estimated for; memoryEstimate.ts does not pass these two yet.
    return { totalBytes: e.total, baseWeights: String(e.base_weights ?? "keep"), gradCheckpoint: Number(e.grad_checkpoint ?? 0) === 1 };
  };
}

function gib(n: number): string {
  return `${(n / 2 ** 30).toFixed(1)} GiB`;
}

export function duration(seconds: number): string {
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 90 * 60) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}
