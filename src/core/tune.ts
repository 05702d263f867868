// The fine-tune pipeline, shared by the CLI and the extension: folder -> dataset (through the engine's tokenizer)
// -> trainer process -> adapter + manifest in a new run folder. Every step is reported as a RunEvent, to the
// caller and to the run's events.jsonl. User errors end the run as "failed" with a message that says what to do.
import { promises as fs, appendFileSync } from "node:fs";
import * as path from "node:path";
import type { DatasetSummary, EvalDecision, RunEvent } from "../protocol/run";
import type { TrainerEvent, TrainerSelftest } from "../protocol/trainer";
import { EngineClient, EngineError } from "./engineClient";
import { promptFormatFor } from "./promptFormat";
import { UserError, messageOf } from "./errors";
import type { ExampleMix } from "./dataset/fim";
import { buildDataset, DatasetAborted } from "./dataset/build";
import { datasetRoots, type DatasetRoot } from "./dataset/roots";
import type { DatasetFiles } from "./dataset/write";
import { summaryOf, type EvaluationResult } from "./eval/evaluate";
import { evaluateRunAdapter } from "./eval/evaluateRun";
import { checkPython } from "./python";
import { runTrainer, type TrainerExit, type TrainerProcessOptions } from "./trainerProcess";
import { runDetachedTrainer } from "./trainerDetached";
import { trainerFailure } from "./trainerFailure";
import { TokenizerPool } from "./tokenizerPool";
import { estimateMemory } from "./memoryEstimate";
import { deviceOf, lastMeasured, planLines, RunPlanner, withPlan, type ConfirmPlan } from "./planRun";
import type { Estimator } from "./plan";
import { ModelCheckError, validateModel, type CheckedModel } from "./models/validate";
import {
  appendEvent, createRun, fileIdentity, gitCommit, writeManifest, TrainSettingsSchema,
  type RunManifest, type RunPaths,
} from "./runStore";

export interface TrainSettings {
  steps: number;
  seqLen: number;
  rank: number;
  alpha: number;
  lr: number;
  batch: number;
  /** Micro-batches per step: a step trains on batch x gradAccum sequences with the memory of one micro-batch. */
  gradAccum: number;
  /** Recompute each block in the backward pass: less activation memory, about a third more compute. */
  gradCheckpoint: boolean;
  /** The frozen base as stored, or a Q8_0 / Q4_0 copy made on the device; auto: the first that fits. */
  baseWeights: "auto" | "keep" | "q8_0" | "q4_0";
  seed: number;
  device: "auto" | "cpu" | "cuda" | "mps";
}

export interface TuneOptions {
  /**
   * The folder to learn from, or the folders of a multi-root workspace (one dataset across all of them, paths
   * prefixed with each folder's name; see dataset/roots.ts). The run is stored under an id of all of them.
   */
  folder: string | readonly string[];
  modelPath: string;
  python: string;
  trainerRoot: string;
  enginePath: string;
  runsRoot: string;
  settings?: Partial<TrainSettings>;
  onEvent: (e: RunEvent) => void;
  signal?: AbortSignal;
  /** An engine the caller already runs; when absent, tune starts its own and stops it before training. */
  engine?: EngineClient;
  /** What the dataset step takes from the user: include/exclude patterns and the mix of example kinds. */
  dataset?: { include?: string[]; excludeGlobs?: string[]; mix?: ExampleMix };
  /** The held-out evaluation after training (defaults: evaluate.ts). */
  evaluation?: { maxTasks?: number; maxTokens?: number };
  /** An adapter update (src/core/update.ts, which checks the parent): continue from `parentAdapter` on the files changed since `sinceCommit`. */
  update?: { parentAdapter: string; parentRunId: string; sinceCommit: string; replayFraction?: number };
  /**
   * Plan the settings the user did not set from the device, the model and the dataset (planRun.ts), and let
   * `confirm` show, edit or decline the plan before training (declined: the run stops before training). Absent:
   * unset settings take DEFAULT_TRAIN_SETTINGS.
   */
  plan?: {
    confirm?: ConfirmPlan;
    /** Another memory estimator than the trainer's (tests). */
    estimate?: Estimator;
  };
  /** The trainer outlives the caller (the extension: a reloaded window attaches to it again; trainerDetached.ts). */
  detached?: boolean;
}

