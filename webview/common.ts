// Shared by the Run view and the report panel: the VS Code API handle, validated messages, number formats, the
// run's state and actions as markup (so the view and the panel always agree), and re-rendering that keeps focus.
import "@vscode-elements/elements/dist/vscode-button/index.js";
import "@vscode-elements/elements/dist/vscode-toolbar-button/index.js";
import "@vscode-elements/elements/dist/vscode-progress-bar/index.js";
import "@vscode-elements/elements/dist/vscode-badge/index.js";
import "@vscode-elements/elements/dist/vscode-collapsible/index.js";
import type { AdapterAction, FromWebview, RunSnapshot, ToWebview, ViewCommand, WorkspaceInfo } from "../src/protocol/webview";
import { describeSkipped, formatBytes } from "../src/core/format";

export type State = Extract<ToWebview, { type: "state" }>;

declare function acquireVsCodeApi(): { postMessage(m: unknown): void; getState(): unknown; setState(s: unknown): void };
const vscodeApi = acquireVsCodeApi();

export function send(m: FromWebview): void {
  vscodeApi.postMessage(m);
}

/** Calls `render` with every valid state; keeps the last one in webview state so a reshown view redraws at once. */
export function onState(render: (s: State) => void): void {
  const saved: unknown = vscodeApi.getState();
  if (isState(saved)) render(saved);
  window.addEventListener("message", (e: MessageEvent) => {
    const m: unknown = e.data;
    if (!isState(m)) {
      console.warn("RepoTune: ignored a message that is not a state");
      return;
    }
    vscodeApi.setState(m);
    render(m);
  });
  send({ type: "ready" });
}

/**
 * Messages come only from RepoTune's extension host, whose posts are typed by the schema (src/protocol/webview.ts
 * ToWebview); the webview checks their envelope only. Parsing them here again took zod into this bundle (450 of its
 * 580 KB) for no protection: what needs validating is what a webview sends, and the host does that.
 */
function isState(m: unknown): m is State {
  const s = m as Partial<State> | null;
  return typeof s === "object" && s !== null && s.type === "state" && typeof s.run === "object" && s.run !== null && typeof s.workspace === "object" && s.workspace !== null;
}

export function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

export const num = (x: number | null | undefined, digits = 3) => (x === null || x === undefined ? "–" : x.toFixed(digits));
export const int = (x: number) => Math.round(x).toLocaleString("en-US");
export const basename = (p: string) => p.split(/[\\/]/).pop() ?? p;
export const pct = (x: number, digits = 1) => `${(x * 100).toFixed(digits)}%`;
export const signedPct = (x: number, digits = 1) => `${x >= 0 ? "+" : "−"}${(Math.abs(x) * 100).toFixed(digits)}`;

/** 75 s -> "1 m 15 s"; 4000 s -> "1 h 07 m". */
export function duration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} m ${String(s % 60).padStart(2, "0")} s`;
  return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")} m`;
}

