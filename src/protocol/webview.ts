// The one schema module for messages between the extension and its webviews (Run view and training report panel).
// Both sides validate with these schemas: the extension every message it receives, the webviews every message too.
import { z } from "zod";
import { DatasetSummary, EvaluationSummary, RunPhase } from "./run";
import { DatasetReport } from "./dataset";
import { TrainerErrorCode } from "./trainer";

export const LossPoint = z.object({ step: z.number(), loss: z.number() });
export const StepValue = z.object({ step: z.number(), value: z.number() });

/** Settings the trainer's out-of-memory message names as fitting (trainer/repotune_trainer/fit.py), parsed. */
export const SuggestedSettings = z.object({
  batch: z.number().int().positive().optional(),
  gradAccum: z.number().int().positive().optional(),
  gradCheckpoint: z.boolean().optional(),
  seqLen: z.number().int().positive().optional(),
  rank: z.number().int().positive().optional(),
  baseWeights: z.enum(["keep", "q8_0", "q4_0"]).optional(),
  /** The trainer's own words for them ("batch 4 with grad-accum 2 and gradient checkpointing"). */
  text: z.string(),
});
export type SuggestedSettings = z.infer<typeof SuggestedSettings>;

/** What the trainer said about itself when it started: model shape, batch, precision. */
export const TrainerInfo = z.object({
  arch: z.string(),
  torch: z.string(),
  nLayer: z.number().int(),
  nEmbd: z.number().int(),
  vocabSize: z.number().int(),
  weightTypes: z.array(z.string()),
  trainableParams: z.number().int(),
  totalParams: z.number().int(),
  batch: z.number().int(),
  seqLen: z.number().int(),
  gradAccum: z.number().int().nullable(),
  baseWeights: z.string().nullable(),
  trainSequences: z.number().int(),
  valSequences: z.number().int(),
});
export type TrainerInfo = z.infer<typeof TrainerInfo>;

/** One line of the run's event log as people read it (steps are in the charts, not here). */
export const LogLine = z.object({ time: z.number(), kind: z.string(), text: z.string() });
export type LogLine = z.infer<typeof LogLine>;

export const RunSnapshot = z.object({
  phase: z.union([RunPhase, z.literal("idle")]),
  runId: z.string().nullable(),
  runDir: z.string().nullable(),
  folder: z.string().nullable(),
  model: z.string().nullable(),
  /** Wall-clock times (ms since 1970): the run's first event, training's first step event, the end of the run. */
  startedAt: z.number().nullable(),
  endedAt: z.number().nullable(),
  /** When each phase began (ms since 1970), for how long preparing and evaluating took. */
  phaseTimes: z.record(z.string(), z.number()),
  dataset: DatasetSummary.nullable(),
  device: z.string().nullable(),
  /** The trainer's predicted peak memory for this run, in bytes, and the device it is for. */
  estimate: z.object({ device: z.string(), peakBytes: z.number() }).nullable(),
  /** The settings the run trains with, as planned before training (in words), and whether the user edited them. */
  plan: z.object({ summary: z.string(), seconds: z.number().nullable(), edited: z.boolean() }).nullable(),
  /** The plan is on screen and the run waits for the user to start (or edit) it. */
  awaitingPlan: z.boolean(),
  /** Device memory the trainer reported: free when it started, and the measured peak (CUDA only) at the end. */
  memoryFree: z.number().nullable(),
  memoryPeak: z.number().nullable(),
  trainer: TrainerInfo.nullable(),
  step: z.number().int(),
  steps: z.number().int(),
  loss: z.number().nullable(),
  lr: z.number().nullable(),
  tokensPerS: z.number().nullable(),
  /** The trainer's own clock at the last step (seconds since it started training), for the ETA. */
  trainSeconds: z.number().nullable(),
  resumedFrom: z.number().int().nullable(),
  valLossBase: z.number().nullable(),
  valLoss: z.number().nullable(),
  losses: z.array(LossPoint),
  valLosses: z.array(LossPoint),
  lrs: z.array(StepValue),
  throughput: z.array(StepValue),
  /** The newest checkpoint the trainer wrote: a stopped or failed run can resume from it. */
  checkpoint: z.object({ step: z.number().int(), path: z.string() }).nullable(),
  adapterStep: z.number().int().nullable(),
  earlyStopped: z.boolean(),
  evalProgress: z.object({ done: z.number().int(), total: z.number().int() }).nullable(),
  evaluation: EvaluationSummary.nullable(),
  adapterPath: z.string().nullable(),
  activeAdapter: z.string().nullable(),
  error: z.string().nullable(),
  /** The setting that fixes the error, when one does (opened by the view's button). */
  errorAction: z.string().nullable(),
  errorCode: TrainerErrorCode.nullable(),
  suggestion: SuggestedSettings.nullable(),
  log: z.array(LogLine),
});
export type RunSnapshot = z.infer<typeof RunSnapshot>;