export interface TuneResult {
  runId: string;
  runDir: string;
  status: "done" | "stopped" | "failed";
  adapterPath: string | null;
  manifestPath: string | null;
  summary: DatasetSummary | null;
  valLossBase: number | null;
  valLoss: number | null;
  error: string | null;
  /** The adapter against the base model on held-out completions; null when no adapter was written or it could not run. */
  evaluation: EvaluationResult | null;
  /** Whether the adapter should become active, and why (with the numbers); null when no adapter was written. */
  decision: EvalDecision | null;
}

export const MODEL_SETTING = "repotune.modelPath";

// The trainer's documented defaults (trainer/README.md, "Defaults and what was measured"): with these the tiny
// model learns a small repository in well under a minute on a 2-core CPU. For real models the README notes that
// lr 3e-3 is on the high side (unmeasured here: no GPU); callers pass their own.
export const DEFAULT_TRAIN_SETTINGS: Omit<TrainSettings, "alpha"> = {
  steps: 200,
  seqLen: 256,
  rank: 16,
  lr: 3e-3,
  batch: 8,
  gradAccum: 1,
  gradCheckpoint: false,
  baseWeights: "auto",
  seed: 0,
  device: "auto",
};

/** Settings with defaults filled in; alpha follows rank (alpha = 2 x rank) unless given. */
export function resolveSettings(partial: Partial<TrainSettings> = {}): TrainSettings {
  const given = Object.fromEntries(Object.entries(partial).filter(([, v]) => v !== undefined && v !== null)) as Partial<TrainSettings>;
  const merged = { ...DEFAULT_TRAIN_SETTINGS, ...given };
  const settings = { ...merged, alpha: given.alpha ?? 2 * merged.rank };
  const checked = TrainSettingsSchema.safeParse(settings);
  if (!checked.success) {
    const issues = checked.error.issues.map((i) => `${i.path.join(".")} ${i.message}`).join("; ");
    throw new UserError(`The training settings are invalid (${issues}). Fix the repotune.training settings and start again.`);
  }
  if (settings.seqLen < 16) throw new UserError(`The sequence length ${settings.seqLen} is too short to hold a fill-in-the-middle example; use at least 16 (256 is a good start).`);
  return settings;
}

export async function tune(opts: TuneOptions): Promise<TuneResult> {
  let run: RunPaths;
  try {
    run = await createRun(opts.runsRoot, opts.folder);
  } catch (err) {
    const message = `RepoTune could not create its run folder under ${opts.runsRoot}: ${messageOf(err)}. Check that this folder is writable.`;
    safeCall(opts.onEvent, { type: "error", time: Date.now(), message });
    return { ...emptyResult("", ""), status: "failed", error: message };
  }
  return new Pipeline(opts, run).run();
}

class Pipeline {
  private result: TuneResult;
  private readonly started = Date.now();
  private lastStep: Extract<TrainerEvent, { event: "step" }> | null = null;
  private device: string | null = null;
  private heldOut: DatasetFiles | null = null;

  constructor(private readonly opts: TuneOptions, private readonly run_: RunPaths) {
    this.result = emptyResult(run_.runId, run_.runDir);
  }

  private emit(e: RunEvent): void {
    try {
      appendEvent(this.run_.eventsPath, e);
    } catch {
      // A full disk must not hide the run from the caller, who still gets every event.
    }
    safeCall(this.opts.onEvent, e);
  }

