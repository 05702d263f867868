// HTML shell shared by the Run view and the report panel (strict CSP with a nonce, local resources only), and the
// one place where what a webview asks for becomes a command.
import * as vscode from "vscode";
import { randomBytes } from "node:crypto";
import { parseFromWebview, type FromWebview, type ToWebview, type ViewCommand } from "../protocol/webview";

export function webviewOptions(extensionUri: vscode.Uri): vscode.WebviewOptions {
  return { enableScripts: true, localResourceRoots: [vscode.Uri.joinPath(extensionUri, "dist"), vscode.Uri.joinPath(extensionUri, "media")] };
}

export function webviewHtml(webview: vscode.Webview, extensionUri: vscode.Uri, script: "run" | "panel", title: string): string {
  const nonce = randomBytes(16).toString("base64");
  const uri = (...p: string[]) => webview.asWebviewUri(vscode.Uri.joinPath(extensionUri, ...p)).toString();
  const csp = [
    "default-src 'none'",
    `img-src ${webview.cspSource} data:`,
    `font-src ${webview.cspSource}`,
    // vscode-elements and uPlot set element styles from script; no remote or inline <style> sources besides.
    `style-src ${webview.cspSource} 'unsafe-inline'`,
    `script-src 'nonce-${nonce}'`,
  ].join("; ");
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="UTF-8">
<meta http-equiv="Content-Security-Policy" content="${csp}">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<link rel="stylesheet" href="${uri("dist", "codicons", "codicon.css")}" id="vscode-codicon-stylesheet">
<link rel="stylesheet" href="${uri("dist", "webview", `${script}.css`)}">
<link rel="stylesheet" href="${uri("media", "webview.css")}">
<title>${title}</title>
</head>
<body>
<main id="root"></main>
<script nonce="${nonce}" src="${uri("dist", "webview", `${script}.js`)}"></script>
</body>
</html>`;
}

/** Validates every message from a webview; malformed ones are logged and dropped. */
export function onWebviewMessage(webview: vscode.Webview, log: vscode.LogOutputChannel, handle: (m: FromWebview) => void): vscode.Disposable {
  return webview.onDidReceiveMessage((raw) => {
    const r = parseFromWebview(raw);
    if (r.ok) handle(r.message);
    else log.warn(`Ignored a malformed message from a webview: ${r.reason}`);
  });
}

export function post(webview: vscode.Webview, message: ToWebview): void {
  void webview.postMessage(message);
}

const COMMANDS: Record<ViewCommand, [string, ...unknown[]]> = {
  fineTune: ["repotune.fineTune"],
  stop: ["repotune.stopTraining"],
  resume: ["repotune.resumeTraining"],
  showRun: ["repotune.showRun"],
  openLog: ["repotune.showLog"],
  openSettings: ["workbench.action.openSettings", "repotune.training"],
  retrySuggested: ["repotune.retryWithSuggestedSettings"],
  deactivateAdapter: ["repotune.useBaseModel"],
  // Filled in by the caller: the setting the error names.
  openErrorSetting: ["workbench.action.openSettings"],
};

/** What a webview button asks for, run as the matching command. `errorSetting`: the setting the shown error names. */
export function runWebviewCommand(m: FromWebview, errorSetting: string | null): void {
  if (m.type === "command") {
    const [command, ...args] = COMMANDS[m.command];
    if (m.command === "openErrorSetting") args.push(errorSetting ?? "repotune");
    void vscode.commands.executeCommand(command, ...args);
  } else if (m.type === "adapter") {
    const command = { activate: "repotune.chooseAdapter", delete: "repotune.deleteAdapter", reveal: "repotune.revealAdapter", report: "repotune.openRunReport" }[m.action];
    // The report is that of the adapter's run folder.
    const arg = m.action === "report" ? m.adapterPath.replace(/[\\/][^\\/]+$/, "") : m.adapterPath;
    void vscode.commands.executeCommand(command, arg);
  }
}
