// The training report (an editor panel): charts, the dataset report, the evaluation, hyperparameters, device and
// the event log of one run. It follows this window's run, or shows a chosen run folder read back from disk. Closing
// it never stops a run; reopening it redraws the run's whole history (from memory, or from its events file).
import * as vscode from "vscode";
import * as path from "node:path";
import type { Ctx } from "../ctx";
import type { RunController } from "../run";
import type { RunFiles, RunSnapshot } from "../protocol/webview";
import { DiskRun, RunModel, readRunFiles } from "./runModel";
import { onWebviewMessage, post, runWebviewCommand, webviewHtml, webviewOptions } from "./webviewHtml";

export class RunPanel {
  private static current: RunPanel | undefined;

  /** Shows the report of `runDir`, or of the run the Run view shows when none is given. */
  static show(ctx: Ctx, run: RunController, runDir?: string): void {
    const model = RunModel.for(ctx, run);
    const pinned = runDir && path.resolve(runDir) !== model.runSnapshot.runDir ? path.resolve(runDir) : null;
    if (RunPanel.current) {
      RunPanel.current.pin(pinned);
      RunPanel.current.panel.reveal();
      return;
    }
    RunPanel.current = new RunPanel(ctx, model, pinned);
  }

  private readonly panel: vscode.WebviewPanel;
  private disk: DiskRun | null = null;
  private files: RunFiles | null = null;
  private filesKey = "";
  private readonly subs: vscode.Disposable[] = [];

  private constructor(ctx: Ctx, private readonly model: RunModel, pinned: string | null) {
    const uri = ctx.extension.extensionUri;
    this.panel = vscode.window.createWebviewPanel("repotune.runPanel", "RepoTune: Training run", vscode.ViewColumn.Active, {
      ...webviewOptions(uri),
      retainContextWhenHidden: false,
    });
    this.panel.iconPath = vscode.Uri.joinPath(uri, "media", "repotune.svg");
    this.panel.webview.html = webviewHtml(this.panel.webview, uri, "panel", "RepoTune: Training run");
    this.subs.push(
      onWebviewMessage(this.panel.webview, ctx.log, (m) => {
        if (m.type === "ready") void this.model.ready().then(() => this.send());
        else runWebviewCommand(m, this.snapshot().errorAction);
      }),
      model.onDidChange(() => void this.send()),
    );
    this.pin(pinned);
    this.panel.onDidDispose(() => {
      this.subs.forEach((d) => d.dispose());
      this.disk?.dispose();
      RunPanel.current = undefined;
    });
  }

  private pin(runDir: string | null): void {
    if (this.disk?.runDir === runDir) return;
    this.disk?.dispose();
    this.disk = runDir ? new DiskRun(runDir) : null;
    this.files = null;
    this.filesKey = "";
    if (this.disk) {
      this.disk.onDidChange(() => void this.send());
      void this.disk.load().then(() => this.send());
    } else {
      void this.send();
    }
  }

  private snapshot(): RunSnapshot {
    const shown = this.disk?.current;
    return shown ? { ...shown, activeAdapter: this.model.runSnapshot.activeAdapter } : this.model.runSnapshot;
  }

  private async send(): Promise<void> {
    const run = this.snapshot();
    // report.json appears with the dataset, the manifest at the end: read again when the phase moves on.
    const key = `${run.runDir}|${run.phase}|${run.dataset ? 1 : 0}`;
    if (run.runDir && key !== this.filesKey) {
      this.filesKey = key;
      this.files = await readRunFiles(run.runDir);
    }
    post(this.panel.webview, { type: "state", run, workspace: this.model.state().workspace, files: run.runDir ? this.files : null });
  }
}