  async run(): Promise<TuneResult> {
    const { opts, run_: run } = this;
    const folders = datasetRoots(opts.folder).map((r) => r.folder);
    this.emit({
      type: "run", time: Date.now(), runId: run.runId, folder: this.firstFolder, modelPath: opts.modelPath, runDir: run.runDir,
      ...(folders.length > 1 ? { folders } : {}),
    });
    this.emit({ type: "phase", time: Date.now(), phase: "preparing" });
    let ownEngine: EngineClient | undefined;
    try {
      const settings = resolveSettings(opts.settings);
      for (const root of datasetRoots(opts.folder)) await checkFolder(root.folder);
      await checkGguf(opts.modelPath);
      // From the header alone (no weights loaded), the precise reason a model cannot be trained: truncated,
      // architecture, FIM tokens, weight types.
      const checked = await validateModel(opts.modelPath).catch((err: unknown) => {
        throw err instanceof ModelCheckError ? new UserError(err.message, MODEL_SETTING) : err;
      });
      // Slow checks run while the dataset is built; their failures are reported after it, in this order.
      const python = settle(checkPython(opts.python, opts.trainerRoot));
      const model = settle(fileIdentity(opts.modelPath));
      const commit = gitCommit(this.firstFolder);

      let planner = opts.plan ? await this.planner(settings, await python.unwrap(), checked) : null;
      const first = planner && await planner.beforeDataset().catch((err: unknown) => this.noPlan(err));
      if (!first) planner = null;
      if (planner && first) {
        if (!first.fits) throw new UserError(await planner.refusal(first), MODEL_SETTING);
        settings.seqLen = first.seqLen;
      }

      let engine = opts.engine;
      if (!engine) {
        engine = ownEngine = await EngineClient.start({ enginePath: opts.enginePath, log: (line) => this.engineLog(line) });
      }
      const info = await engine.load(opts.modelPath).catch((err: unknown) => {
        throw err instanceof EngineError && err.code === "bad_model" ? new UserError(err.message, MODEL_SETTING) : err;
      });
      let format;
      try {
        format = promptFormatFor(info);
      } catch (err) {
        throw new UserError(messageOf(err), MODEL_SETTING);
      }
      if (settings.seqLen > info.trainContextSize) {
        throw new UserError(`The sequence length ${settings.seqLen} is longer than the model's context (${info.trainContextSize} tokens). Lower repotune.training.seqLen.`);
      }
      // A large folder is tokenized on more cores: engines holding only the vocabulary join this one.
      const tokenizer = new TokenizerPool(engine, { enginePath: opts.enginePath, modelPath: opts.modelPath, log: (message) => this.emit({ type: "log", time: Date.now(), message }) });
      const built = await buildDataset({
        folder: opts.folder,
        outDir: run.dataDir,
        tokenizer,
        format,
        model: info,
        modelPath: opts.modelPath,
        seqLen: settings.seqLen,
        seed: settings.seed,
        exclude: [opts.runsRoot],
        include: opts.dataset?.include,
        excludeGlobs: opts.dataset?.excludeGlobs,
        mix: opts.dataset?.mix,
        // Sequences per optimizer step: the recommended steps count those.
        batch: settings.batch * settings.gradAccum,
        signal: opts.signal,
        log: (message) => this.emit({ type: "log", time: Date.now(), message }),
        update: opts.update && { sinceCommit: opts.update.sinceCommit, replayFraction: opts.update.replayFraction },
      }).finally(() => tokenizer.dispose());
      this.result.summary = built.summary;
      // Steps the user did not choose follow the data: about three passes over it (a small repository gets more
      // epochs, a large one is not cut short at a fixed count).
      if (!planner) this.recommendedSteps(settings, built.summary);
      for (const w of built.summary.warnings ?? []) this.emit({ type: "log", time: Date.now(), message: `Dataset: ${w}` });
      this.heldOut = built.files;
      this.emit({ type: "dataset", time: Date.now(), summary: built.summary });
      if (built.truncatedExamples > 0) {
        this.emit({ type: "log", time: Date.now(), message: `${built.truncatedExamples} examples were longer than ${settings.seqLen} tokens and were cut.` });
      }
      // Training wants the memory (GPU memory above all) the engine's copy of the model holds.
      await ownEngine?.dispose();
      ownEngine = undefined;

      const selftest = await python.unwrap();
      if (opts.signal?.aborted) return this.finishStopped(settings, await model.unwrap(), await commit, null);
      const planned = planner ? await this.confirmPlan(planner, built.summary, settings) : null;
      if (planned === "declined") return this.stoppedBeforeTraining();
      if (planned) {
        Object.assign(settings, planned);
      } else {
        if (planner) this.recommendedSteps(settings, built.summary);
        await this.estimate(opts, settings, settings.device === "auto" ? selftest.device ?? "cpu" : settings.device);
      }
      if (opts.signal?.aborted) return this.finishStopped(settings, await model.unwrap(), await commit, null);
      this.emit({ type: "phase", time: Date.now(), phase: "training" });
      const exit = await trainerRunner(opts.detached, run.runDir)({
        python: opts.python,
        trainerRoot: opts.trainerRoot,
        args: [...trainerArgs(opts.modelPath, run, settings), ...(opts.update ? ["--init-adapter", path.resolve(opts.update.parentAdapter)] : [])],
        onEvent: (event) => this.onTrainerEvent(event),
        onMalformed: (line) => this.emit({ type: "log", time: Date.now(), message: `trainer: ${line}` }),
        logPath: run.trainerLogPath,
        signal: opts.signal,
      });
      return await this.finishTraining(exit, settings, await model.unwrap(), await commit);
    } catch (err) {
      if (err instanceof DatasetAborted || opts.signal?.aborted) return this.stoppedBeforeTraining();
      return this.fail(err);
    } finally {
      await ownEngine?.dispose().catch(() => undefined);
    }
  }

