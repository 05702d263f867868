// The Run view in the RepoTune sidebar: one state at a time with its actions, a small loss chart while training,
// what the next run will take, and the workspace's adapters.
import { LineChart, align } from "./charts";
import {
  actionsHtml, adaptersHtml, datasetRows, errorHtml, headerHtml, isBusy, nextRunHtml, onState, patch, progressHtml,
  resultRows, row, tickElapsed, trainingRows, wireActions, basename, type State,
} from "./common";
import type { RunSnapshot } from "../src/protocol/webview";
import { formatBytes } from "../src/core/format";

const root = document.getElementById("root")!;
root.innerHTML = `
<section aria-labelledby="run-heading">
  <h3 id="run-heading" class="visually-hidden">Run</h3>
  <div id="header"></div>
  <div id="progress"></div>
  <div id="metrics"></div>
  <div id="chart" class="spark"></div>
  <div id="error"></div>
  <div id="actions"></div>
</section>
<vscode-collapsible id="next" heading="Next run" open data-testid="next-run"><div id="next-body" class="collapsible-body"></div></vscode-collapsible>
<vscode-collapsible id="adapters" heading="Adapters of this workspace" open><div id="adapters-body" class="collapsible-body"></div></vscode-collapsible>`;
const region = (id: string) => document.getElementById(id)!;
wireActions(root);

const chart = new LineChart(region("chart"), {
  label: "Training and validation loss by step",
  yLabel: "loss",
  height: 90,
  compact: true,
  series: [
    { label: "train loss", color: ["--vscode-charts-blue", "#3794ff"] },
    { label: "validation loss", color: ["--vscode-charts-orange", "#d18616"], points: true },
  ],
});

let current: RunSnapshot | null = null;
tickElapsed(() => current);

function metrics(s: RunSnapshot): string {
  const parts: string[] = [];
  if (s.model) parts.push(row("Base model", basename(s.model), "model", s.model));
  if (s.phase === "preparing") {
    parts.push(datasetRows(s));
    if (s.estimate) parts.push(row("Estimated peak memory", `${formatBytes(s.estimate.peakBytes)} (${s.estimate.device})`, "estimate"));
  }
  if (s.plan && s.phase !== "idle") parts.push(row(s.plan.edited ? "Plan (edited)" : "Plan", s.plan.summary, "plan"));
  if (s.phase !== "idle" && s.phase !== "preparing") parts.push(trainingRows(s));
  if (s.phase === "done" || s.phase === "evaluating") parts.push(resultRows(s));
  parts.push(row("Active adapter", s.activeAdapter ? basename(s.activeAdapter) : "none (base model only)", "active-adapter", s.activeAdapter ?? undefined));
  return parts.join("\n");
}

onState(({ run: s, workspace: w }: State) => {
  current = s;
  patch(region("header"), headerHtml(s, w));
  patch(region("progress"), progressHtml(s));
  patch(region("metrics"), metrics(s));
  patch(region("error"), errorHtml(s));
  patch(region("actions"), actionsHtml(s, w, false));
  // The small chart is for the run in progress and its result; the report panel has the full ones.
  const chartData = s.phase === "idle" || s.phase === "preparing" ? [[]] : align([s.losses.map((p) => ({ step: p.step, value: p.loss })), s.valLosses.map((p) => ({ step: p.step, value: p.loss }))]);
  region("chart").hidden = chartData[0]!.length === 0;
  chart.update(chartData as never);
  region("next").hidden = isBusy(s);
  patch(region("next-body"), nextRunHtml(s, w));
  region("adapters").setAttribute("description", String(w.adapters.length));
  patch(region("adapters-body"), adaptersHtml(w));
});
