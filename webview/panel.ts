// The training report: the run's state and actions, charts (loss, learning rate, throughput), the evaluation, the
// dataset report (a table sortable by column and filterable by reason), hyperparameters, device and the event log.
import "@vscode-elements/elements/dist/vscode-single-select/index.js";
import "@vscode-elements/elements/dist/vscode-option/index.js";
import "@vscode-elements/elements/dist/vscode-textfield/index.js";
import { LineChart, align } from "./charts";
import {
  actionsHtml, basename, errorHtml, esc, headerHtml, int, onState, patch, pct, progressHtml, resultRows, signedPct,
  tickElapsed, trainingRows, wireActions, type State,
} from "./common";
import type { EvalMetrics, Interval } from "../src/protocol/run";
import type { RunFiles, RunSnapshot } from "../src/protocol/webview";
import { formatBytes } from "../src/core/format";

const root = document.getElementById("root")!;
root.innerHTML = `
<header>
  <h1>Training report <span class="muted" id="run-id" data-testid="run-id"></span></h1>
  <div id="header"></div>
  <div id="progress"></div>
  <div id="summary" class="grid"></div>
  <div id="error"></div>
  <div id="actions"></div>
</header>
<nav aria-label="Sections of the report" class="toc">
  <a href="#charts">Charts</a><a href="#evaluation">Evaluation</a><a href="#dataset">Dataset</a><a href="#hyperparameters">Hyperparameters</a><a href="#device">Device</a><a href="#log">Event log</a>
</nav>
<section id="charts" aria-labelledby="charts-h">
  <h2 id="charts-h">Charts</h2>
  <p id="charts-empty" class="muted">The charts appear when training starts.</p>
  <div class="charts">
    <figure><figcaption>Loss (train and validation)</figcaption><div id="chart-loss" data-testid="chart-loss"></div></figure>
    <figure><figcaption>Learning rate</figcaption><div id="chart-lr" data-testid="chart-lr"></div></figure>
    <figure><figcaption>Throughput (tokens/s)</figcaption><div id="chart-tps" data-testid="chart-tps"></div></figure>
  </div>
</section>
<section id="evaluation" aria-labelledby="evaluation-h"><h2 id="evaluation-h">Evaluation on held-out code</h2><div id="evaluation-body"></div></section>
<section id="dataset" aria-labelledby="dataset-h">
  <h2 id="dataset-h">Dataset</h2>
  <div id="dataset-summary"></div>
  <div class="filters">
    <label for="reason-filter">Reason</label>
    <vscode-single-select id="reason-filter" aria-label="Show files left out for this reason" data-testid="reason-filter"></vscode-single-select>
  </div>
  <div id="dataset-table"></div>
  <div id="languages"></div>
</section>
<section id="hyperparameters" aria-labelledby="hyper-h"><h2 id="hyper-h">Hyperparameters</h2><div id="hyper-body"></div></section>
<section id="device" aria-labelledby="device-h"><h2 id="device-h">Device</h2><div id="device-body"></div></section>
<section id="log" aria-labelledby="log-h">
  <h2 id="log-h">Event log</h2>
  <vscode-textfield id="log-filter" placeholder="Filter the log" aria-label="Filter the event log" data-testid="log-filter"></vscode-textfield>
  <div id="log-body"></div>
</section>`;
const region = (id: string) => document.getElementById(id)!;
wireActions(root);

const charts = {
  loss: new LineChart(region("chart-loss"), {
    label: "Training and validation loss by step", yLabel: "loss", height: 240,
    series: [
      { label: "train loss", color: ["--vscode-charts-blue", "#3794ff"] },
      { label: "validation loss", color: ["--vscode-charts-orange", "#d18616"], points: true },
    ],
  }),
  lr: new LineChart(region("chart-lr"), {
    label: "Learning rate by step", yLabel: "learning rate", height: 160,
    series: [{ label: "learning rate", color: ["--vscode-charts-purple", "#b180d7"] }],
  }),
  tps: new LineChart(region("chart-tps"), {
    label: "Training throughput in tokens per second by step", yLabel: "tokens/s", height: 160,
    series: [{ label: "tokens/s", color: ["--vscode-charts-green", "#89d185"] }],
  }),
};