  private async planner(settings: TrainSettings, selftest: TrainerSelftest, checked: CheckedModel): Promise<RunPlanner> {
    const { opts } = this;
    const device = deviceOf(selftest, settings.device);
    return new RunPlanner({
      python: opts.python, trainerRoot: opts.trainerRoot, modelPath: opts.modelPath, modelName: checked.name ?? path.basename(opts.modelPath),
      shape: checked.shape, device, given: opts.settings,
      measured: await lastMeasured(path.dirname(this.run_.runDir), opts.modelPath, device.kind, this.run_.runId),
      estimate: opts.plan?.estimate,
    });
  }

  /**
   * The plan for the dataset just built, shown to the caller to confirm or edit; null when declined. Without a
   * confirmation a plan that does not fit fails the run here, before the trainer's own preflight would.
   */
  private async confirmPlan(planner: RunPlanner, summary: DatasetSummary, settings: TrainSettings): Promise<TrainSettings | "declined" | null> {
    const proposal = await planner.afterDataset(summary, settings.seqLen).catch((err: unknown) => this.noPlan(err));
    if (!proposal) return null;
    const confirm = this.opts.plan?.confirm;
    if (!confirm && !proposal.plan.fits) throw new UserError(proposal.plan.notes.join(" "), MODEL_SETTING);
    if (confirm) this.emit({ type: "planProposed", time: Date.now() });
    const plan = confirm ? await confirm(proposal) : proposal.plan;
    if (plan === null) {
      this.emit({ type: "log", time: Date.now(), message: "The training plan was declined: nothing was trained." });
      return "declined";
    }
    const lines = planLines(proposal, plan);
    const edited = plan !== proposal.plan;
    this.emit({
      type: "plan", time: Date.now(), steps: plan.steps, rank: plan.rank, seqLen: plan.seqLen, batch: plan.batch, gradAccum: plan.gradAccum,
      gradCheckpoint: plan.gradCheckpoint, baseWeights: plan.baseWeights, peakBytes: plan.peakBytes, seconds: plan.seconds, edited, lines,
    });
    this.emit({ type: "estimate", time: Date.now(), device: proposal.device.kind, peakBytes: plan.peakBytes });
    return withPlan(settings, plan, this.opts.settings);
  }

