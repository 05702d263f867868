// Shared by the Run view and the run panel: the VS Code API handle, validated messages, and the run summary markup.
import "@vscode-elements/elements/dist/vscode-button/index.js";
import "@vscode-elements/elements/dist/vscode-progress-bar/index.js";
import "@vscode-elements/elements/dist/vscode-badge/index.js";
import "@vscode-elements/elements/dist/vscode-divider/index.js";
import { ToWebview, type FromWebview, type RunSnapshot } from "../src/protocol/webview";
import { describeSkipped, formatBytes } from "../src/core/format";

declare function acquireVsCodeApi(): { postMessage(m: unknown): void; getState(): unknown; setState(s: unknown): void };
const vscodeApi = acquireVsCodeApi();

export function send(m: FromWebview): void {
  vscodeApi.postMessage(m);
}

/** Calls `render` with every valid snapshot; keeps the last one in webview state so a hidden view redraws at once. */
export function onSnapshot(render: (s: RunSnapshot) => void): void {
  const saved = ToWebview.safeParse(vscodeApi.getState());
  if (saved.success) render(saved.data.snapshot);
  window.addEventListener("message", (e: MessageEvent) => {
    const m = ToWebview.safeParse(e.data);
    if (!m.success) {
      console.warn("RepoTune: ignored a malformed message", m.error.message);
      return;
    }
    vscodeApi.setState(m.data);
    render(m.data.snapshot);
  });
  send({ type: "ready" });
}

export function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

const PHASE_LABEL: Record<RunSnapshot["phase"], string> = {
  idle: "Ready",
  preparing: "Preparing data",
  training: "Training",
  evaluating: "Evaluating",
  done: "Done",
  stopped: "Stopped",
  failed: "Failed",
};

const PHASE_ICON: Record<RunSnapshot["phase"], string> = {
  idle: "circle-large-outline",
  preparing: "loading codicon-modifier-spin",
  training: "loading codicon-modifier-spin",
  evaluating: "loading codicon-modifier-spin",
  done: "pass",
  stopped: "debug-stop",
  failed: "error",
};

const num = (x: number | null, digits = 3) => (x === null ? "–" : x.toFixed(digits));
const basename = (p: string) => p.split(/[\\/]/).pop() ?? p;

function row(label: string, value: string, id: string, title?: string): string {
  const tip = title ? ` title="${esc(title)}"` : "";
  return `<div class="row"><span class="label">${esc(label)}</span><span class="value" data-testid="${id}"${tip}>${esc(value)}</span></div>`;
}

/** The run's state as rows: shared markup, so the view and the panel always agree. */
export function summaryHtml(s: RunSnapshot): string {
  const parts: string[] = [];
  parts.push(`<h2 class="phase phase-${s.phase}"><span class="codicon codicon-${PHASE_ICON[s.phase]}" aria-hidden="true"></span> <span data-testid="phase">${PHASE_LABEL[s.phase]}</span></h2>`);
  if (s.phase === "preparing" || s.phase === "training") {
    const value = s.phase === "training" && s.steps ? ` value="${s.step}" max="${s.steps}"` : "";
    parts.push(`<vscode-progress-bar aria-label="Run progress"${value}></vscode-progress-bar>`);
  }
  if (s.model) parts.push(row("Base model", basename(s.model), "model"));
  if (s.dataset) {
    const skipped = Object.values(s.dataset.filesSkipped).reduce((a, b) => a + b, 0);
    const reasons = describeSkipped(s.dataset.filesSkipped);
    parts.push(row("Files used", String(s.dataset.filesUsed), "files-used"));
    parts.push(row("Files skipped", skipped ? `${skipped} (${reasons})` : "0", "files-skipped"));
    parts.push(row("Training tokens", s.dataset.trainTokens.toLocaleString("en-US"), "train-tokens"));
  }
  if (s.estimate) parts.push(row("Estimated peak memory", `${formatBytes(s.estimate.peakBytes)} (${s.estimate.device})`, "estimate"));
  if (s.device) parts.push(row("Device", s.device, "device"));
  if (s.steps) parts.push(row("Step", `${s.step} / ${s.steps}`, "step"));
  if (s.loss !== null) parts.push(row("Loss", num(s.loss), "loss"));
  if (s.tokensPerS !== null) parts.push(row("Tokens/s", Math.round(s.tokensPerS).toLocaleString("en-US"), "tokens-per-s"));
  if (s.valLossBase !== null) parts.push(row("Validation loss, base", num(s.valLossBase), "val-loss-base"));
  if (s.valLoss !== null && s.phase !== "training") parts.push(row("Validation loss, adapter", num(s.valLoss), "val-loss"));
  if (s.adapterPath) parts.push(row("New adapter", basename(s.adapterPath), "adapter", s.adapterPath));
  if (s.error) parts.push(`<p class="error" role="alert" data-testid="error"><span class="codicon codicon-error" aria-hidden="true"></span> ${esc(s.error)}</p>`);
  parts.push(row("Active adapter", s.activeAdapter ? basename(s.activeAdapter) : "none (base model only)", "active-adapter", s.activeAdapter ?? undefined));
  return parts.join("\n");
}

export function actionsHtml(s: RunSnapshot, includeShowRun: boolean): string {
  const busy = s.phase === "preparing" || s.phase === "training";
  const buttons = busy
    ? [`<vscode-button data-command="stop" icon="debug-stop" secondary>Stop training</vscode-button>`]
    : [`<vscode-button data-command="fineTune" icon="sparkle">${s.phase === "idle" ? "Fine-tune on this repo" : "Fine-tune again"}</vscode-button>`];
  if (includeShowRun) buttons.push(`<vscode-button data-command="showRun" icon="graph-line" secondary>Show training run</vscode-button>`);
  if (s.phase === "failed") buttons.push(`<vscode-button data-command="openLog" icon="output" secondary>Show log</vscode-button>`);
  return `<div class="actions">${buttons.join("")}</div>`;
}

/** Buttons carry data-command; one delegated listener sends them, validated on the other side. */
export function wireActions(root: HTMLElement): void {
  root.addEventListener("click", (e) => {
    const el = (e.target as HTMLElement).closest<HTMLElement>("[data-command]");
    const command = el?.dataset.command;
    if (command === "fineTune" || command === "stop" || command === "showRun" || command === "openLog") send({ type: "command", command });
  });
}