let last: State | null = null;
tickElapsed(() => last?.run ?? null);

// ---- the dataset table: one row per reason a file was used or left out, and per file where the report names it.

interface FileRow {
  reason: string;
  files: number;
  detail: string;
}

function fileRows(s: RunSnapshot, files: RunFiles | null): FileRow[] {
  const rows: FileRow[] = [];
  const report = files?.report;
  if (report) {
    rows.push({ reason: "used for training", files: report.split.train, detail: `${int(report.tokens.train)} tokens` });
    for (const f of report.split.heldOut) rows.push({ reason: "held out for evaluation", files: 1, detail: f });
    for (const [reason, n] of Object.entries(report.files.skipped)) {
      if (n === 0) continue;
      const rules = reason === "secret" ? Object.entries(report.secrets.findings).map(([rule, k]) => `${rule} ${k}`).join(", ") : "";
      rows.push({ reason: reason.replace(/_/g, " "), files: n, detail: rules });
    }
    for (const d of report.duplicates.removed) {
      rows.push({ reason: `duplicate (${d.kind})`, files: 1, detail: `${d.file} copies ${d.of}${d.kind === "near" ? ` (similarity ${d.similarity.toFixed(2)})` : ""}` });
    }
  } else if (s.dataset) {
    rows.push({ reason: "used", files: s.dataset.filesUsed, detail: "" });
    for (const [reason, n] of Object.entries(s.dataset.filesSkipped)) rows.push({ reason: reason.replace(/_/g, " "), files: n, detail: "" });
  }
  return rows;
}

let sort: { key: keyof FileRow; dir: 1 | -1 } = { key: "files", dir: -1 };
let reasonFilter = "";
let logFilter = "";

function tableHtml(rows: FileRow[]): string {
  const shown = rows
    .filter((r) => !reasonFilter || r.reason === reasonFilter)
    .sort((a, b) => {
      const x = a[sort.key], y = b[sort.key];
      return (typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y))) * sort.dir;
    });
  const head = (key: keyof FileRow, label: string) => {
    const aria = sort.key === key ? (sort.dir === 1 ? "ascending" : "descending") : "none";
    const icon = sort.key === key ? (sort.dir === 1 ? "arrow-up" : "arrow-down") : "";
    return `<th scope="col" aria-sort="${aria}"><button class="sort" data-focus="sort-${key}" data-sort="${key}">${label}${icon ? ` <span class="codicon codicon-${icon}" aria-hidden="true"></span>` : ""}</button></th>`;
  };
  const body = shown.map((r) => `<tr data-testid="dataset-row"><td>${esc(r.reason)}</td><td class="num">${int(r.files)}</td><td class="detail">${esc(r.detail)}</td></tr>`).join("");
  return `<table class="data" data-testid="dataset-table"><caption class="visually-hidden">Files by reason, sortable by column</caption>
<thead><tr>${head("reason", "Reason")}${head("files", "Files")}${head("detail", "Detail")}</tr></thead>
<tbody>${body || `<tr><td colspan="3" class="muted">No files for this reason.</td></tr>`}</tbody></table>`;
}

region("dataset-table").addEventListener("click", (e) => {
  const key = (e.target as HTMLElement).closest<HTMLElement>("[data-sort]")?.dataset.sort as keyof FileRow | undefined;
  if (!key) return;
  sort = sort.key === key ? { key, dir: sort.dir === 1 ? -1 : 1 } : { key, dir: key === "files" ? -1 : 1 };
  if (last) renderDataset(last);
});
region("reason-filter").addEventListener("change", (e) => {
  reasonFilter = (e.target as HTMLSelectElement).value;
  if (last) renderDataset(last);
});
region("log-filter").addEventListener("input", (e) => {
  logFilter = ((e.target as HTMLInputElement).value ?? "").toLowerCase();
  if (last) renderLog(last.run);
});

