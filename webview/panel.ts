// The run panel: the run's summary and a loss chart (uPlot, bundled; no remote content).
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { actionsHtml, esc, onSnapshot, summaryHtml, wireActions } from "./common";
import type { RunSnapshot } from "../src/protocol/webview";

const root = document.getElementById("root")!;
root.innerHTML = `<h1>RepoTune: training run</h1><section id="summary"></section><h2>Loss</h2><div id="chart" role="img" aria-label="Training and validation loss by step"></div><p id="chart-empty" class="muted">The chart appears when training starts.</p>`;
const summary = document.getElementById("summary")!;
const chartEl = document.getElementById("chart")!;
const empty = document.getElementById("chart-empty")!;
wireActions(summary);

let plot: uPlot | undefined;
const css = (name: string) => getComputedStyle(document.body).getPropertyValue(name).trim() || undefined;

function chartData(s: RunSnapshot): uPlot.AlignedData {
  const steps = [...new Set([...s.losses.map((p) => p.step), ...s.valLosses.map((p) => p.step)])].sort((a, b) => a - b);
  const train = new Map(s.losses.map((p) => [p.step, p.loss]));
  const val = new Map(s.valLosses.map((p) => [p.step, p.loss]));
  return [steps, steps.map((x) => train.get(x) ?? null), steps.map((x) => val.get(x) ?? null)];
}

function drawChart(s: RunSnapshot): void {
  const hasData = s.losses.length + s.valLosses.length > 0;
  empty.hidden = hasData;
  chartEl.hidden = !hasData;
  if (!hasData) return;
  const data = chartData(s);
  const width = Math.max(320, chartEl.clientWidth || document.body.clientWidth - 40);
  if (!plot) {
    const fg = css("--vscode-foreground");
    const grid = css("--vscode-editorWidget-border") ?? "rgba(128,128,128,0.3)";
    const axis = { stroke: fg, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid } };
    plot = new uPlot(
      {
        width, height: 260,
        scales: { x: { time: false } },
        axes: [{ ...axis, label: "step" }, { ...axis, label: "loss" }],
        series: [
          { label: "step" },
          { label: "train loss", stroke: css("--vscode-charts-blue") ?? "#3794ff", width: 2, spanGaps: true },
          { label: "validation loss", stroke: css("--vscode-charts-orange") ?? "#d18616", width: 2, spanGaps: true, points: { show: true, size: 6 } },
        ],
      },
      data,
      chartEl,
    );
  } else {
    plot.setData(data);
  }
}

window.addEventListener("resize", () => plot?.setSize({ width: Math.max(320, chartEl.clientWidth), height: 260 }));

onSnapshot((s) => {
  summary.innerHTML = `${summaryHtml(s)}${actionsHtml(s, false)}${s.folder ? `<p class="muted">Folder: ${esc(s.folder)}</p>` : ""}`;
  drawChart(s);
});
