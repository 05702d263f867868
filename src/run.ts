// Runs a fine-tune for the open workspace, keeps the snapshot the views draw, and activates the new adapter.
import * as vscode from "vscode";
import type { Ctx } from "./ctx";
import { tune, type TuneOptions, type TuneResult } from "./core/tune";
import { updateAdapter } from "./core/update";
import * as path from "node:path";
import { resumeRun } from "./core/resume";
import { readEvents } from "./core/runStore";
import { canAttach, otherFollower, trainerRunning } from "./core/trainerDetached";
import { restrictedModeMessage } from "./trust";
import { confirmPlanInVsCode } from "./planConfirm";
import { latestRunDir } from "./views/runModel";
import { applyRunEvent, emptySnapshot, snapshotForNewRun, snapshotFromEvents } from "./core/runSnapshot";
import { messageOf, UserError } from "./core/errors";
import type { RunEvent } from "./protocol/run";
import type { RunSnapshot } from "./protocol/webview";

/** How long a new window waits for the one before a reload to go before it follows that window's run. */
const FOLLOWER_WAIT_MS = 15_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class RunController implements vscode.Disposable {
  private _snapshot: RunSnapshot;
  private abort: AbortController | undefined;
  private _lastRun: TuneResult | null = null;
  private readonly changed = new vscode.EventEmitter<RunSnapshot>();
  readonly onDidChange = this.changed.event;

  constructor(private readonly ctx: Ctx) {
    this._snapshot = emptySnapshot(ctx.activeAdapter, ctx.config.modelPath ?? null);
    ctx.onDidChangeAdapter((a) => this.update({ ...this._snapshot, activeAdapter: a }));
  }

  get snapshot(): RunSnapshot {
    return this._snapshot;
  }

  get running(): boolean {
    return this.abort !== undefined;
  }

  get lastRun(): TuneResult | null {
    return this._lastRun;
  }

  private update(s: RunSnapshot): void {
    this._snapshot = s;
    this.changed.fire(s);
  }

  /** Fails the view and tells the user, for problems found before the pipeline starts. */
  private fail(err: unknown): void {
    const message = messageOf(err);
    const setting = err instanceof UserError ? err.setting : undefined;
    this.ctx.log.error(message);
    this.update({ ...this._snapshot, phase: "failed", error: message, errorAction: setting ?? null });
    void this.notifyError(message, setting);
  }

  private async notifyError(message: string, setting?: string): Promise<void> {
    // A model problem is fixed by choosing one: from RepoTune's list, a file, or the tiny model.
    const actions = [
      ...(setting === "repotune.modelPath" ? ["Choose Base Model"] : []), ...(setting === "repotune.pythonPath" ? ["Set Up Trainer Environment"] : []),
      ...(setting ? ["Open Settings"] : []), "Show Log",
    ];
    const choice = await vscode.window.showErrorMessage(`RepoTune: ${message}`, ...actions);
    if (choice === "Choose Base Model") await vscode.commands.executeCommand("repotune.chooseModel");
    if (choice === "Set Up Trainer Environment") await vscode.commands.executeCommand("repotune.setupEnvironment");
    if (choice === "Open Settings") await vscode.commands.executeCommand("workbench.action.openSettings", setting);
    if (choice === "Show Log") this.ctx.log.show(true);
  }

  start(): Promise<TuneResult | null> {
    return this.launch(tune);
  }

  /** "Update adapter": continues `parentAdapter` on the code changed since its commit; the result is activated only when kept. */
  startUpdate(parentAdapter: string): Promise<TuneResult | null> {
    return this.launch((opts) => updateAdapter({ ...opts, parentAdapter }));
  }

  private launch(pipeline: (opts: TuneOptions) => Promise<TuneResult>): Promise<TuneResult | null> {
    return this.drive(async (abort) => {
      this.update(snapshotForNewRun(this._snapshot));
      const folders = vscode.workspace.workspaceFolders ?? [];
      if (folders.length === 0) throw new UserError("Open a folder first: RepoTune learns from the files of the open workspace (File > Open Folder).");
      if (!vscode.workspace.isTrusted) {
        throw new UserError(restrictedModeMessage("Fine-tuning"));
      }
      // One run at a time per repository: two trainers on one GPU would both run out of memory.
      const repoId = (await this.ctx.repoId())!;
      const latest = await latestRunDir(this.ctx.runsRoot, repoId).catch(() => null);
      if (latest && trainerRunning(latest)) {
        throw new UserError("This repository is already training in another VS Code window (its Run view shows it). Stop it there, or wait until it finishes.");
      }
      const [python, modelPath] = await Promise.all([this.ctx.python(), this.ctx.modelPath()]);
      this.update({ ...this._snapshot, model: modelPath });
      return () => pipeline({
        // Every folder of a multi-root workspace: one dataset (paths prefixed by folder name), one run.
        folder: folders.length === 1 ? folders[0]!.uri.fsPath : folders.map((f) => f.uri.fsPath),
        modelPath,
        python,
        trainerRoot: this.ctx.trainerRoot,
        enginePath: this.ctx.enginePath,
        runsRoot: this.ctx.runsRoot,
        settings: this.ctx.config.training,
        // The settings the user did not set are planned once the data is known, and the plan shown to confirm.
        plan: { confirm: this.ctx.config.confirmPlan ? confirmPlanInVsCode : undefined },
        // Include/exclude settings of the (first) folder; .repotuneignore files are each folder's own.
        dataset: this.ctx.config.dataset(folders[0]!.uri),
        // The held-out evaluation asks for completions with the budget inline completions get.
        evaluation: { maxTokens: this.ctx.config.maxTokens },
        onEvent: (e) => this.onEvent(e),
        // The pipeline runs its own engine for tokenizing and stops it before training, so the model's memory
        // is free for the trainer; the window's engine keeps serving completions.
        signal: abort.signal,
        // A window reload does not end the run: the reloaded window follows the trainer again (reattach()).
        detached: true,
      });
    });
  }

  /**
   * This window's run, one at a time: `prepare` checks and gathers what the pipeline needs (a UserError says what is
   * missing) and returns it; the run then goes with a cancellable progress notification, and its result is acted on.
   */
  private async drive(prepare: (abort: AbortController) => Promise<() => Promise<TuneResult>>): Promise<TuneResult | null> {
    if (this.running) {
      void vscode.window.showInformationMessage("RepoTune is already training; stop the current run first.");
      return null;
    }
    // Claimed before the first await: a second start while the folder is being picked must see this run.
    const abort = (this.abort = new AbortController());
    try {
      await vscode.commands.executeCommand("setContext", "repotune.training", true);
      const work = await prepare(abort);
      const result = await this.withProgress(abort, work);
      this._lastRun = result;
      this.resumeEngine();
      await this.finish(result);
      return result;
    } catch (err) {
      this.fail(err);
      return null;
    } finally {
      this.resumeEngine();
      this.abort = undefined;
      await vscode.commands.executeCommand("setContext", "repotune.training", false);
    }
  }

  /**
   * Follows a run of this workspace whose trainer outlived the window that started it (the window reloaded; or
   * VS Code closed, and the trainer stopped itself with a checkpoint when nobody renewed its lease), to its end:
   * the charts continue, and the adapter is evaluated and activated as if the window had never gone.
   */
  async reattach(): Promise<void> {
    // Restricted Mode runs no training; a trainer left running stops itself when its lease runs out.
    if (this.running || !vscode.workspace.isTrusted) return;
    const repoId = await this.ctx.repoId();
    const dir = repoId ? await latestRunDir(this.ctx.runsRoot, repoId).catch(() => null) : null;
    if (!dir || !canAttach(dir)) return;
    // The window before a reload may take a moment to go; another window on this repository stays, and keeps the
    // run (this one shows it from its events file).
    for (let waited = 0; otherFollower(dir) !== undefined && waited < FOLLOWER_WAIT_MS; waited += 500) await sleep(500);
    if (otherFollower(dir) !== undefined) {
      this.ctx.log.info(`Another window follows the run in ${dir}; this one shows it from its events file.`);
      return;
    }
    this.ctx.log.info(`Following the trainer of ${dir} again.`);
    await this.resume(dir, true);
  }

  /**
   * Continues a stopped or interrupted run from its newest checkpoint, in its own folder (src/core/resume.ts);
   * `attach`: its trainer is still running, follow it instead.
   */
  async resume(runDir: string, attach = false): Promise<TuneResult | null> {
    return this.drive(async (abort) => {
      // The run's history first, so that the views continue its charts rather than start over.
      const events: RunEvent[] = await readEvents(path.join(runDir, "events.jsonl")).catch(() => []);
      this.update(snapshotFromEvents(events, this.ctx.activeAdapter));
      // A trainer followed again has started long ago: its start event is history, so the GPU is handed over here.
      const started = [...events].reverse().find((e) => e.type === "trainer" && e.event.event === "start");
      if (attach && started?.type === "trainer" && started.event.event === "start" && started.event.device !== "cpu") {
        this.pausedEngine = true;
        void this.ctx.engine.pause("training is using the GPU");
      }
      if (!vscode.workspace.isTrusted) {
        throw new UserError(restrictedModeMessage("Resuming a training run"));
      }
      // Following a trainer that runs already needs no interpreter: no self-test delays the charts.
      const python = attach ? this.ctx.config.pythonPath ?? "" : await this.ctx.python();
      return () => resumeRun({
        runDir,
        python,
        trainerRoot: this.ctx.trainerRoot,
        enginePath: this.ctx.enginePath,
        settings: this.ctx.config.training,
        evaluation: { maxTokens: this.ctx.config.maxTokens },
        onEvent: (e) => this.onEvent(e),
        signal: abort.signal,
        detached: true,
        attach,
      });
    });
  }

  stop(): void {
    if (!this.abort) {
      void vscode.window.showInformationMessage("RepoTune is not training.");
      return;
    }
    this.ctx.log.info("Stopping the training run (a checkpoint is saved).");
    this.abort.abort();
  }

  private onEvent(e: RunEvent): void {
    this.ctx.log.info(describe(e));
    // An adapter the evaluation keeps is active by the time the run shows as done (never a moment of "Activate").
    if (e.type === "adapter") this.newAdapter = e.adapterPath;
    if (e.type === "evaluation" && e.evaluation.decision.keep && this.newAdapter) void this.ctx.setActiveAdapter(this.newAdapter);
    if (e.type === "run") this.newAdapter = null;
    this.update(applyRunEvent(this._snapshot, e));
    // On a GPU, the window's engine gives its memory to the trainer and takes it back when training ends.
    if (e.type === "trainer" && e.event.event === "start" && e.event.device !== "cpu") {
      this.pausedEngine = true;
      void this.ctx.engine.pause("training is using the GPU");
    } else if (this.pausedEngine && (e.type === "phase" && e.phase !== "training")) {
      this.resumeEngine();
    }
  }

  private pausedEngine = false;
  /** The adapter the current run wrote, until the evaluation decides on it. */
  private newAdapter: string | null = null;

  private resumeEngine(): void {
    if (!this.pausedEngine) return;
    this.pausedEngine = false;
    void this.ctx.engine.resume();
  }

  private withProgress<T>(abort: AbortController, work: () => Promise<T>): Thenable<T> {
    return vscode.window.withProgress(
      { location: vscode.ProgressLocation.Notification, title: "RepoTune", cancellable: true },
      async (progress, token) => {
        token.onCancellationRequested(() => abort.abort());
        const sub = this.onDidChange((s) => progress.report({ message: progressMessage(s) }));
        try {
          return await work();
        } finally {
          sub.dispose();
        }
      },
    );
  }

  /**
   * Closing or reloading the window does not stop the trainer (it runs detached): a reloaded window follows it again,
   * and when VS Code is closed the trainer stops itself, with a checkpoint, once nobody renews its lease (30 s).
   */
  dispose(): void {
    this.changed.dispose();
  }

  private async finish(result: TuneResult): Promise<void> {
    if (result.status === "done" && result.adapterPath) {
      const reason = result.decision?.reason ?? "The adapter was not evaluated.";
      if (result.decision?.keep) {
        await this.ctx.setActiveAdapter(result.adapterPath);
        void vscode.window.showInformationMessage(`RepoTune: the new adapter is active for this workspace. ${reason}`);
      } else {
        this.ctx.log.info(`Adapter ${result.adapterPath} not activated: ${reason}`);
        // Not awaited: the run is over whether or not the user answers.
        void this.offerAnyway(result.adapterPath, reason);
      }
    } else if (result.status === "stopped") {
      void vscode.window.showInformationMessage("RepoTune: training stopped; the previous adapter stays active.");
    } else if (result.status === "failed") {
      void this.notifyError(result.error ?? "The run failed; see the log.");
    }
  }

  /** The previous adapter (or the base model) stays active unless the user asks for the rejected one. */
  private async offerAnyway(adapterPath: string, reason: string): Promise<void> {
    const choice = await vscode.window.showWarningMessage(`RepoTune: ${reason}`, "Activate anyway", "Show Log");
    if (choice === "Activate anyway") {
      await this.ctx.setActiveAdapter(adapterPath);
      void vscode.window.showInformationMessage("RepoTune: the new adapter is active for this workspace.");
    }
    if (choice === "Show Log") this.ctx.log.show(true);
  }
}

function progressMessage(s: RunSnapshot): string {
  switch (s.phase) {
    case "preparing":
      return s.dataset ? `Prepared ${s.dataset.filesUsed} files` : "Preparing data…";
    case "training":
      return s.steps ? `Training: step ${s.step}/${s.steps}${s.loss !== null ? `, loss ${s.loss.toFixed(3)}` : ""}` : "Starting the trainer…";
    case "evaluating":
      return "Comparing the adapter with the base model on held-out code…";
    default:
      return s.phase;
  }
}

function describe(e: RunEvent): string {
  switch (e.type) {
    case "trainer":
      return `[trainer] ${JSON.stringify(e.event)}`;
    case "log":
      return e.message;
    case "error":
      return `error: ${e.message}`;
    default:
      return JSON.stringify(e);
  }
}
