// The Run view in the RepoTune activity-bar container (a webview view).
import * as vscode from "vscode";
import type { Ctx } from "../ctx";
import type { RunController } from "../run";
import { onWebviewMessage, post, runWebviewCommand, webviewHtml, webviewOptions } from "./webviewHtml";

export class RunViewProvider implements vscode.WebviewViewProvider {
  static readonly viewId = "repotune.run";

  constructor(private readonly ctx: Ctx, private readonly run: RunController) {}

  resolveWebviewView(view: vscode.WebviewView): void {
    const uri = this.ctx.extension.extensionUri;
    view.webview.options = webviewOptions(uri);
    view.webview.html = webviewHtml(view.webview, uri, "run", "RepoTune Run");
    const subs = [
      onWebviewMessage(view.webview, this.ctx.log, (m) => {
        if (m.type === "ready") post(view.webview, { type: "snapshot", snapshot: this.run.snapshot });
        else runWebviewCommand(m);
      }),
      this.run.onDidChange((snapshot) => post(view.webview, { type: "snapshot", snapshot })),
    ];
    view.onDidDispose(() => subs.forEach((d) => d.dispose()));
  }
}
