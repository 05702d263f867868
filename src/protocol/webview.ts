// The one schema module for messages between the extension and its webviews (Run view and run panel).
import { z } from "zod";
import { DatasetSummary, RunPhase } from "./run";

export const LossPoint = z.object({ step: z.number(), loss: z.number() });

export const RunSnapshot = z.object({
  phase: z.union([RunPhase, z.literal("idle")]),
  runId: z.string().nullable(),
  folder: z.string().nullable(),
  model: z.string().nullable(),
  dataset: DatasetSummary.nullable(),
  device: z.string().nullable(),
  /** The trainer's predicted peak memory for this run, in bytes, and the device it is for. */
  estimate: z.object({ device: z.string(), peakBytes: z.number() }).nullable(),
  step: z.number().int(),
  steps: z.number().int(),
  loss: z.number().nullable(),
  tokensPerS: z.number().nullable(),
  valLossBase: z.number().nullable(),
  valLoss: z.number().nullable(),
  losses: z.array(LossPoint),
  valLosses: z.array(LossPoint),
  adapterPath: z.string().nullable(),
  activeAdapter: z.string().nullable(),
  error: z.string().nullable(),
  errorAction: z.string().nullable(),
});
export type RunSnapshot = z.infer<typeof RunSnapshot>;

export const ToWebview = z.discriminatedUnion("type", [
  z.object({ type: z.literal("snapshot"), snapshot: RunSnapshot }),
]);
export type ToWebview = z.infer<typeof ToWebview>;

export const FromWebview = z.discriminatedUnion("type", [
  z.object({ type: z.literal("ready") }),
  z.object({ type: z.literal("command"), command: z.enum(["fineTune", "stop", "showRun", "openLog"]) }),
]);
export type FromWebview = z.infer<typeof FromWebview>;
