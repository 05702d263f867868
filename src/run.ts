// Runs a fine-tune for the open workspace, keeps the snapshot the views draw, and activates the new adapter.
import * as vscode from "vscode";
import type { Ctx } from "./ctx";
import { tune, type TuneOptions, type TuneResult } from "./core/tune";
import { updateAdapter } from "./core/update";
import * as path from "node:path";
import { resumeRun } from "./core/resume";
import { readEvents } from "./core/runStore";
import { applyRunEvent, emptySnapshot, snapshotForNewRun, snapshotFromEvents } from "./core/runSnapshot";
import { messageOf, UserError } from "./core/errors";
import type { RunEvent } from "./protocol/run";
import type { RunSnapshot } from "./protocol/webview";

export class RunController implements vscode.Disposable {
  private _snapshot: RunSnapshot;
  private abort: AbortController | undefined;
  private _lastRun: TuneResult | null = null;
  private pipeline: Promise<TuneResult> | undefined;
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
    const actions = setting ? ["Open Settings", "Show Log"] : ["Show Log"];
    const choice = await vscode.window.showErrorMessage(`RepoTune: ${message}`, ...actions);
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

  private async launch(pipeline: (opts: TuneOptions) => Promise<TuneResult>): Promise<TuneResult | null> {
    if (this.running) {
      void vscode.window.showInformationMessage("RepoTune is already training; stop the current run first.");
      return null;
    }
    // Claimed before the first await: a second start while the folder is being picked must see this run.
    const abort = (this.abort = new AbortController());
    this.update(snapshotForNewRun(this._snapshot));
    try {
      const folder = await pickFolder();
      if (!folder) {
        this.fail(new UserError("Open a folder first: RepoTune learns from the files of the open workspace (File > Open Folder)."));
        return null;
      }
      if (!vscode.workspace.isTrusted) {
        this.fail(new UserError("Fine-tuning runs Python and reads every file of the workspace, so it needs a trusted workspace. Trust this folder to fine-tune."));
        return null;
      }
      await vscode.commands.executeCommand("setContext", "repotune.training", true);
      const [python, modelPath] = await Promise.all([this.ctx.python(), this.ctx.modelPath()]);
      this.update({ ...this._snapshot, model: modelPath });
      const result = await this.withProgress(abort, () => this.pipeline = pipeline({
          folder: folder.uri.fsPath,
          modelPath,
          python,
          trainerRoot: this.ctx.trainerRoot,
          enginePath: this.ctx.enginePath,
          runsRoot: this.ctx.runsRoot,
          settings: this.ctx.config.training,
          dataset: this.ctx.config.dataset(folder.uri),
          // The held-out evaluation asks for completions with the budget inline completions get.
          evaluation: { maxTokens: this.ctx.config.maxTokens },
          onEvent: (e) => this.onEvent(e),
          // The pipeline runs its own engine for tokenizing and stops it before training, so the model's memory
          // is free for the trainer; the window's engine keeps serving completions.
          signal: abort.signal,
        }));
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

  /** Continues a stopped or interrupted run from its newest checkpoint, in its own folder (src/core/resume.ts). */
  async resume(runDir: string): Promise<TuneResult | null> {
    if (this.running) {
      void vscode.window.showInformationMessage("RepoTune is already training; stop the current run first.");
      return null;
    }
    const abort = (this.abort = new AbortController());
    try {
      // The run's history first, so that the views continue its charts rather than start over.
      const events = await readEvents(path.join(runDir, "events.jsonl")).catch(() => []);
      this.update(snapshotFromEvents(events, this.ctx.activeAdapter));
      if (!vscode.workspace.isTrusted) {
        this.fail(new UserError("Resuming runs Python on this workspace's data, so it needs a trusted workspace. Trust this folder to resume."));
        return null;
      }
      await vscode.commands.executeCommand("setContext", "repotune.training", true);
      const python = await this.ctx.python();
      const result = await this.withProgress(abort, () => this.pipeline = resumeRun({
        runDir,
        python,
        trainerRoot: this.ctx.trainerRoot,
        enginePath: this.ctx.enginePath,
        settings: this.ctx.config.training,
        evaluation: { maxTokens: this.ctx.config.maxTokens },
        onEvent: (e) => this.onEvent(e),
        signal: abort.signal,
      }));
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
   * Closing the window stops training cleanly: the trainer gets SIGINT, finishes its step and checkpoints, and is
   * awaited (up to `graceMs`) so that no orphan holds the GPU and the run can be resumed.
   */
  async shutdown(graceMs: number): Promise<void> {
    if (!this.abort) return;
    this.abort.abort();
    await Promise.race([this.pipeline?.catch(() => undefined), new Promise((r) => setTimeout(r, graceMs))]);
  }

  dispose(): void {
    this.abort?.abort();
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

async function pickFolder(): Promise<vscode.WorkspaceFolder | undefined> {
  const folders = vscode.workspace.workspaceFolders ?? [];
  if (folders.length <= 1) return folders[0];
  return vscode.window.showWorkspaceFolderPick({ placeHolder: "Which folder should RepoTune learn from?" });
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
