// "RepoTune: Show training run": the same run in an editor panel, with a loss chart.
import * as vscode from "vscode";
import type { Ctx } from "../ctx";
import type { RunController } from "../run";
import { onWebviewMessage, post, runWebviewCommand, webviewHtml, webviewOptions } from "./webviewHtml";

export class RunPanel {
  private static current: RunPanel | undefined;

  static show(ctx: Ctx, run: RunController): void {
    if (RunPanel.current) {
      RunPanel.current.panel.reveal();
      return;
    }
    RunPanel.current = new RunPanel(ctx, run);
  }

  private readonly panel: vscode.WebviewPanel;

  private constructor(ctx: Ctx, run: RunController) {
    const uri = ctx.extension.extensionUri;
    this.panel = vscode.window.createWebviewPanel("repotune.runPanel", "RepoTune: Training run", vscode.ViewColumn.Active, {
      ...webviewOptions(uri),
      retainContextWhenHidden: false,
    });
    this.panel.iconPath = vscode.Uri.joinPath(uri, "media", "repotune.svg");
    this.panel.webview.html = webviewHtml(this.panel.webview, uri, "panel", "RepoTune: Training run");
    const webview = this.panel.webview;
    const subs = [
      onWebviewMessage(webview, ctx.log, (m) => {
        if (m.type === "ready") post(webview, { type: "snapshot", snapshot: run.snapshot });
        else runWebviewCommand(m);
      }),
      run.onDidChange((snapshot) => post(webview, { type: "snapshot", snapshot })),
    ];
    this.panel.onDidDispose(() => {
      subs.forEach((d) => d.dispose());
      RunPanel.current = undefined;
    });
  }
}