export function dateTime(ms: number | string): string {
  return new Date(ms).toLocaleString("en-US", { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", hour12: false });
}

export const PHASE_LABEL: Record<RunSnapshot["phase"], string> = {
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

export const isBusy = (s: RunSnapshot) => s.phase === "preparing" || s.phase === "training" || s.phase === "evaluating";

/** Seconds since the run started, to its end when it has ended. */
export function elapsedSeconds(s: RunSnapshot, now = Date.now()): number | null {
  if (s.startedAt === null) return null;
  return ((s.endedAt ?? now) - s.startedAt) / 1000;
}

/** Seconds of training left, from the trainer's own pace over the steps it ran in this attempt. */
export function etaSeconds(s: RunSnapshot): number | null {
  const trained = s.step - (s.resumedFrom ?? 0);
  if (s.phase !== "training" || s.trainSeconds === null || trained <= 0 || s.steps <= s.step) return s.phase === "training" && s.steps === s.step && s.steps > 0 ? 0 : null;
  return (s.trainSeconds / trained) * (s.steps - s.step);
}

export function row(label: string, value: string, id: string, title?: string): string {
  const tip = title ? ` title="${esc(title)}"` : "";
  return `<div class="row"><span class="label">${esc(label)}</span><span class="value" data-testid="${id}"${tip}>${esc(value)}</span></div>`;
}

/** A row whose value is markup already escaped by the caller. */
export function rowHtml(label: string, valueHtml: string, id: string): string {
  return `<div class="row"><span class="label">${esc(label)}</span><span class="value" data-testid="${id}">${valueHtml}</span></div>`;
}

export function button(command: ViewCommand, label: string, icon: string, opts: { secondary?: boolean; disabled?: string } = {}): string {
  const secondary = opts.secondary ? " secondary" : "";
  // A disabled button says why in its tooltip; the reason is also its accessible description.
  const disabled = opts.disabled ? ` disabled title="${esc(opts.disabled)}" aria-description="${esc(opts.disabled)}"` : "";
  return `<vscode-button data-command="${command}" icon="${icon}"${secondary}${disabled}>${esc(label)}</vscode-button>`;
}

export function adapterButton(action: AdapterAction, adapterPath: string, icon: string, label: string): string {
  return `<vscode-toolbar-button data-adapter-action="${action}" data-adapter="${esc(adapterPath)}" icon="${icon}" label="${esc(label)}" title="${esc(label)}"></vscode-toolbar-button>`;
}

/** The phase heading and a one-line status: what is happening now, in words with the numbers. */
export function headerHtml(s: RunSnapshot, w: WorkspaceInfo): string {
  const when = !w.live && s.endedAt !== null ? `<span class="muted when" data-testid="last-run">last run, ${esc(dateTime(s.endedAt))}</span>` : "";
  return `<h2 class="phase phase-${s.phase}"><span class="codicon codicon-${PHASE_ICON[s.phase]}" aria-hidden="true"></span> <span data-testid="phase">${PHASE_LABEL[s.phase]}</span>${when}</h2>
<p class="status" role="status" data-testid="status">${esc(statusLine(s, w))}</p>`;
}

function statusLine(s: RunSnapshot, w: WorkspaceInfo): string {
  switch (s.phase) {
    case "idle":
      return w.folder ? "Ready to fine-tune on this workspace." : "Open a folder to fine-tune on it.";
    case "preparing":
      if (s.awaitingPlan) return `Prepared ${s.dataset?.filesUsed ?? 0} files. Start the training plan shown, or edit it.`;
      return s.dataset ? `Prepared ${s.dataset.filesUsed} files; starting the trainer…` : "Reading, filtering and tokenizing the workspace's files…";
    case "training":
      return s.steps ? `Step ${s.step} of ${s.steps}${s.resumedFrom !== null ? ` (resumed from ${s.resumedFrom})` : ""}` : "Starting the trainer…";
    case "evaluating":
      return s.evalProgress ? `Comparing base and adapter on held-out code: ${s.evalProgress.done} of ${s.evalProgress.total} completions` : "Comparing base and adapter on held-out code…";
    case "done":
      return s.evaluation ? s.evaluation.decision.reason : s.adapterPath ? "Training finished; the adapter was not evaluated." : "Finished.";
    case "stopped":
      return s.checkpoint ? `Stopped at step ${s.step} of ${s.steps}; a checkpoint at step ${s.checkpoint.step} can be resumed.` : `Stopped at step ${s.step}${s.steps ? ` of ${s.steps}` : ""}, before a checkpoint.`;
    case "failed":
      if (s.checkpoint) return `Failed at step ${s.step}; the checkpoint at step ${s.checkpoint.step} can be resumed.`;
      return s.trainer ? `Training failed at step ${s.step}, before its first checkpoint.` : "The run failed before training started.";
  }
}

export function progressHtml(s: RunSnapshot): string {
  if (s.phase === "training" && s.steps) return `<vscode-progress-bar aria-label="Training progress" value="${s.step}" max="${s.steps}"></vscode-progress-bar>`;
  if (s.phase === "evaluating" && s.evalProgress) return `<vscode-progress-bar aria-label="Evaluation progress" value="${s.evalProgress.done}" max="${s.evalProgress.total}"></vscode-progress-bar>`;
  if (isBusy(s)) return `<vscode-progress-bar aria-label="Run progress"></vscode-progress-bar>`;
  return "";
}

/** The dataset as the summary counts it: files used and skipped by reason, tokens, secrets left out. */
export function datasetRows(s: RunSnapshot): string {
  const d = s.dataset;
  if (!d) return "";
  const skipped = Object.values(d.filesSkipped).reduce((a, b) => a + b, 0);
  return [
    row("Files used", int(d.filesUsed), "files-used"),
    row("Files skipped", skipped ? `${int(skipped)} (${describeSkipped(d.filesSkipped)})` : "0", "files-skipped"),
    row("Secrets excluded", `${int(d.filesSkipped.secret ?? 0)} files`, "secrets-excluded"),
    row("Training tokens", int(d.trainTokens), "train-tokens"),
  ].join("\n");
}

/** Numbers of the run in progress (or of its end): step, losses, pace, time, memory. */
export function trainingRows(s: RunSnapshot, now = Date.now()): string {
  const out: string[] = [];
  if (s.steps) out.push(row("Step", `${s.step} / ${s.steps}`, "step"));
  if (s.loss !== null) out.push(row("Train loss", num(s.loss), "loss"));
  if (s.valLosses.length) {
    const last = s.valLosses[s.valLosses.length - 1]!;
    out.push(row("Validation loss", `${num(last.loss)} (step ${last.step})`, "val-loss-latest"));
  }
  if (s.tokensPerS !== null) out.push(row("Tokens/s", int(s.tokensPerS), "tokens-per-s"));
  const elapsed = elapsedSeconds(s, now);
  if (elapsed !== null) out.push(`<div class="row"><span class="label">Elapsed</span><span class="value" data-testid="elapsed" data-tick="elapsed">${duration(elapsed)}</span></div>`);
  const eta = etaSeconds(s);
  if (eta !== null) out.push(row("Time left", duration(eta), "eta"));
  if (s.device) out.push(row("Device", s.device, "device"));
  if (s.estimate) {
    const free = s.memoryFree !== null ? ` of ${formatBytes(s.memoryFree)} free` : "";
    out.push(row("Device memory", `${s.memoryPeak !== null ? `${formatBytes(s.memoryPeak)} peak measured` : `${formatBytes(s.estimate.peakBytes)} peak estimated`}${free}`, "memory"));
  }
  return out.join("\n");
}

/** How the adapter did: validation loss and the held-out completions, base against adapter. */
export function resultRows(s: RunSnapshot): string {
  const out: string[] = [];
  if (s.valLossBase !== null) out.push(row("Validation loss, base", num(s.valLossBase), "val-loss-base"));
  if (s.valLoss !== null && s.phase !== "training") out.push(row("Validation loss, adapter", num(s.valLoss), "val-loss"));
  const e = s.evaluation;
  if (e) {
    // Edit similarity is what decides whether the adapter is kept (src/core/eval/decision.ts).
    out.push(row("Edit similarity, base → adapter", `${pct(e.base.editSimilarity.mean)} → ${pct(e.adapter.editSimilarity.mean)}`, "edit-similarity"));
    out.push(row("Held-out gain", `${signedPct(e.diff.editSimilarity.mean)} points (95%: ${signedPct(e.diff.editSimilarity.lo)} to ${signedPct(e.diff.editSimilarity.hi)})`, "gain"));
    out.push(row("Exact match, base → adapter", `${pct(e.base.exactMatch.mean)} → ${pct(e.adapter.exactMatch.mean)}`, "exact-match"));
  }
  if (s.adapterPath) out.push(row("Adapter", basename(s.adapterPath), "adapter", s.adapterPath));
  return out.join("\n");
}

export function errorHtml(s: RunSnapshot): string {
  if (!s.error) return "";
  return `<p class="error" role="alert" data-testid="error"><span class="codicon codicon-error" aria-hidden="true"></span> ${esc(s.error)}</p>`;
}

/** The actions that make sense in this state, and only those. `inPanel`: the panel is the report already. */
export function actionsHtml(s: RunSnapshot, w: WorkspaceInfo, inPanel: boolean): string {
  const b: string[] = [];
  const report = !inPanel && s.runDir ? button("showRun", "Open report", "graph-line", { secondary: true }) : "";
  const resume = s.checkpoint
    ? button("resume", "Resume", "debug-continue", w.canResume ? {} : { disabled: "Resuming needs the run controller's resume support, which this build lacks." })
    : "";
  switch (s.phase) {
    case "idle":
      b.push(button("fineTune", "Fine-tune on this repo", "sparkle", w.folder ? {} : { disabled: "Open a folder first." }));
      break;
    case "preparing":
    case "training":
    case "evaluating":
      b.push(button("stop", s.phase === "evaluating" ? "Stop evaluating" : "Stop", "debug-stop", { secondary: true }), report);
      break;
    case "done": {
      const active = s.adapterPath !== null && s.adapterPath === s.activeAdapter;
      if (s.adapterPath && !active) b.push(`<vscode-button data-adapter-action="activate" data-adapter="${esc(s.adapterPath)}" icon="check">Activate adapter</vscode-button>`);
      if (active) b.push(button("deactivateAdapter", "Deactivate adapter", "circle-slash", { secondary: true }));
      b.push(report, button("fineTune", "Fine-tune again", "sparkle", { secondary: true }));
      break;
    }
    case "stopped":
      b.push(resume, report, button("fineTune", "Fine-tune again", "sparkle", { secondary: !!resume }));
      break;
    case "failed":
      if (s.suggestion) b.push(button("retrySuggested", "Retry with suggested settings", "wand"));
      else if (s.errorAction) b.push(button("openErrorSetting", "Open setting", "settings-gear"));
      b.push(resume, button("fineTune", "Retry", "refresh", { secondary: true }), report, button("openLog", "Show log", "output", { secondary: true }));
      break;
  }
  return `<div class="actions">${b.filter(Boolean).join("")}</div>`;
}

/** The next run: its settings and predicted cost, with the way to change them. */
export function nextRunHtml(s: RunSnapshot, w: WorkspaceInfo): string {
  const rows: string[] = [];
  rows.push(row("Base model", w.modelSetting ? (w.modelSetting === "tiny" ? "tiny (generated)" : basename(w.modelSetting)) : "not set", "next-model", w.modelSetting ?? undefined));
  const st = w.settings;
  if (st) {
    const device = st.device === "auto" ? `${w.device ?? "detecting…"} (auto)` : st.device;
    rows.push(row("Device", device, "next-device"));
    rows.push(row("Steps", st.steps !== null ? String(st.steps) : st.stepsHint !== null ? `${st.stepsHint} (from the data)` : "from the data", "next-steps"));
    // Unset values are chosen by the plan shown before training; the estimates below start from the usual value.
    const value = (k: "seqLen" | "rank", v: number) => (st.planned?.includes(k) ? "planned" : String(v));
    const tip = (k: "seqLen" | "rank", v: number) =>
      st.planned?.includes(k) ? `Not set: the plan shown before training chooses it for your device, model and data (the estimates assume ${v}).` : undefined;
    rows.push(row("Sequence length", value("seqLen", st.seqLen), "next-seq-len", tip("seqLen", st.seqLen)));
    rows.push(row("LoRA rank", value("rank", st.rank), "next-rank", tip("rank", st.rank)));
    rows.push(row("Learning rate", String(st.lr), "next-lr"));
  }
  rows.push(row("Estimated time", w.seconds !== null ? `about ${duration(w.seconds)}` : "–", "next-time", w.estimateNote ?? undefined));
  rows.push(row("Estimated peak memory", w.peakBytes !== null ? formatBytes(w.peakBytes) : "–", "next-memory", w.estimateNote ?? undefined));
  const note = w.estimateNote ? `<p class="muted note" data-testid="estimate-note">${esc(w.estimateNote)}</p>` : "";
  const data = s.dataset && !isBusy(s) ? `<h4>Data (measured by the last run)</h4>${datasetRows(s)}` : "";
  return `${rows.join("\n")}${note}<p><a href="#" data-command="openSettings" data-testid="change-settings"><span class="codicon codicon-settings-gear" aria-hidden="true"></span> Change training settings</a></p>${data}`;
}

export function adaptersHtml(w: WorkspaceInfo): string {
  if (w.adapters.length === 0) return `<p class="muted" data-testid="no-adapters">No adapter trained on this workspace yet.</p>`;
  const items = w.adapters.map((a) => {
    const gain = a.gain ? `${signedPct(a.gain.mean)} pts` : a.valLoss !== null && a.valLossBase !== null ? `val loss ${num(a.valLossBase)} → ${num(a.valLoss)}` : "not evaluated";
    const gainTip = a.gain ? `Held-out edit similarity, adapter minus base: ${signedPct(a.gain.mean)} points (95% interval ${signedPct(a.gain.lo)} to ${signedPct(a.gain.hi)})` : "";
    const toggle = a.active
      ? `<vscode-toolbar-button data-command="deactivateAdapter" icon="circle-slash" label="Deactivate adapter ${esc(a.runId)}" title="Deactivate (use the base model)"></vscode-toolbar-button>`
      : adapterButton("activate", a.adapterPath, "check", `Activate adapter ${a.runId}`);
    return `<li class="adapter${a.active ? " active" : ""}" data-testid="adapter-item" data-adapter-path="${esc(a.adapterPath)}">
<div class="adapter-head"><span class="codicon codicon-layers" aria-hidden="true"></span><span class="adapter-date" title="${esc(a.runId)}">${esc(dateTime(a.finished))}</span>${a.active ? `<vscode-badge variant="counter" data-testid="adapter-active">active</vscode-badge>` : ""}</div>
<div class="adapter-meta muted"><span title="${esc(a.baseModel)}">${esc(a.baseModel)}</span> · <span data-testid="adapter-gain" title="${esc(gainTip)}">${esc(gain)}</span> · <span data-testid="adapter-size">${formatBytes(a.sizeBytes)}</span></div>
<div class="adapter-actions">${toggle}${adapterButton("report", a.adapterPath, "graph-line", `Open the training report of ${a.runId}`)}${adapterButton("reveal", a.adapterPath, "file-symlink-file", `Reveal the adapter file of ${a.runId}`)}${adapterButton("delete", a.adapterPath, "trash", `Delete adapter ${a.runId}`)}</div>
</li>`;
  });
  return `<ul class="adapters" aria-label="Adapters of this workspace">${items.join("")}</ul>`;
}

/** Buttons carry data-command or data-adapter-action; one delegated listener sends them, validated on the other side. */
export function wireActions(root: HTMLElement): void {
  root.addEventListener("click", (e) => {
    const el = (e.target as HTMLElement).closest<HTMLElement>("[data-command], [data-adapter-action]");
    if (!el || el.hasAttribute("disabled")) return;
    e.preventDefault();
    const { command, adapterAction, adapter } = el.dataset;
    if (command) send({ type: "command", command: command as ViewCommand });
    else if (adapterAction && adapter) send({ type: "adapter", action: adapterAction as AdapterAction, adapterPath: adapter });
  });
}

/**
 * Replaces a region's markup only when it changed, and gives focus back to the control that had it, so that a
 * keyboard user's place survives the updates a running trainer sends several times a second.
 */
const shown = new WeakMap<HTMLElement, string>();

export function patch(el: HTMLElement, html: string): void {
  if (shown.get(el) === html) return;
  const focused = document.activeElement instanceof HTMLElement && el.contains(document.activeElement) ? focusKey(document.activeElement) : null;
  el.innerHTML = html;
  shown.set(el, html);
  if (focused) el.querySelector<HTMLElement>(focused)?.focus();
}

function focusKey(e: HTMLElement): string | null {
  const target = e.closest<HTMLElement>("[data-command], [data-adapter-action], [data-focus]");
  if (!target) return null;
  const { command, adapterAction, adapter, focus } = target.dataset;
  if (adapterAction && adapter) return `[data-adapter-action="${adapterAction}"][data-adapter="${CSS.escape(adapter)}"]`;
  if (command) return `[data-command="${command}"]`;
  return focus ? `[data-focus="${focus}"]` : null;
}

/** While a run is busy, the elapsed time counts up every second between updates. */
export function tickElapsed(getState: () => RunSnapshot | null): void {
  setInterval(() => {
    const s = getState();
    if (!s || !isBusy(s)) return;
    const elapsed = elapsedSeconds(s);
    if (elapsed === null) return;
    document.querySelectorAll<HTMLElement>('[data-tick="elapsed"]').forEach((el) => (el.textContent = duration(elapsed)));
  }, 1000);
}
