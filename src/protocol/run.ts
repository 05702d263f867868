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
});
export type DatasetSummary = z.infer<typeof DatasetSummary>;

export const RunPhase = z.enum(["preparing", "training", "done", "stopped", "failed"]);
export type RunPhase = z.infer<typeof RunPhase>;

export const RunEvent = z.discriminatedUnion("type", [
  z.object({ type: z.literal("run"), time: z.number(), runId: z.string(), folder: z.string(), modelPath: z.string(), runDir: z.string() }),
  z.object({ type: z.literal("phase"), time: z.number(), phase: RunPhase }),
  z.object({ type: z.literal("dataset"), time: z.number(), summary: DatasetSummary }),
  /** The trainer's prediction of its peak memory for this model and these settings, before it starts. */
  z.object({ type: z.literal("estimate"), time: z.number(), device: z.string(), peakBytes: z.number().nonnegative() }),
  z.object({ type: z.literal("trainer"), time: z.number(), event: TrainerEvent }),
  z.object({ type: z.literal("adapter"), time: z.number(), adapterPath: z.string(), manifestPath: z.string() }),
  z.object({ type: z.literal("error"), time: z.number(), message: z.string(), action: z.string().optional() }),
  z.object({ type: z.literal("log"), time: z.number(), message: z.string() }),
]);
export type RunEvent = z.infer<typeof RunEvent>;
