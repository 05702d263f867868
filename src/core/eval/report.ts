// The evaluation as a plain-text table: what `repotune eval` and `repotune tune` print at their end.
import type { EvaluationSummary, Interval } from "../../protocol/run";
import { percent, points } from "./decision";

export function evaluationTable(e: EvaluationSummary): string {
  const kinds = Object.entries(e.kinds).map(([k, n]) => `${k} ${n}`).join(", ");
  const lines = [
    `held-out evaluation: ${e.taskCount} completions in ${e.files} ${e.files === 1 ? "file" : "files"} (${kinds}); ` +
      `window ${e.settings.windowTokens} tokens, up to ${e.settings.maxTokens} generated; ${e.seconds.toFixed(1)} s`,
    "",
  ];
  const rows: string[][] = [["", "base", "adapter", "adapter - base"]];
  const share = (i: Interval) => `${percent(i.mean)} (${pct(i.lo)}-${pct(i.hi)})`;
  const shareDiff = (i: Interval) => `${points(i.mean)} (${points(i.lo, false)} to ${points(i.hi, false)})`;
  const chars = (i: Interval) => `${i.mean.toFixed(1)} (${i.lo.toFixed(1)}-${i.hi.toFixed(1)})`;
  const charsDiff = (i: Interval) => `${signed(i.mean)} (${signed(i.lo)} to ${signed(i.hi)})`;
  rows.push(["exact match", share(e.base.exactMatch), share(e.adapter.exactMatch), shareDiff(e.diff.exactMatch)]);
  rows.push(["edit similarity", share(e.base.editSimilarity), share(e.adapter.editSimilarity), shareDiff(e.diff.editSimilarity)]);
  rows.push(["accepted chars", chars(e.base.acceptedChars), chars(e.adapter.acceptedChars), charsDiff(e.diff.acceptedChars)]);
  if (e.loss.base !== null || e.loss.adapter !== null) {
    const loss = (l: number | null, p: number | null) => (l === null ? "-" : `${l.toFixed(4)} (ppl ${p === null ? "-" : p.toFixed(2)})`);
    const change = e.loss.base !== null && e.loss.adapter !== null ? `${signed(((e.loss.adapter - e.loss.base) / e.loss.base) * 100)}%` : "";
    const step = e.loss.adapterStep !== null ? `${change ? ", " : ""}best step ${e.loss.adapterStep}` : "";
    rows.push(["validation loss", loss(e.loss.base, e.loss.perplexityBase), loss(e.loss.adapter, e.loss.perplexityAdapter), change + step]);
  }
  lines.push(...table(rows), "", "95% bootstrap intervals in brackets (paired for adapter - base).", "");
  if (e.byLanguage.length > 0) {
    const byLang: string[][] = [["edit similarity by language", "tasks", "base", "adapter", "adapter - base"]];
    for (const l of e.byLanguage) {
      byLang.push([l.language, String(l.tasks), percent(l.base.editSimilarity.mean), percent(l.adapter.editSimilarity.mean), shareDiff(l.diff.editSimilarity)]);
    }
    lines.push(...table(byLang), "");
  }
  lines.push(`${e.decision.keep ? "kept" : "not kept"}: ${e.decision.reason}`);
  return lines.join("\n");
}

function table(rows: string[][]): string[] {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  return rows.map((r) => r.map((cell, c) => cell.padEnd(widths[c])).join("   ").trimEnd());
}

function pct(x: number): string {
  return (x * 100).toFixed(1);
}

function signed(x: number): string {
  return `${x >= 0 ? "+" : "\u2212"}${Math.abs(x).toFixed(1)}`;
}