let reasonsShown = "";

function renderDataset({ run: s, files }: State): void {
  const d = s.dataset;
  const report = files?.report ?? null;
  const summary: string[] = [];
  if (d) {
    const skipped = Object.values(d.filesSkipped).reduce((a, b) => a + b, 0);
    summary.push(kv("Files used", int(d.filesUsed), "ds-files-used"), kv("Files skipped", int(skipped), "ds-files-skipped"));
    summary.push(kv("Secrets excluded", `${int(report?.secrets.filesExcluded ?? d.filesSkipped.secret ?? 0)} files`, "ds-secrets"));
    if (d.duplicates) summary.push(kv("Duplicates left out", `${d.duplicates.exact} exact, ${d.duplicates.near} near`, "ds-duplicates"));
    summary.push(kv("Tokens", `${int(d.trainTokens)} training, ${int(d.valTokens)} validation`, "ds-tokens"));
    summary.push(kv("Sequences", `${int(d.trainSequences)} training, ${int(d.valSequences)} validation, of ${d.seqLen} tokens`, "ds-sequences"));
    if (d.splitMethod) summary.push(kv("Held out", `${d.heldOutFiles ?? "?"} files (${SPLIT_WORDS[d.splitMethod] ?? d.splitMethod})`, "ds-held-out"));
    summary.push(kv("Prompt format", d.promptFormat, "ds-prompt-format"));
  }
  const warnings = (d?.warnings ?? []).map((w) => `<p class="warning"><span class="codicon codicon-warning" aria-hidden="true"></span> ${esc(w)}</p>`).join("");
  patch(region("dataset-summary"), d ? `<dl class="kv">${summary.join("")}</dl>${warnings}` : `<p class="muted">The dataset report appears when the data is prepared.</p>`);
  const rows = fileRows(s, files);
  const reasons = [...new Set(rows.map((r) => r.reason))];
  const key = reasons.join("|");
  if (key !== reasonsShown) {
    reasonsShown = key;
    if (reasonFilter && !reasons.includes(reasonFilter)) reasonFilter = "";
    region("reason-filter").innerHTML = [`<vscode-option value="">All reasons</vscode-option>`, ...reasons.map((r) => `<vscode-option value="${esc(r)}"${r === reasonFilter ? " selected" : ""}>${esc(r)}</vscode-option>`)].join("");
  }
  region("reason-filter").parentElement!.hidden = rows.length === 0;
  patch(region("dataset-table"), rows.length ? tableHtml(rows) : "");
  const langs = Object.entries(report?.languages ?? {}).sort((a, b) => b[1].bytes - a[1].bytes);
  patch(region("languages"), langs.length
    ? `<h3>Languages</h3><table class="data" data-testid="languages"><thead><tr><th scope="col">Language</th><th scope="col">Files</th><th scope="col">Size</th></tr></thead><tbody>${langs.map(([l, v]) => `<tr><td>${esc(l)}</td><td class="num">${int(v.files)}</td><td class="num">${formatBytes(v.bytes)}</td></tr>`).join("")}</tbody></table>`
    : "");
}

const SPLIT_WORDS: Record<string, string> = {
  recent: "the most recently changed in git", hash: "chosen by path hash", "one-file": "the end of the only file",
  update: "the most recently changed since the previous adapter",
};

function kv(label: string, value: string, id: string): string {
  return `<dt>${esc(label)}</dt><dd data-testid="${id}">${esc(value)}</dd>`;
}

// ---- evaluation, hyperparameters, device, log

function metricCells(m: EvalMetrics, key: keyof EvalMetrics, asPct: boolean): string {
  const f = (x: number) => (asPct ? pct(x) : x.toFixed(1));
  return `<td class="num">${f(m[key].mean)}</td>`;
}

function diffCell(i: Interval, asPct: boolean): string {
  const f = (x: number) => (asPct ? `${signedPct(x)} pts` : `${x >= 0 ? "+" : "−"}${Math.abs(x).toFixed(1)}`);
  const cls = i.lo > 0 ? "better" : i.hi < 0 ? "worse" : "";
  return `<td class="num ${cls}">${f(i.mean)} <span class="muted">(${f(i.lo)} to ${f(i.hi)})</span></td>`;
}

