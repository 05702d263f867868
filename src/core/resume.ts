// Continues a stopped or interrupted run from its newest checkpoint, in the same run folder: the trainer's --resume
// (exact: the same batches and numbers as an uninterrupted run), then what a finished fine-tune does (adapter,
// manifest, held-out evaluation). Its events go to the same events.jsonl, so the views draw one continuous run.
//
// Why not tune(): the pipeline builds a new dataset in a new run folder; a resumed run must train on the data its
// checkpoint was made with. The steps after training mirror tune.ts's; moving them into a function both call
// would remove the copy (see the issue 6 report).
import { promises as fs, appendFileSync } from "node:fs";
import * as path from "node:path";
import type { DatasetSummary, EvalDecision, RunEvent } from "../protocol/run";
import type { TrainerEvent } from "../protocol/trainer";
import { UserError, messageOf } from "./errors";
import { summaryOf, type EvaluationResult } from "./eval/evaluate";
import { evaluateRunAdapter } from "./eval/evaluateRun";
import { readDatasetFiles, readDatasetMeta } from "./dataset/write";
import { datasetRoots } from "./dataset/roots";
import type { TrainerExit } from "./trainerProcess";
import { attachTrainer } from "./trainerDetached";
import { resolveSettings, trainerArgs, trainerRunner, type TrainSettings, type TuneResult } from "./tune";
import {
  appendEvent, fileIdentity, gitCommit, readEvents, readManifest, runPaths, writeManifest,
  type RunManifest, type RunPaths,
} from "./runStore";
import { newestCheckpoint, trainerFailure } from "./trainerFailure";

/** Re-exported: callers and tests find a run's checkpoints here. */
export { newestCheckpoint };

export interface ResumeOptions {
  runDir: string;
  python: string;
  trainerRoot: string;
  enginePath: string;
  /** Settings for a run that ended before it recorded its own (killed trainer): the current ones, as at its start. */
  settings?: Partial<TrainSettings>;
  onEvent: (e: RunEvent) => void;
  signal?: AbortSignal;
  evaluation?: { maxTasks?: number; maxTokens?: number };
  /** Start the trainer detached from this process (the extension; trainerDetached.ts). */
  detached?: boolean;
  /**
   * Do not start a trainer: follow the one still training for this run (started detached by a window that has since
   * reloaded), then finish the run as usual.
   */
  attach?: boolean;
}

/** What resuming a run folder continues: its model, data, settings and newest checkpoint. */
export interface ResumePlan {
  paths: RunPaths;
  folder: string;
  /** All of a multi-root run's folders (the first is `folder`). */
  folders: string[];
  modelPath: string;
  settings: TrainSettings;
  summary: DatasetSummary;
  checkpoint: string;
  created: string;
}

/** The newest complete checkpoint of a run folder (step-NNNNNN.pt, the trainer's names), or null. */
/**
 * Checks that `runDir` can be resumed and says how; throws a UserError that says why not. `attaching`: its trainer
 * still runs, so it needs no checkpoint yet.
 */
export async function resumePlan(runDir: string, current: Partial<TrainSettings> = {}, attaching = false): Promise<ResumePlan> {
  const paths = runPathsOf(runDir);
  const events = await readEvents(paths.eventsPath).catch((err: unknown) => {
    throw new UserError(`The run folder ${runDir} has no readable events file (${messageOf(err)}), so it cannot be resumed. Fine-tune again.`);
  });
  const start = events.find((e): e is Extract<RunEvent, { type: "run" }> => e.type === "run");
  if (!start) throw new UserError(`The run in ${runDir} never started, so there is nothing to resume. Fine-tune again.`);
  const last = events.filter((e): e is Extract<RunEvent, { type: "phase" }> => e.type === "phase").pop()?.phase;
  if (last === "done") throw new UserError("This run already finished: its adapter is in the adapters list. Fine-tune again to train a new one.");
  const checkpoint = await newestCheckpoint(runDir) ?? (attaching ? "" : null);
  if (checkpoint === null) {
    throw new UserError("This run stopped before its first checkpoint, so there is nothing to resume from. Fine-tune again.");
  }
  const meta = await readDatasetMeta(paths.dataDir).catch(() => null);
  if (!meta) throw new UserError(`The training data of this run (${paths.dataDir}) is missing or unreadable, so it cannot be resumed. Fine-tune again.`);
  const manifest = await readManifest(paths.manifestPath).catch(() => null);
  // A killed trainer leaves no manifest: its start event recorded the steps and batch, the data its sequence length;
  // the rest is today's settings, which the trainer checks against the checkpoint (it refuses another rank).
  const trainerStart = events.map((e) => (e.type === "trainer" && e.event.event === "start" ? e.event : null)).filter((e) => e !== null).pop();
  const settings = manifest?.settings ?? resolveSettings({
    ...current,
    seqLen: meta.seq_len,
    ...(trainerStart ? { steps: trainerStart.steps, batch: trainerStart.batch } : {}),
  });
  return {
    paths, folder: start.folder, folders: start.folders ?? [start.folder], modelPath: start.modelPath, settings, summary: meta.summary, checkpoint,
    created: manifest?.created ?? new Date(start.time).toISOString(),
  };
}

