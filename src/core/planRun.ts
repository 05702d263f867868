// The training plan (plan.ts) applied to a run: the pipeline plans twice. Before the dataset is built it settles
// the sequence length (the data is packed for it) and refuses a model that cannot fit even at the smallest settings,
// so that nobody waits for a dataset that cannot be trained on. After the build, with the real token count, it plans
// rank, micro-batch, accumulation, base-weight form, checkpointing and steps, and the caller confirms or edits that.
// Settings the user set are kept as given; only the others are planned.
import * as os from "node:os";
import * as path from "node:path";
import { promises as fs } from "node:fs";
import type { TrainerSelftest } from "../protocol/trainer";
import type { DatasetSummary } from "../protocol/run";
import { planTraining, trainerEstimator, duration, type DeviceDescription, type DeviceKind, type Estimator, type MeasuredRun, type PlanInput, type TrainingPlan } from "./plan";
import type { ModelShape } from "./models/shape";
import { readManifest } from "./runStore";
import type { TrainSettings } from "./tune";

export type PlanFixed = NonNullable<PlanInput["fixed"]>;

export interface PlanProposal {
  plan: TrainingPlan;
  device: DeviceDescription;
  modelName: string;
  /** Training tokens and packed sequences of the dataset just built. */
  datasetTokens: number;
  trainSequences: number;
  /** The values the user set (kept as given); everything else in `plan` was planned. */
  fixed: PlanFixed;
  /** The plan again with other values set (an editor's re-plan). The sequence length stays: the data is packed for it. */
  replan(fixed: PlanFixed): Promise<TrainingPlan>;
}

/** Shows the plan and answers the plan to train with, or null to stop before training. */
export type ConfirmPlan = (proposal: PlanProposal) => Promise<TrainingPlan | null>;

/** The settings a plan may decide, as the user set them (undefined: plan it). */
export function fixedFrom(given: Partial<TrainSettings> | undefined): PlanFixed {
  const g = given ?? {};
  const fixed: PlanFixed = {};
  if (g.seqLen != null) fixed.seqLen = g.seqLen;
  if (g.rank != null) fixed.rank = g.rank;
  if (g.batch != null) fixed.batch = g.batch;
  if (g.gradAccum != null) fixed.gradAccum = g.gradAccum;
  if (g.steps != null) fixed.steps = g.steps;
  if (g.gradCheckpoint != null) fixed.gradCheckpoint = g.gradCheckpoint;
  if (g.baseWeights != null && g.baseWeights !== "auto") fixed.baseWeights = g.baseWeights;
  return fixed;
}

/** The run's settings with the plan's values; alpha follows the rank (2 x rank) unless the user set it. */
export function withPlan(settings: TrainSettings, plan: TrainingPlan, given: Partial<TrainSettings> | undefined): TrainSettings {
  return {
    ...settings,
    seqLen: plan.seqLen, rank: plan.rank, alpha: given?.alpha ?? plan.alpha, batch: plan.batch, gradAccum: plan.gradAccum,
    gradCheckpoint: plan.gradCheckpoint, baseWeights: plan.baseWeights, steps: plan.steps,
  };
}

/**
 * The training device as the trainer's selftest found it. With a device setting other than what the selftest
 * picked, its memory figures describe another device: the CPU's RAM is used for the CPU, and a GPU's memory is
 * unknown (the trainer's own preflight still checks it when training starts).
 */
export function deviceOf(selftest: TrainerSelftest, setting: TrainSettings["device"]): DeviceDescription {
  const detected = kindOf(selftest.device);
  const kind = setting === "auto" ? detected : setting;
  if (kind === detected && selftest.memory_total) {
    // The CPU's "name" in the selftest is its architecture (x86_64): "the CPU" says more.
    const name = kind === "cpu" ? `the CPU${selftest.device_name ? ` (${selftest.device_name})` : ""}` : selftest.device_name ?? kind.toUpperCase();
    return { kind, name, totalBytes: selftest.memory_total, freeBytes: selftest.memory_free ?? null, matmulFlops: selftest.matmul_flops ?? null };
  }
  if (kind === "cpu") return { kind, name: "the CPU", totalBytes: os.totalmem(), freeBytes: os.freemem() };
  return { kind, name: kind.toUpperCase(), totalBytes: Number.POSITIVE_INFINITY, freeBytes: null };
}

