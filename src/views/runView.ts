// The Run view in the RepoTune activity-bar container (a webview view): the run's state and its actions, what the
// next run will take, and the workspace's adapters.
import * as vscode from "vscode";
import type { Ctx } from "../ctx";
import type { RunController } from "../run";
import { RunModel } from "./runModel";
import { onWebviewMessage, post, runWebviewCommand, webviewHtml, webviewOptions } from "./webviewHtml";

export class RunViewProvider implements vscode.WebviewViewProvider {
  static readonly viewId = "repotune.run";

  constructor(private readonly ctx: Ctx, private readonly run: RunController) {}

  resolveWebviewView(view: vscode.WebviewView): void {
    const uri = this.ctx.extension.extensionUri;
    const model = RunModel.for(this.ctx, this.run);
    view.webview.options = webviewOptions(uri);
    view.webview.html = webviewHtml(view.webview, uri, "run", "RepoTune Run");
    const send = () => post(view.webview, { type: "state", ...model.state(), files: null });
    const subs = [
      onWebviewMessage(view.webview, this.ctx.log, (m) => {
        if (m.type === "ready") void model.ready().then(send);
        else runWebviewCommand(m, model.runSnapshot.errorAction);
      }),
      model.onDidChange(send),
      // A view hidden and shown again starts a fresh page (no retained context): it asks with "ready" again.
    ];
    view.onDidDispose(() => subs.forEach((d) => d.dispose()));
  }
}
