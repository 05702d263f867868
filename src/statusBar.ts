// One status bar item: which base model and adapter serve completions, or the run in progress.
import * as vscode from "vscode";
import * as path from "node:path";
import type { Ctx } from "./ctx";
import type { RunController } from "./run";
import type { EngineState } from "./core/engineHost";

export class StatusBar implements vscode.Disposable {
  private readonly item = vscode.window.createStatusBarItem("repotune.status", vscode.StatusBarAlignment.Right, 100);
  private readonly subs: vscode.Disposable[] = [];

  constructor(private readonly ctx: Ctx, private readonly run: RunController) {
    this.item.name = "RepoTune";
    this.item.command = "repotune.quickActions";
    this.subs.push(
      run.onDidChange(() => this.render()),
      ctx.onDidChangeAdapter(() => this.render()),
      ctx.onDidChangeEngine(() => this.render()),
      vscode.workspace.onDidChangeConfiguration((e) => e.affectsConfiguration("repotune") && this.render()),
    );
    this.render();
    this.item.show();
  }

  private render(): void {
    const s = this.run.snapshot;
    const model = modelLabel(this.ctx.config.modelPath);
    const adapter = this.ctx.activeAdapter ? path.basename(this.ctx.activeAdapter, ".gguf") : null;
    const engine = this.ctx.engine.state;
    if (s.phase === "training" || s.phase === "preparing") {
      this.item.text = s.phase === "training" && s.steps ? `$(sync~spin) RepoTune ${s.step}/${s.steps}` : "$(sync~spin) RepoTune";
    } else if (!this.ctx.config.completionsEnabled) {
      this.item.text = "$(circle-slash) RepoTune";
    } else if (engine.kind === "restarting" || engine.kind === "failed") {
      this.item.text = "$(warning) RepoTune";
    } else if (engine.kind === "paused") {
      this.item.text = "$(debug-pause) RepoTune";
    } else if (engine.kind === "starting") {
      this.item.text = `$(loading~spin) ${model}`;
    } else {
      this.item.text = `$(sparkle) ${model}${adapter ? " + adapter" : ""}`;
    }
    const lines = [
      `**RepoTune**`,
      `Base model: ${this.ctx.config.modelPath ?? "not set"}`,
      `Adapter: ${adapter ?? "none (base model only)"}`,
      `Completions: ${this.ctx.config.completionsEnabled ? "on" : "off"}`,
    ];
    lines.push(`Engine: ${engineLine(engine)}`);
    lines.push("", "Click for RepoTune actions.");
    this.item.tooltip = new vscode.MarkdownString(lines.join("\n\n"));
    this.item.accessibilityInformation = { label: `RepoTune: ${model}, ${adapter ? `adapter ${adapter}` : "no adapter"}` };
  }

  dispose(): void {
    this.subs.forEach((d) => d.dispose());
    this.item.dispose();
  }
}

function engineLine(engine: EngineState): string {
  switch (engine.kind) {
    case "stopped":
      return "starts with the first completion";
    case "starting":
      return "loading the model…";
    case "ready":
      return `ready (${engine.info.arch})`;
    case "restarting":
      return `stopped unexpectedly (${engine.reason}); ` +
        (engine.retryAt === null ? "restarting now" : `restarting in ${Math.max(1, Math.ceil((engine.retryAt - Date.now()) / 1000))} s`);
    case "paused":
      return `paused: ${engine.reason}`;
    case "failed":
      return `could not start: ${engine.reason}`;
  }
}

function modelLabel(modelPath: string | undefined): string {
  if (!modelPath) return "no model";
  if (modelPath === "tiny") return "tiny";
  return path.basename(modelPath, ".gguf");
}