/** Continues the run in `runDir`. Never throws for user errors: returns status "failed" with a message, as tune() does. */
export async function resumeRun(opts: ResumeOptions): Promise<TuneResult> {
  const paths = runPathsOf(opts.runDir);
  const emit = (e: RunEvent) => {
    try {
      appendEvent(paths.eventsPath, e);
    } catch {
      // A full disk must not hide the run from the caller.
    }
    try {
      opts.onEvent(e);
    } catch {
      // A listener's bug must not break the run.
    }
  };
  const result: TuneResult = {
    runId: paths.runId, runDir: paths.runDir, status: "failed", adapterPath: null, manifestPath: null, summary: null,
    valLossBase: null, valLoss: null, error: null, evaluation: null, decision: null,
  };
  const fail = (err: unknown): TuneResult => {
    const message = messageOf(err);
    const action = err instanceof UserError ? err.setting : undefined;
    emit({ type: "error", time: Date.now(), message, ...(action ? { action } : {}) });
    emit({ type: "phase", time: Date.now(), phase: "failed" });
    return { ...result, status: "failed", error: message };
  };

  let plan: ResumePlan;
  let history: RunEvent[] = [];
  try {
    plan = await resumePlan(opts.runDir, opts.settings, opts.attach);
    if (opts.attach) history = await readEvents(paths.eventsPath);
  } catch (err) {
    return fail(err);
  }
  result.summary = plan.summary;
  if (opts.attach) {
    emit({ type: "log", time: Date.now(), message: "The trainer went on without the window: following it again." });
  } else {
    emit({
      type: "run", time: Date.now(), runId: paths.runId, folder: plan.folder, modelPath: plan.modelPath, runDir: paths.runDir,
      ...(plan.folders.length > 1 ? { folders: plan.folders } : {}),
    });
    emit({ type: "log", time: Date.now(), message: `Resuming from ${path.basename(plan.checkpoint)}.` });
  }
  emit({ type: "phase", time: Date.now(), phase: "training" });
  const started = Date.now();
  let lastStep: Extract<TrainerEvent, { event: "step" }> | null = null;
  let device: string | null = null;
  try {
    const follow = {
      onEvent: (event: TrainerEvent) => {
        if (event.event === "step") lastStep = event;
        if (event.event === "start") device = event.device;
        emit({ type: "trainer", time: Date.now(), event });
      },
      onMalformed: (line: string) => emit({ type: "log", time: Date.now(), message: `trainer: ${line}` }),
      logPath: paths.trainerLogPath,
      signal: opts.signal,
    };
    let exit: TrainerExit;
    if (opts.attach) {
      // What the history holds already (the trainer's own timestamps) is not emitted twice.
      const seen = history.reduce((t, e) => (e.type === "trainer" && e.event.time !== undefined ? Math.max(t, e.event.time) : t), 0);
      for (const e of history) {
        if (e.type !== "trainer") continue;
        if (e.event.event === "step") lastStep = e.event;
        if (e.event.event === "start") device = e.event.device;
      }
      const attached = attachTrainer(paths.runDir, seen, follow);
      if (!attached) throw new UserError("The trainer of this run is no longer running and left no result. Resume the run to continue from its newest checkpoint.");
      exit = await attached;
    } else {
      exit = await trainerRunner(opts.detached, paths.runDir)({
        python: opts.python,
        trainerRoot: opts.trainerRoot,
        args: [...trainerArgs(plan.modelPath, paths, plan.settings), "--resume"],
        ...follow,
      });
    }
    const [model, commit] = await Promise.all([fileIdentity(plan.modelPath), gitCommit(plan.folder)]);
    const manifest = (status: RunManifest["status"], steps: number, adapter: string | null, checkpoint: string | null): RunManifest => ({
      format: "repotune-run", version: 1, runId: paths.runId, repoId: paths.repoId, folder: plan.folder, created: plan.created,
      finished: new Date().toISOString(), status, baseModel: model, gitCommit: commit, dataset: plan.summary, settings: plan.settings,
      metrics: {
        steps, valLossBase: result.valLossBase, valLoss: result.valLoss, trainLoss: (lastStep as { loss: number } | null)?.loss ?? null,
        device, trainSeconds: (Date.now() - started) / 1000,
      },
      adapter, checkpoint,
      evaluation: result.evaluation ? summaryOf(result.evaluation) : null,
      decision: result.decision,
      parentAdapter: null,
    });
    const final = exit.final;
    if (final?.event === "done") {
      if (!(await fs.stat(paths.adapterPath).then((s) => s.isFile() && s.size > 0, () => false))) {
        return fail(new Error(`The trainer reported success but wrote no adapter at ${paths.adapterPath}. See ${paths.trainerLogPath}.`));
      }
      result.valLossBase = final.val_loss_base;
      result.valLoss = final.val_loss;
      await writeManifest(paths.manifestPath, manifest("done", final.step, paths.adapterFile, null));
      result.adapterPath = paths.adapterPath;
      result.manifestPath = paths.manifestPath;
      emit({ type: "adapter", time: Date.now(), adapterPath: paths.adapterPath, manifestPath: paths.manifestPath });
      const { evaluation, decision } = await evaluateResumed(opts, plan, emit, final.adapter_step ?? final.step, result);
      result.evaluation = evaluation;
      result.decision = decision;
      await writeManifest(paths.manifestPath, manifest("done", final.step, paths.adapterFile, null));
      emit({ type: "phase", time: Date.now(), phase: "done" });
      return { ...result, status: "done" };
    }
    if (final?.event === "stopped" || (exit.aborted && final?.event !== "error")) {
      const step = final?.event === "stopped" ? final.step : (lastStep as { step: number } | null)?.step ?? 0;
      const checkpoint = final?.event === "stopped" ? final.checkpoint : await newestCheckpoint(paths.runDir);
      await writeManifest(paths.manifestPath, manifest("stopped", step, null, checkpoint)).catch(() => undefined);
      result.manifestPath = paths.manifestPath;
      emit({ type: "phase", time: Date.now(), phase: "stopped" });
      return { ...result, status: "stopped" };
    }
    return fail(await trainerFailure(exit, paths));
  } catch (err) {
    return fail(err);
  }
}

