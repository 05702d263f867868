// Keep or reject: an adapter becomes active only when it beats the base model on held-out edit similarity with the
// lower bound of the 95% interval of the per-task difference above zero. Otherwise the base model stays active and
// the reason, with the numbers, is what the user is told.
import type { EvalDecision, EvalMetrics } from "../../protocol/run";

/** Below this many tasks a bootstrap interval is too rough to prove anything (it understates the spread). */
export const MIN_TASKS_TO_KEEP = 10;

const ANYWAY = "What was active before (another adapter or the base model) stays active; you can activate this adapter anyway.";

export function decide(tasks: number, base: EvalMetrics, adapter: EvalMetrics, diff: EvalMetrics): EvalDecision {
  if (tasks < MIN_TASKS_TO_KEEP) {
    return {
      keep: false,
      reason: `Only ${tasks} completion ${tasks === 1 ? "task" : "tasks"} could be drawn from the held-out files, too few to show a gain (at least ${MIN_TASKS_TO_KEEP} are needed). ${ANYWAY}`,
    };
  }
  const d = diff.editSimilarity;
  const numbers = `edit similarity ${percent(adapter.editSimilarity.mean)} with the adapter against ${percent(base.editSimilarity.mean)} ` +
    `for the base model (${points(d.mean)}, 95% interval ${points(d.lo, false)} to ${points(d.hi, false)})`;
  if (d.lo > 0) {
    return { keep: true, reason: `The adapter completes held-out code better: on ${tasks} completions, ${numbers}.` };
  }
  const why = d.mean > 0
    ? "the gain is within the noise (the interval reaches zero)"
    : "it is no better than the base model";
  return { keep: false, reason: `The adapter was not activated: on ${tasks} held-out completions, ${numbers}; ${why}. ${ANYWAY}` };
}

/** A share as a percentage with one decimal: 0.8734 -> "87.3%". */
export function percent(x: number): string {
  return `${(x * 100).toFixed(1)}%`;
}

/** A difference of shares in percentage points, signed: 0.021 -> "+2.1 points". */
export function points(x: number, unit = true): string {
  const v = x * 100;
  const s = `${v >= 0 ? "+" : "\u2212"}${Math.abs(v).toFixed(1)}`;
  return unit ? `${s} points` : s;
}