function renderEvaluation(s: RunSnapshot): void {
  const e = s.evaluation;
  if (!e) {
    const note = s.phase === "evaluating" && s.evalProgress
      ? `Evaluating: ${s.evalProgress.done} of ${s.evalProgress.total} completions.`
      : s.phase === "done" ? "This run was not evaluated." : "The evaluation runs after training.";
    patch(region("evaluation-body"), `<p class="muted" data-testid="evaluation-pending">${esc(note)}</p>`);
    return;
  }
  const metrics: [keyof EvalMetrics, string, boolean][] = [["exactMatch", "Exact match", true], ["editSimilarity", "Edit similarity", true], ["acceptedChars", "Accepted characters", false]];
  const main = metrics.map(([k, label, p]) => `<tr><th scope="row">${label}</th>${metricCells(e.base, k, p)}${metricCells(e.adapter, k, p)}${diffCell(e.diff[k], p)}</tr>`).join("");
  const langs = e.byLanguage.map((l) => `<tr><th scope="row">${esc(l.language)}</th><td class="num">${l.tasks}</td>${metricCells(l.base, "exactMatch", true)}${metricCells(l.adapter, "exactMatch", true)}${diffCell(l.diff.exactMatch, true)}</tr>`).join("");
  const kinds = Object.entries(e.kinds).map(([k, n]) => `${k} ${n}`).join(", ");
  patch(region("evaluation-body"), `
<p class="decision ${e.decision.keep ? "better" : ""}" data-testid="decision"><span class="codicon codicon-${e.decision.keep ? "pass" : "info"}" aria-hidden="true"></span> ${esc(e.decision.reason)}</p>
<table class="data" data-testid="evaluation-table"><caption class="visually-hidden">Base model against adapter, means over ${e.taskCount} tasks with 95% intervals</caption>
<thead><tr><th scope="col">Metric</th><th scope="col">Base</th><th scope="col">Adapter</th><th scope="col">Difference (95% interval)</th></tr></thead><tbody>${main}</tbody></table>
<p class="muted">${e.taskCount} completion tasks from ${e.files} held-out files (${esc(kinds)}); ${e.settings.maxTokens} tokens at most per completion; ${e.seconds.toFixed(0)} s.</p>
${langs ? `<h3>By language (exact match)</h3><table class="data"><thead><tr><th scope="col">Language</th><th scope="col">Tasks</th><th scope="col">Base</th><th scope="col">Adapter</th><th scope="col">Difference</th></tr></thead><tbody>${langs}</tbody></table>` : ""}`);
}

function renderHyper({ run: s, files }: State): void {
  const t = s.trainer;
  const m = files?.settings ?? null;
  const rows: [string, string, string | number | boolean | null | undefined][] = [
    ["hp-steps", "Steps", t ? s.steps : m?.steps],
    ["hp-batch", "Batch", t?.batch ?? m?.batch],
    ["hp-grad-accum", "Gradient accumulation", t?.gradAccum ?? m?.gradAccum],
    ["hp-grad-checkpoint", "Gradient checkpointing", m?.gradCheckpoint === undefined ? null : m.gradCheckpoint ? "on" : "off"],
    ["hp-seq-len", "Sequence length", t?.seqLen ?? s.dataset?.seqLen ?? m?.seqLen],
    ["hp-rank", "LoRA rank", m?.rank],
    ["hp-alpha", "LoRA alpha", m?.alpha],
    ["hp-lr", "Learning rate (peak)", m?.lr],
    ["hp-seed", "Seed", m?.seed],
    ["hp-device", "Device setting", m?.device],
    ["hp-base-weights", "Base weights", t?.baseWeights ?? null],
    ["hp-trainable", "Trainable parameters", t ? `${int(t.trainableParams)} (LoRA; the base model has ${int(t.totalParams)})` : null],
    ["hp-adapter-step", "Adapter from step", s.adapterStep],
    ["hp-early-stop", "Stopped early", s.phase === "done" ? (s.earlyStopped ? "yes" : "no") : null],
  ];
  const shown = rows.filter(([, , v]) => v !== null && v !== undefined);
  const note = m ? "" : `<p class="muted">Rank, alpha, learning rate and seed are recorded in the run's manifest when it ends.</p>`;
  patch(region("hyper-body"), shown.length ? `<dl class="kv" data-testid="hyperparameters">${shown.map(([id, k, v]) => kv(k, String(v), id)).join("")}</dl>${note}` : `<p class="muted">Known when the trainer starts.</p>`);
}