function kindOf(device: string | null): DeviceKind {
  return device === "cuda" || device === "mps" || device === "rocm" ? device : "cpu";
}

/** An estimator that asks the trainer once per distinct setting (each answer is a Python process start). */
export function memoized(estimate: Estimator): Estimator {
  const seen = new Map<string, ReturnType<Estimator>>();
  return (s) => {
    const key = JSON.stringify([s.seqLen, s.batch, s.rank, s.baseWeights, s.gradCheckpoint]);
    let answer = seen.get(key);
    if (!answer) {
      answer = estimate(s);
      seen.set(key, answer);
      answer.catch(() => seen.delete(key));
    }
    return answer;
  };
}

/**
 * The latest finished run of this repository with the same model on the same kind of device: its speed is what
 * the next run's time is scaled from. Unreadable manifests are passed over.
 */
export async function lastMeasured(repoDir: string, modelPath: string, kind: DeviceKind, skipRunId: string): Promise<MeasuredRun | null> {
  const runs = (await fs.readdir(repoDir).catch(() => [] as string[])).filter((r) => r !== skipRunId).sort().reverse();
  for (const runId of runs.slice(0, 20)) {
    const m = await readManifest(path.join(repoDir, runId, "manifest.json")).catch(() => null);
    if (!m || m.status !== "done" || path.resolve(m.baseModel.path) !== path.resolve(modelPath)) continue;
    if (kindOf(m.metrics.device) !== kind || m.metrics.steps <= 0) continue;
    const s = m.settings;
    return { device: kind, trainSeconds: m.metrics.trainSeconds, steps: m.metrics.steps, tokensPerStep: s.seqLen * s.batch * (s.gradAccum ?? 1), params: null };
  }
  return null;
}

export interface PlannerOptions {
  python: string;
  trainerRoot: string;
  modelPath: string;
  modelName: string;
  shape: ModelShape;
  device: DeviceDescription;
  given: Partial<TrainSettings> | undefined;
  measured: MeasuredRun | null;
  /** For tests: another estimator than the trainer's. */
  estimate?: Estimator;
}

/** Both plans of one run, sharing one estimator cache. */
export class RunPlanner {
  private readonly estimate: Estimator;
  readonly fixed: PlanFixed;

  constructor(private readonly o: PlannerOptions) {
    this.estimate = memoized(o.estimate ?? trainerEstimator({ python: o.python, trainerRoot: o.trainerRoot, modelPath: path.resolve(o.modelPath), device: o.device.kind }));
    this.fixed = fixedFrom(o.given);
  }

  /**
   * Before the dataset: the sequence length to pack the data for. The token count is not known yet; a
   * medium-sized repository's stands in, which only sets the rank this plan's memory is checked with (the final
   * plan picks the rank for the real count, and a lower rank takes less memory).
   */
  async beforeDataset(): Promise<TrainingPlan> {
    return planTraining({ device: this.o.device, model: this.o.shape, datasetTokens: 1_000_000, estimate: this.estimate, fixed: this.fixed, measured: this.o.measured });
  }

  /**
   * Why a plan cannot train, and (when the user's own values are what does not fit) the settings that would, in
   * the words and flags of the trainer's out-of-memory message, which "Retry with suggested settings" reads
   * (runSnapshot.ts parseSuggestion).
   */
  async refusal(tooBig: TrainingPlan): Promise<string> {
    const why = tooBig.notes.join(" ");
    // The user's values are let go of cheapest first: the micro-batch and how the base is held change only speed,
    // a shorter sequence sees less code at once, a lower rank learns less.
    const { batch, gradAccum, gradCheckpoint, baseWeights, ...kept } = this.fixed;
    const { seqLen, ...keptRank } = kept;
    const tries = [kept, keptRank, this.fixed.steps !== undefined ? { steps: this.fixed.steps } : {}];
    let fit: TrainingPlan | null = null;
    for (const fixed of tries.filter((t, i) => Object.keys(t).length < Object.keys(i === 0 ? this.fixed : tries[i - 1]!).length)) {
      const p = await planTraining({ device: this.o.device, model: this.o.shape, datasetTokens: 1_000_000, estimate: this.estimate, fixed, measured: null });
      if (p.fits) {
        fit = p;
        break;
      }
    }
    if (!fit) return why;
    const { words, flags } = changeWords(tooBig, fit);
    return words.length === 0 ? why : `${why} Try ${words.join(", ")} (${flags.join(" ")}): about ${gib(fit.peakBytes)}.`;
  }

