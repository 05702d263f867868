// How close a completion is to what the file has, per task, and the means over tasks with bootstrap intervals. The
// base model and the adapter answer the same tasks, so their difference is judged task by task (a paired bootstrap):
// the variation between tasks, which both share, does not widen the interval of the difference.
import { distance } from "fastest-levenshtein";
import type { EvalMetrics, Interval, LanguageMetrics } from "../../protocol/run";
import { hash32, rng } from "../dataset/random";

export interface TaskScores {
  /** 1 when the completion is exactly the expected text, else 0. */
  exactMatch: number;
  /** 1 - Levenshtein distance / the longer length: 1 for identical texts, 0 for nothing in common. */
  editSimilarity: number;
  /** Characters the user could accept: the completion's longest common prefix with the expected text. */
  acceptedChars: number;
}

export const METRICS: readonly (keyof TaskScores)[] = ["exactMatch", "editSimilarity", "acceptedChars"];

export function score(completion: string, expected: string): TaskScores {
  return {
    exactMatch: completion === expected ? 1 : 0,
    editSimilarity: editSimilarity(completion, expected),
    acceptedChars: commonPrefixLength(completion, expected),
  };
}

export function editSimilarity(a: string, b: string): number {
  const longer = Math.max(a.length, b.length);
  return longer === 0 ? 1 : 1 - distance(a, b) / longer;
}

export function commonPrefixLength(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a.charCodeAt(i) === b.charCodeAt(i)) i++;
  return i;
}

export interface BootstrapOptions {
  seed: number;
  /** Resamples of the tasks (1000 gives percentiles stable to about a hundredth of the interval). */
  resamples?: number;
  /** Coverage of the interval. */
  level?: number;
}

export const DEFAULT_RESAMPLES = 1000;

export interface ScoredTask {
  language: string;
  base: TaskScores;
  adapter: TaskScores;
}

export interface Summary {
  base: EvalMetrics;
  adapter: EvalMetrics;
  /** adapter - base, per task. */
  diff: EvalMetrics;
  byLanguage: LanguageMetrics[];
}

/**
 * Means of base, adapter and their per-task difference with percentile bootstrap intervals. One set of resampled
 * task indices serves all three (and all metrics), so the difference's interval is the paired one.
 */
export function summarize(tasks: readonly ScoredTask[], opts: BootstrapOptions): Summary {
  const all = summarizeGroup(tasks, opts, "all");
  const languages = [...new Set(tasks.map((t) => t.language))].sort();
  const byLanguage = languages.map((language) => {
    const group = tasks.filter((t) => t.language === language);
    return { language, tasks: group.length, ...summarizeGroup(group, opts, language) };
  });
  return { ...all, byLanguage };
}

function summarizeGroup(tasks: readonly ScoredTask[], opts: BootstrapOptions, label: string): Omit<Summary, "byLanguage"> {
  const samples = resampleIndices(tasks.length, opts, label);
  const metrics = (pick: (t: ScoredTask) => number): Interval => bootstrapMean(tasks.map(pick), samples, opts.level);
  const of = (side: (t: ScoredTask) => TaskScores): EvalMetrics => ({
    exactMatch: metrics((t) => side(t).exactMatch),
    editSimilarity: metrics((t) => side(t).editSimilarity),
    acceptedChars: metrics((t) => side(t).acceptedChars),
  });
  return {
    base: of((t) => t.base),
    adapter: of((t) => t.adapter),
    diff: {
      exactMatch: metrics((t) => t.adapter.exactMatch - t.base.exactMatch),
      editSimilarity: metrics((t) => t.adapter.editSimilarity - t.base.editSimilarity),
      acceptedChars: metrics((t) => t.adapter.acceptedChars - t.base.acceptedChars),
    },
  };
}

/** `resamples` draws of n task indices with replacement, seeded per group so each group's draws are reproducible. */
export function resampleIndices(n: number, opts: BootstrapOptions, label = "all"): Uint32Array[] {
  const r = rng(hash32(`repotune-bootstrap:${opts.seed}:${label}`));
  const out: Uint32Array[] = [];
  if (n === 0) return out;
  for (let b = 0; b < (opts.resamples ?? DEFAULT_RESAMPLES); b++) {
    const idx = new Uint32Array(n);
    for (let i = 0; i < n; i++) idx[i] = Math.floor(r.next() * n);
    out.push(idx);
  }
  return out;
}

/** Mean of `values` and the percentile interval of the means over the resamples. NaN everywhere for no values. */
export function bootstrapMean(values: readonly number[], samples: readonly Uint32Array[], level = 0.95): Interval {
  const n = values.length;
  if (n === 0) return { mean: Number.NaN, lo: Number.NaN, hi: Number.NaN };
  const mean = values.reduce((s, v) => s + v, 0) / n;
  if (samples.length === 0) return { mean, lo: mean, hi: mean };
  const means = samples.map((idx) => {
    let s = 0;
    for (let i = 0; i < idx.length; i++) s += values[idx[i]];
    return s / idx.length;
  });
  means.sort((a, b) => a - b);
  const alpha = (1 - level) / 2;
  return { mean, lo: quantile(means, alpha), hi: quantile(means, 1 - alpha) };
}

/** Linear interpolation between order statistics (type 7, as R and NumPy default to). */
function quantile(sorted: readonly number[], q: number): number {
  const h = (sorted.length - 1) * q;
  const lo = Math.floor(h);
  const hi = Math.min(sorted.length - 1, lo + 1);
  return sorted[lo] + (h - lo) * (sorted[hi] - sorted[lo]);
}
