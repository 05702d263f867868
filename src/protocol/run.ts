// A run's event log: what the pipeline reports and what `events.jsonl` in the run folder holds, line by line.
// The Run view, the run panel and the CLI all render from these events, so a reopened view can redraw history.
import { z } from "zod";
import { TrainerEvent } from "./trainer";

export const DatasetSummary = z.object({
  filesUsed: z.number().int(),
  filesSkipped: z.record(z.string(), z.number().int()),
  examples: z.number().int(),
  trainSequences: z.number().int(),
  valSequences: z.number().int(),
  trainTokens: z.number().int(),
  valTokens: z.number().int(),
  seqLen: z.number().int(),
  promptFormat: z.string(),
  /** Files left out as copies of a kept file: exact, near (Jaccard >= 0.85), and of those how many copied a held-out file. */
  duplicates: z.object({ exact: z.number().int(), near: z.number().int(), ofHeldOut: z.number().int() }).optional(),
  /** How the held-out files were chosen: most recently changed in git, by path hash, or the end of a single file;
   * "update": an adapter update (the most recently changed of the files changed since the parent's commit). */
  splitMethod: z.enum(["recent", "hash", "one-file", "update"]).optional(),
  /** An update's files changed since the parent adapter's commit, and the replay sample of the other files. */
  changedFiles: z.number().int().optional(),
  replayFiles: z.number().int().optional(),
  heldOutFiles: z.number().int().optional(),
  /** Characters per token of this model on this code: completion prompts sized with it are cut as the examples were. */
  charsPerToken: z.number().positive().optional(),
  /** Steps that show the training data about three times at the batch size given to the dataset step. */
  recommendedSteps: z.number().int().positive().optional(),
  /** Things the user should know about this dataset (a small repository, history that could not be read). */
  warnings: z.array(z.string()).optional(),
});
export type DatasetSummary = z.infer<typeof DatasetSummary>;

export const RunPhase = z.enum(["preparing", "training", "evaluating", "done", "stopped", "failed"]);
export type RunPhase = z.infer<typeof RunPhase>;

/** A mean over evaluation tasks and its 95% bootstrap interval. */
export const Interval = z.object({ mean: z.number(), lo: z.number(), hi: z.number() });
export type Interval = z.infer<typeof Interval>;

/** Completion quality over held-out tasks: exact match and edit similarity are shares (0-1), accepted characters a count. */
export const EvalMetrics = z.object({ exactMatch: Interval, editSimilarity: Interval, acceptedChars: Interval });
export type EvalMetrics = z.infer<typeof EvalMetrics>;

export const LanguageMetrics = z.object({
  language: z.string(),
  tasks: z.number().int(),
  base: EvalMetrics,
  adapter: EvalMetrics,
  diff: EvalMetrics,
});
export type LanguageMetrics = z.infer<typeof LanguageMetrics>;

/** Whether the adapter becomes active, and why, in words with the numbers. */
export const EvalDecision = z.object({ keep: z.boolean(), reason: z.string() });
export type EvalDecision = z.infer<typeof EvalDecision>;

/**
 * The held-out evaluation of an adapter against its base model (src/core/eval/evaluate.ts), without the per-task
 * records (those are in the run folder's evaluation.json): what the manifest and the `evaluation` event carry.
 */
export const EvaluationSummary = z.object({
  taskCount: z.number().int(),
  kinds: z.record(z.string(), z.number().int()),
  files: z.number().int(),
  base: EvalMetrics,
  adapter: EvalMetrics,
  /** adapter - base, per task, with the paired bootstrap interval. */
  diff: EvalMetrics,
  byLanguage: z.array(LanguageMetrics),
  /** The trainer's validation loss of the base model and of the adapter it wrote (its best step), and exp of each. */
  loss: z.object({
    base: z.number().nullable(),
    adapter: z.number().nullable(),
    perplexityBase: z.number().nullable(),
    perplexityAdapter: z.number().nullable(),
    adapterStep: z.number().int().nullable(),
  }),
  settings: z.object({
    seed: z.number().int(),
    maxTasks: z.number().int(),
    windowTokens: z.number().int(),
    maxTokens: z.number().int(),
    resamples: z.number().int(),
  }),
  seconds: z.number(),
  decision: EvalDecision,
});
export type EvaluationSummary = z.infer<typeof EvaluationSummary>;

export const RunEvent = z.discriminatedUnion("type", [
  z.object({
    type: z.literal("run"), time: z.number(), runId: z.string(), folder: z.string(), modelPath: z.string(), runDir: z.string(),
    /** Every folder of a multi-root run (its dataset's paths carry their names); absent for one folder. */
    folders: z.array(z.string()).optional(),
  }),
  z.object({ type: z.literal("phase"), time: z.number(), phase: RunPhase }),
  z.object({ type: z.literal("dataset"), time: z.number(), summary: DatasetSummary }),
  /** The trainer's prediction of its peak memory for this model and these settings, before it starts. */
  z.object({ type: z.literal("estimate"), time: z.number(), device: z.string(), peakBytes: z.number().nonnegative() }),
  /** The plan is shown to the user, and the run waits for Start (or an edit) before training. */
  z.object({ type: z.literal("planProposed"), time: z.number() }),
  /** The settings the run trains with, as planned (src/core/planRun.ts) and confirmed or edited, in words too. */
  z.object({
    type: z.literal("plan"), time: z.number(), steps: z.number().int(), rank: z.number().int(), seqLen: z.number().int(),
    batch: z.number().int(), gradAccum: z.number().int(), gradCheckpoint: z.boolean(), baseWeights: z.string(),
    peakBytes: z.number().nonnegative(), seconds: z.number().nullable(), edited: z.boolean(), lines: z.array(z.string()),
  }),
  z.object({ type: z.literal("trainer"), time: z.number(), event: TrainerEvent }),
  z.object({ type: z.literal("adapter"), time: z.number(), adapterPath: z.string(), manifestPath: z.string() }),
  z.object({ type: z.literal("error"), time: z.number(), message: z.string(), action: z.string().optional() }),
  z.object({ type: z.literal("log"), time: z.number(), message: z.string() }),
  /** Completions asked so far in the held-out evaluation (base and adapter each answer every task). */
  z.object({ type: z.literal("evalProgress"), time: z.number(), done: z.number().int(), total: z.number().int() }),
  z.object({ type: z.literal("evaluation"), time: z.number(), evaluation: EvaluationSummary }),
]);
export type RunEvent = z.infer<typeof RunEvent>;