  async afterDataset(summary: DatasetSummary, seqLen: number): Promise<PlanProposal> {
    const replan = (fixed: PlanFixed) => planTraining({
      device: this.o.device, model: this.o.shape, datasetTokens: summary.trainTokens, estimate: this.estimate,
      fixed: { ...fixed, seqLen }, measured: this.o.measured,
    });
    return {
      plan: await replan(this.fixed), device: this.o.device, modelName: this.o.modelName,
      datasetTokens: summary.trainTokens, trainSequences: summary.trainSequences, fixed: this.fixed, replan,
    };
  }
}

/** What a plan will do, in lines for a dialog or the run log. */
export function planLines(p: Pick<PlanProposal, "modelName" | "datasetTokens" | "trainSequences" | "device">, plan: TrainingPlan): string[] {
  const n = (x: number) => x.toLocaleString("en-US");
  const parts = [
    `${plan.steps} steps (${plan.epochs.toFixed(1)} passes over the data)`, `rank ${plan.rank}`, `${plan.seqLen}-token sequences`,
    plan.gradAccum > 1 ? `batch ${plan.batch} x ${plan.gradAccum} accumulated` : `batch ${plan.batch}`,
    ...(plan.gradCheckpoint ? ["gradient checkpointing"] : []),
    ...(plan.baseWeights !== "keep" ? [`base weights as ${plan.baseWeights.toUpperCase()}`] : []),
  ];
  const budget = Number.isFinite(plan.budgetBytes) ? ` of ${gib(plan.budgetBytes)} available` : "";
  return [
    `${p.modelName} on ${n(p.trainSequences)} training sequences (${n(p.datasetTokens)} tokens).`,
    `${parts.join(", ")}.`,
    `Peak memory about ${gib(plan.peakBytes)}${budget} on ${p.device.name}.`,
    plan.seconds !== null ? `Training time about ${duration(plan.seconds)} (${plan.timeBasis}).` : `Training time: ${plan.timeBasis}.`,
    ...plan.notes,
  ];
}

/** What differs between two plans, as fit.py's out-of-memory suggestion words it. */
export function changeWords(from: TrainingPlan, to: TrainingPlan): { words: string[]; flags: string[] } {
  const words: string[] = [];
  const flags: string[] = [];
  if (from.batch !== to.batch || from.gradAccum !== to.gradAccum) {
    words.push(`batch ${to.batch} with grad-accum ${to.gradAccum}`);
    flags.push(`--batch ${to.batch}`, `--grad-accum ${to.gradAccum}`);
  }
  if (to.gradCheckpoint && !from.gradCheckpoint) {
    words.push("gradient checkpointing");
    flags.push("--grad-checkpoint");
  }
  if (from.seqLen !== to.seqLen) words.push(`sequence length ${to.seqLen} (the repotune.training.seqLen setting)`);
  if (from.rank !== to.rank) {
    words.push(`rank ${to.rank}`);
    flags.push(`--rank ${to.rank}`);
  }
  if (from.baseWeights !== to.baseWeights && to.baseWeights !== "keep") {
    words.push(`a ${to.baseWeights.toUpperCase()} copy of the base weights`);
    flags.push(`--base-weights ${to.baseWeights}`);
  }
  return { words, flags };
}

function gib(n: number): string {
  return `${(n / 2 ** 30).toFixed(n < 2 ** 30 ? 2 : 1)} GiB`;
}