/** The training settings as they apply to the next run, and where each came from. */
export const NextRunSettings = z.object({
  /** null: the dataset decides (about three passes over the data), see `stepsHint`. */
  steps: z.number().int().nullable(),
  stepsHint: z.number().int().nullable(),
  seqLen: z.number().int(),
  rank: z.number().int(),
  lr: z.number(),
  batch: z.number().int(),
  device: z.string(),
  /** Settings the user left unset: the values shown are where the plan starts; the run plans them (planRun.ts). */
  planned: z.array(z.enum(["seqLen", "rank", "batch"])).optional(),
});
export type NextRunSettings = z.infer<typeof NextRunSettings>;

export const AdapterRow = z.object({
  runId: z.string(),
  adapterPath: z.string(),
  runDir: z.string(),
  finished: z.string(),
  baseModel: z.string(),
  sizeBytes: z.number(),
  valLossBase: z.number().nullable(),
  valLoss: z.number().nullable(),
  /** Held-out edit-similarity difference (adapter - base, what decides keeping) with its 95% interval, when evaluated. */
  gain: z.object({ mean: z.number(), lo: z.number(), hi: z.number() }).nullable(),
  active: z.boolean(),
});
export type AdapterRow = z.infer<typeof AdapterRow>;

/** What the Run view knows besides the run: the workspace, its settings and adapters, and what a run would take. */
export const WorkspaceInfo = z.object({
  folder: z.string().nullable(),
  modelSetting: z.string().nullable(),
  settings: NextRunSettings.nullable(),
  /** The device training would use (the trainer's self-test), or why it is unknown. */
  device: z.string().nullable(),
  /** Predicted peak memory of the next run (the trainer's estimator for these settings and this device). */
  peakBytes: z.number().nullable(),
  /** Predicted time of the next run, scaled from what the last run on this device measured. */
  seconds: z.number().nullable(),
  estimateNote: z.string().nullable(),
  adapters: z.array(AdapterRow),
  /** Whether this window can resume a stopped run (the run controller supports it). */
  canResume: z.boolean(),
  /** The shown run is this window's own (live), not one read back from its events file. */
  live: z.boolean(),
});
export type WorkspaceInfo = z.infer<typeof WorkspaceInfo>;

/** The run folder's files beside its events, for the report panel. */
export const RunFiles = z.object({
  report: DatasetReport.nullable(),
  /** The manifest's training settings (written when the run ends). */
  settings: z.record(z.string(), z.union([z.number(), z.string(), z.boolean()])).nullable(),
  gitCommit: z.string().nullable(),
});
export type RunFiles = z.infer<typeof RunFiles>;

export const ToWebview = z.discriminatedUnion("type", [
  z.object({ type: z.literal("state"), run: RunSnapshot, workspace: WorkspaceInfo, files: RunFiles.nullable() }),
]);
export type ToWebview = z.infer<typeof ToWebview>;

export const ViewCommand = z.enum([
  "fineTune", "stop", "resume", "showRun", "openLog", "openSettings", "openErrorSetting", "retrySuggested", "deactivateAdapter",
]);
export type ViewCommand = z.infer<typeof ViewCommand>;

export const AdapterAction = z.enum(["activate", "delete", "reveal", "report"]);
export type AdapterAction = z.infer<typeof AdapterAction>;

/** The longest path any OS takes (Windows' long paths): a longer "path" from a webview is not one. */
const MAX_PATH_CHARS = 32_767;

// Strict: the webviews send exactly these keys, so any other (an `__proto__`, a misspelling) marks a message that
// did not come from them as written, and it is refused rather than trimmed.
export const FromWebview = z.discriminatedUnion("type", [
  z.strictObject({ type: z.literal("ready") }),
  z.strictObject({ type: z.literal("command"), command: ViewCommand }),
  z.strictObject({ type: z.literal("adapter"), action: AdapterAction, adapterPath: z.string().min(1).max(MAX_PATH_CHARS) }),
]);
export type FromWebview = z.infer<typeof FromWebview>;

export type ParsedFromWebview = { ok: true; message: FromWebview } | { ok: false; reason: string };

/**
 * Parses a message a webview posted. The reason for a refusal is short whatever the message held (zod's own error
 * text lists unknown keys verbatim, and a key may be megabytes long), so that it can be logged as it is.
 */
export function parseFromWebview(raw: unknown): ParsedFromWebview {
  const r = FromWebview.safeParse(raw);
  if (r.success) return { ok: true, message: r.data };
  const reason = r.error.issues
    .map((i) => `${i.path.map(String).join(".").slice(0, 40) || "message"}: ${i.code === "unrecognized_keys" ? `unexpected key(s) (${i.keys.length})` : i.message.slice(0, 200)}`)
    .join("; ");
  return { ok: false, reason: reason.slice(0, 500) };
}