  /** A plan that could not be made (the estimator failed) does not stop the run: it trains with the settings as given and the defaults. */
  private noPlan(err: unknown): null {
    this.emit({ type: "log", time: Date.now(), message: `No training plan (${messageOf(err)}): the run uses the repotune.training settings and their defaults.` });
    return null;
  }

  /** Steps the user did not choose follow the data: about three passes over it. */
  private recommendedSteps(settings: TrainSettings, summary: DatasetSummary): void {
    if (this.opts.settings?.steps !== undefined || summary.recommendedSteps === undefined) return;
    settings.steps = summary.recommendedSteps;
    this.emit({ type: "log", time: Date.now(), message: `Training for ${settings.steps} steps (about three passes over the data).` });
  }

  /** Reports the trainer's predicted peak memory; a failed estimate is logged and does not stop the run. */
  private async estimate(opts: TuneOptions, settings: TrainSettings, device: string): Promise<void> {
    try {
      const e = await estimateMemory({
        python: opts.python, trainerRoot: opts.trainerRoot, modelPath: path.resolve(opts.modelPath),
        seqLen: settings.seqLen, batch: settings.batch, rank: settings.rank, device,
        baseWeights: settings.baseWeights === "auto" ? undefined : settings.baseWeights, gradCheckpoint: settings.gradCheckpoint,
      });
      this.emit({ type: "estimate", time: Date.now(), device, peakBytes: e.total });
    } catch (err) {
      this.emit({ type: "log", time: Date.now(), message: `No memory estimate: ${messageOf(err)}` });
    }
  }

  private onTrainerEvent(event: TrainerEvent): void {
    if (event.event === "step") this.lastStep = event;
    if (event.event === "start") this.device = event.device;
    this.emit({ type: "trainer", time: Date.now(), event });
  }

  private async finishTraining(exit: TrainerExit, settings: TrainSettings, model: RunManifest["baseModel"], commit: string | null): Promise<TuneResult> {
    const final = exit.final;
    if (final?.event === "done") {
      const adapterPath = this.run_.adapterPath;
      if (!(await fs.stat(adapterPath).then((s) => s.isFile() && s.size > 0, () => false))) {
        return this.fail(new Error(`The trainer reported success but wrote no adapter at ${adapterPath}. See ${this.run_.trainerLogPath}.`));
      }
      this.result.valLossBase = final.val_loss_base;
      this.result.valLoss = final.val_loss;
      // Written before the evaluation too, so that a window closed while it runs still leaves a complete run.
      await writeManifest(this.run_.manifestPath, this.manifest("done", settings, model, commit, final.step, this.run_.adapterFile, null));
      this.result.adapterPath = adapterPath;
      this.result.manifestPath = this.run_.manifestPath;
      this.emit({ type: "adapter", time: Date.now(), adapterPath, manifestPath: this.run_.manifestPath });
      // The trainer writes the state with the lowest validation loss (adapter_step), and that is what is evaluated.
      const { evaluation, decision } = await this.evaluateAdapter(settings, adapterPath, final.adapter_step ?? final.step);
      this.result.evaluation = evaluation;
      this.result.decision = decision;
      await writeManifest(this.run_.manifestPath, this.manifest("done", settings, model, commit, final.step, this.run_.adapterFile, null));
      this.emit({ type: "phase", time: Date.now(), phase: "done" });
      return { ...this.result, status: "done" };
    }
    if (final?.event === "stopped") return this.finishStopped(settings, model, commit, final);
    if (final?.event === "error" || exit.spawnError || !exit.aborted) return this.fail(await trainerFailure(exit, this.run_));
    return this.finishStopped(settings, model, commit, null);
  }


