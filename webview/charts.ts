// Line charts drawn with uPlot (bundled, no remote content) in the theme's own colours: redrawn when the theme
// changes (light, dark, high contrast) and when their container is resized.
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

export interface SeriesSpec {
  label: string;
  /** A VS Code theme colour variable (e.g. --vscode-charts-blue) and the colour to use without a theme. */
  color: [string, string];
  points?: boolean;
}

export interface ChartSpec {
  /** Accessible name of the chart, also its heading's text. */
  label: string;
  yLabel: string;
  series: SeriesSpec[];
  height: number;
  /** Draws no axes labels or legend: the sidebar's small chart. */
  compact?: boolean;
}

const css = (name: string) => getComputedStyle(document.body).getPropertyValue(name).trim();

/** Steps as x, one column per series; a step a series has no value for is a gap, drawn over. */
export function align(series: { step: number; value: number }[][]): uPlot.AlignedData {
  const steps = [...new Set(series.flatMap((s) => s.map((p) => p.step)))].sort((a, b) => a - b);
  const columns = series.map((s) => {
    const byStep = new Map(s.map((p) => [p.step, p.value]));
    return steps.map((x) => byStep.get(x) ?? null);
  });
  return [steps, ...columns];
}

export class LineChart {
  private plot: uPlot | undefined;
  private data: uPlot.AlignedData = [[]];
  private readonly resize = new ResizeObserver(() => this.fit());

  constructor(private readonly el: HTMLElement, private readonly spec: ChartSpec) {
    el.setAttribute("role", "img");
    el.setAttribute("aria-label", spec.label);
    this.resize.observe(el);
    themeChanged(() => this.rebuild());
  }

  update(data: uPlot.AlignedData): void {
    this.data = data;
    if ((data[0]?.length ?? 0) === 0) {
      this.plot?.destroy();
      this.plot = undefined;
      return;
    }
    if (this.plot) this.plot.setData(data);
    else this.rebuild();
  }

  private width(): number {
    return Math.max(160, Math.floor(this.el.clientWidth || document.body.clientWidth - 32));
  }

  private rebuild(): void {
    this.plot?.destroy();
    this.plot = undefined;
    if ((this.data[0]?.length ?? 0) === 0) return;
    const fg = css("--vscode-foreground") || "#888";
    const grid = css("--vscode-editorWidget-border") || css("--vscode-contrastBorder") || "rgba(128,128,128,0.3)";
    const font = `${css("--vscode-font-size") || "12px"} ${css("--vscode-font-family") || "sans-serif"}`;
    const axis: uPlot.Axis = { stroke: fg, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 }, font, labelFont: font };
    const compact = this.spec.compact === true;
    this.plot = new uPlot(
      {
        width: this.width(),
        height: this.spec.height,
        scales: { x: { time: false } },
        legend: { show: !compact },
        cursor: { show: !compact },
        axes: compact
          ? [{ ...axis, size: 24, grid: { show: false } }, { ...axis, size: 36 }]
          : [{ ...axis, label: "step" }, { ...axis, label: this.spec.yLabel, size: 60 }],
        series: [
          { label: "step" },
          ...this.spec.series.map((s) => ({
            label: s.label,
            stroke: css(s.color[0]) || s.color[1],
            width: 2,
            spanGaps: true,
            points: { show: s.points === true, size: 6 },
          })),
        ],
      },
      this.data,
      this.el,
    );
  }

  private fit(): void {
    if (this.plot && Math.abs(this.plot.width - this.width()) > 2) this.plot.setSize({ width: this.width(), height: this.spec.height });
  }
}

const listeners: (() => void)[] = [];
let observing = false;

/** VS Code marks the theme kind on <body> (vscode-light, vscode-dark, vscode-high-contrast) and sets its colours on <html>. */
function themeChanged(listener: () => void): void {
  listeners.push(listener);
  if (observing) return;
  observing = true;
  const observer = new MutationObserver(() => listeners.forEach((l) => l()));
  observer.observe(document.body, { attributes: true, attributeFilter: ["class"] });
  observer.observe(document.documentElement, { attributes: true, attributeFilter: ["style"] });
}
