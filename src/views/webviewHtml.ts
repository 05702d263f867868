// HTML shell shared by the Run view and the run panel: strict CSP with a nonce, local resources only.
import * as vscode from "vscode";
import { randomBytes } from "node:crypto";
import { FromWebview, type ToWebview } from "../protocol/webview";

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
<link rel="stylesheet" href="${uri("media", "webview.css")}">
${script === "panel" ? `<link rel="stylesheet" href="${uri("dist", "webview", "panel.css")}">` : ""}
<title>${title}</title>
</head>
<body>
<main id="root" aria-live="polite"></main>
<script nonce="${nonce}" src="${uri("dist", "webview", `${script}.js`)}"></script>
</body>
</html>`;
}

/** Validates every message from a webview; malformed ones are logged and dropped. */
export function onWebviewMessage(webview: vscode.Webview, log: vscode.LogOutputChannel, handle: (m: FromWebview) => void): vscode.Disposable {
  return webview.onDidReceiveMessage((raw) => {
    const r = FromWebview.safeParse(raw);
    if (r.success) handle(r.data);
    else log.warn(`Ignored a malformed message from a webview: ${r.error.message}`);
  });
}

export function post(webview: vscode.Webview, message: ToWebview): void {
  void webview.postMessage(message);
}

/** What a webview button asks for, run as the matching command. */
export function runWebviewCommand(m: FromWebview): void {
  if (m.type !== "command") return;
  const command = { fineTune: "repotune.fineTune", stop: "repotune.stopTraining", showRun: "repotune.showRun", openLog: "repotune.showLog" }[m.command];
  void vscode.commands.executeCommand(command);
}