  /**
   * Base model against base model + adapter on the held-out files, in an engine of the pipeline's own unless the
   * caller gave one (the trainer has exited, so its memory is free). A failure or a stop leaves the adapter on disk
   * but not kept, and says why.
   */
  private evaluateAdapter(settings: TrainSettings, adapterPath: string, adapterStep: number): Promise<{ evaluation: EvaluationResult | null; decision: EvalDecision }> {
    const { opts } = this;
    const heldOut = this.evaluationFiles();
    return evaluateRunAdapter({
      folder: heldOut.folder, roots: heldOut.roots, heldOut: async () => ({ files: heldOut.val, split: heldOut.split }),
      adapterPath, seed: settings.seed, maxTasks: opts.evaluation?.maxTasks, maxTokens: opts.evaluation?.maxTokens,
      windowTokens: settings.seqLen, charsPerToken: this.result.summary?.charsPerToken,
      trainer: { valLossBase: this.result.valLossBase, valLoss: this.result.valLoss, adapterStep }, signal: opts.signal,
      engine: opts.engine, enginePath: opts.enginePath, modelPath: opts.modelPath, engineLog: (line) => this.engineLog(line),
      evaluationPath: this.run_.evaluationPath, emit: (e) => this.emit(e),
    });
  }

  /** The held-out files across every folder of the run, with the folders they are read from. */
  private evaluationFiles(): { folder: string; roots: DatasetRoot[]; val: string[]; split?: DatasetFiles["split"] } {
    const heldOut = this.heldOut ?? { train: [], val: [] };
    return { folder: this.firstFolder, roots: datasetRoots(this.opts.folder), val: heldOut.val, split: heldOut.split };
  }

  /** The run event and the manifest name one folder: a multi-root run's first (its id covers all of them). */
  private get firstFolder(): string {
    return typeof this.opts.folder === "string" ? this.opts.folder : datasetRoots(this.opts.folder)[0].folder;
  }

  private async finishStopped(settings: TrainSettings, model: RunManifest["baseModel"], commit: string | null, stopped: Extract<TrainerEvent, { event: "stopped" }> | null): Promise<TuneResult> {
    const step = stopped?.step ?? this.lastStep?.step ?? 0;
    await writeManifest(this.run_.manifestPath, this.manifest("stopped", settings, model, commit, step, null, stopped?.checkpoint ?? null)).catch(() => undefined);
    this.result.manifestPath = this.run_.manifestPath;
    this.emit({ type: "phase", time: Date.now(), phase: "stopped" });
    return { ...this.result, status: "stopped" };
  }

  private stoppedBeforeTraining(): TuneResult {
    this.emit({ type: "phase", time: Date.now(), phase: "stopped" });
    return { ...this.result, status: "stopped" };
  }

  private fail(err: unknown): TuneResult {
    const message = messageOf(err);
    const action = err instanceof UserError ? err.setting : undefined;
    this.emit({ type: "error", time: Date.now(), message, ...(action ? { action } : {}) });
    this.emit({ type: "phase", time: Date.now(), phase: "failed" });
    return { ...this.result, status: "failed", error: message };
  }

  private manifest(
    status: RunManifest["status"], settings: TrainSettings, model: RunManifest["baseModel"], commit: string | null,
    steps: number, adapter: string | null, checkpoint: string | null,
  ): RunManifest {
    return {
      format: "repotune-run",
      version: 1,
      runId: this.run_.runId,
      repoId: this.run_.repoId,
      folder: this.firstFolder,
      created: new Date(this.started).toISOString(),
      finished: new Date().toISOString(),
      status,
      baseModel: model,
      gitCommit: commit,
      dataset: this.result.summary!,
      settings,
      metrics: {
        steps,
        valLossBase: this.result.valLossBase,
        valLoss: this.result.valLoss,
        trainLoss: this.lastStep?.loss ?? null,
        device: this.device,
        trainSeconds: (Date.now() - this.started) / 1000,
      },
      adapter,
      checkpoint,
      evaluation: this.result.evaluation ? summaryOf(this.result.evaluation) : null,
      decision: this.result.decision,
      parentAdapter: this.opts.update ? path.resolve(this.opts.update.parentAdapter) : null,
      ...(this.opts.update ? { parentRunId: this.opts.update.parentRunId } : {}),
    };
  }