/** The held-out evaluation of the resumed run's adapter, on the files its dataset held out (files.json). */
function evaluateResumed(
  opts: ResumeOptions, plan: ResumePlan, emit: (e: RunEvent) => void, adapterStep: number, result: TuneResult,
): Promise<{ evaluation: EvaluationResult | null; decision: EvalDecision }> {
  return evaluateRunAdapter({
    folder: plan.folder, roots: datasetRoots(plan.folders),
    heldOut: async () => {
      const files = await readDatasetFiles(plan.paths.dataDir);
      return { files: files.val, split: files.split };
    },
    adapterPath: plan.paths.adapterPath, seed: plan.settings.seed, maxTasks: opts.evaluation?.maxTasks, maxTokens: opts.evaluation?.maxTokens,
    windowTokens: plan.settings.seqLen, charsPerToken: plan.summary.charsPerToken,
    trainer: { valLossBase: result.valLossBase, valLoss: result.valLoss, adapterStep }, signal: opts.signal,
    enginePath: opts.enginePath, modelPath: plan.modelPath, engineLog: (line) => engineLog(plan.paths, line),
    evaluationPath: plan.paths.evaluationPath, emit,
  });
}

function runPathsOf(runDir: string): RunPaths {
  const dir = path.resolve(runDir);
  return runPaths(path.dirname(path.dirname(dir)), path.basename(path.dirname(dir)), path.basename(dir));
}

function engineLog(paths: RunPaths, line: string): void {
  try {
    appendFileSync(path.join(paths.runDir, "engine.log"), line + "\n");
  } catch {
    // The engine's chatter is for debugging only.
  }
}