function renderDevice(s: RunSnapshot): void {
  const t = s.trainer;
  const rows: [string, string, string | null][] = [
    ["dev-device", "Device", s.device],
    ["dev-torch", "PyTorch", t?.torch ?? null],
    ["dev-model", "Model", t ? `${t.arch}, ${t.nLayer} layers, width ${t.nEmbd}, vocabulary ${int(t.vocabSize)}` : null],
    ["dev-weights", "Weight types", t ? t.weightTypes.join(", ") : null],
    ["dev-estimate", "Peak memory, estimated", s.estimate ? `${formatBytes(s.estimate.peakBytes)} (${s.estimate.device})` : null],
    ["dev-free", "Free memory at start", s.memoryFree !== null ? formatBytes(s.memoryFree) : null],
    ["dev-peak", "Peak memory, measured", s.memoryPeak !== null ? formatBytes(s.memoryPeak) : null],
  ];
  const shown = rows.filter(([, , v]) => v !== null);
  patch(region("device-body"), shown.length ? `<dl class="kv" data-testid="device-info">${shown.map(([id, k, v]) => kv(k, v!, id)).join("")}</dl>` : `<p class="muted">Known when the trainer starts.</p>`);
}

function renderLog(s: RunSnapshot): void {
  const lines = s.log.filter((l) => !logFilter || l.text.toLowerCase().includes(logFilter) || l.kind.includes(logFilter));
  const time = (ms: number) => new Date(ms).toLocaleTimeString("en-GB", { hour12: false });
  patch(region("log-body"), `<table class="data log" data-testid="event-log"><caption class="visually-hidden">Events of the run, oldest first</caption>
<thead><tr><th scope="col">Time</th><th scope="col">Event</th><th scope="col">Message</th></tr></thead>
<tbody>${lines.map((l) => `<tr data-testid="log-line"><td class="num">${time(l.time)}</td><td>${esc(l.kind)}</td><td class="detail">${esc(l.text)}</td></tr>`).join("")}</tbody></table>`);
}

onState((state: State) => {
  last = state;
  const { run: s, workspace: w } = state;
  region("run-id").textContent = s.runId ?? "";
  patch(region("header"), headerHtml(s, w));
  patch(region("progress"), progressHtml(s));
  const folder = s.folder ? `<div class="row"><span class="label">Folder</span><span class="value" data-testid="folder">${esc(s.folder)}</span></div>` : "";
  const model = s.model ? `<div class="row"><span class="label">Base model</span><span class="value" data-testid="model" title="${esc(s.model)}">${esc(basename(s.model))}</span></div>` : "";
  patch(region("summary"), `${folder}${model}${s.phase === "idle" ? "" : trainingRows(s)}${resultRows(s)}`);
  patch(region("error"), errorHtml(s));
  patch(region("actions"), actionsHtml(s, w, true));
  const loss = align([s.losses.map((p) => ({ step: p.step, value: p.loss })), s.valLosses.map((p) => ({ step: p.step, value: p.loss }))]);
  region("charts-empty").hidden = loss[0]!.length > 0;
  charts.loss.update(loss);
  charts.lr.update(align([s.lrs]));
  charts.tps.update(align([s.throughput]));
  renderEvaluation(s);
  renderDataset(state);
  renderHyper(state);
  renderDevice(s);
  renderLog(s);
});