  private engineLog(line: string): void {
    try {
      appendFileSync(`${this.run_.runDir}/engine.log`, line + "\n");
    } catch {
      // The engine's chatter is for debugging only.
    }
  }
}

/** The trainer's arguments for a run folder (resume.ts starts it the same way, adding --resume). */
/** How the trainer runs: attached to this process (the CLI), or detached from it in `runDir` (the extension). */
export function trainerRunner(detached: boolean | undefined, runDir: string): (o: TrainerProcessOptions) => Promise<TrainerExit> {
  return detached ? (o) => runDetachedTrainer({ ...o, runDir }) : runTrainer;
}

export function trainerArgs(modelPath: string, run: RunPaths, s: TrainSettings): string[] {
  return [
    "train",
    "--model", path.resolve(modelPath),
    "--data", run.dataDir,
    "--out", run.runDir,
    "--run-id", run.runId,
    "--adapter-out", run.adapterPath,
    "--steps", String(s.steps),
    "--lr", String(s.lr),
    "--rank", String(s.rank),
    "--alpha", String(s.alpha),
    "--batch", String(s.batch),
    "--grad-accum", String(s.gradAccum),
    "--base-weights", s.baseWeights,
    ...(s.gradCheckpoint ? ["--grad-checkpoint"] : []),
    "--seed", String(s.seed),
    "--device", s.device,
  ];
}

async function checkFolder(folder: string): Promise<void> {
  const stat = await fs.stat(folder).catch(() => null);
  if (!stat?.isDirectory()) throw new UserError(`The folder ${folder} does not exist or is not a folder. Open the folder of a code repository and fine-tune again.`);
}

/** A GGUF file starts with the bytes "GGUF": checked before the engine is asked to load anything. */
export async function checkGguf(modelPath: string): Promise<void> {
  const fix = `Set ${MODEL_SETTING} to a .gguf file of a base code model with fill-in-the-middle support (for example Qwen2.5-Coder 1.5B), or to "tiny" to try RepoTune with a tiny generated model.`;
  let handle;
  try {
    handle = await fs.open(modelPath, "r");
  } catch {
    throw new UserError(`The model file ${modelPath} does not exist or cannot be read. ${fix}`, MODEL_SETTING);
  }
  try {
    const magic = Buffer.alloc(4);
    const { bytesRead } = await handle.read(magic, 0, 4, 0);
    if (bytesRead < 4 || magic.toString("latin1") !== "GGUF") {
      throw new UserError(`The model file ${modelPath} is not a GGUF model (it does not start with the GGUF signature). ${fix}`, MODEL_SETTING);
    }
  } finally {
    await handle.close();
  }
}

function emptyResult(runId: string, runDir: string): TuneResult {
  return {
    runId, runDir, status: "failed", adapterPath: null, manifestPath: null, summary: null, valLossBase: null, valLoss: null, error: null,
    evaluation: null, decision: null,
  };
}

function safeCall(onEvent: (e: RunEvent) => void, e: RunEvent): void {
  try {
    onEvent(e);
  } catch {
    // A listener's bug must not break the run it listens to.
  }
}

/** A promise started now whose failure is only observed when awaited (no unhandled rejection meanwhile). */
function settle<T>(p: Promise<T>): { unwrap(): Promise<T> } {
  const settled = p.then((value) => ({ ok: true as const, value }), (error: unknown) => ({ ok: false as const, error }));
  return {
    async unwrap() {
      const r = await settled;
      if (r.ok) return r.value;
      throw r.error;
    },
  };
}
