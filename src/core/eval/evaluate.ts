// Held-out evaluation: the base model and the base model with the adapter answer the same completion tasks from
// files the adapter never trained on, through the serving path with the same prompts and budgets. Their scores,
// compared task by task, decide whether the adapter is kept (decision.ts).
import { promises as fs } from "node:fs";
import * as path from "node:path";
import type { ModelInfo } from "../../protocol/engine";
import type { EvaluationSummary } from "../../protocol/run";
import type { PromptFormat } from "../promptFormat";
import { UserError } from "../errors";
import { repoName as repoNameOf } from "../repoName";
import { rootOf, type DatasetRoot } from "../dataset/roots";
import { DEFAULT_VAL_FRACTION, type SplitMethod } from "../dataset/split";
import { sampleTasks, taskDocument, type EvalTask, type SourceText } from "./tasks";
import { DEFAULT_RESAMPLES, score, summarize, type TaskScores } from "./metrics";
import { decide } from "./decision";
import { completeAtCursor, type CompletionEngine } from "./serving";

export const DEFAULT_MAX_TASKS = 200;
/** The completion provider's default (repotune.completions.maxTokens). */
export const DEFAULT_EVAL_MAX_TOKENS = 48;

/** Drawn beyond maxTasks, so that tasks too long for the token budget can be left out and enough remain. */
const OVERSAMPLE = 3;
const TOKENIZE_BATCH = 256;

export interface TrainerLosses {
  /** Validation loss of the base model (step 0) and of the adapter the trainer wrote. */
  valLossBase: number | null;
  valLoss: number | null;
  /** The step whose state the adapter holds: the trainer writes its best by validation loss. */
  adapterStep: number | null;
}

export interface EvaluateOptions {
  engine: CompletionEngine;
  modelInfo: ModelInfo;
  format: PromptFormat;
  /** The repository folder, and its held-out files relative to it. */
  folder: string;
  files: readonly string[];
  /**
   * A multi-root workspace's folders (src/core/dataset/roots.ts): `files` are then the dataset's prefixed paths, each
   * read from its own folder and prompted with that path and that folder's repository name, as in training.
   */
  roots?: readonly DatasetRoot[];
  /** How the files were held out; "one-file" holds out the end of a single file, so tasks come from there. */
  split?: SplitMethod;
  adapterPath: string;
  seed?: number;
  maxTasks?: number;
  /** Tokens of code around the cursor in each prompt: the adapter's training sequence length, as serving uses. */
  windowTokens: number;
  /** Characters per token of the adapter's dataset (summary.charsPerToken), with which serving cuts its prompts. */
  charsPerToken?: number | null;
  maxTokens?: number;
  trainer?: TrainerLosses;
  signal?: AbortSignal;
  /** Completions answered so far, out of total (two per task: base, then adapter). */
  onProgress?: (done: number, total: number) => void;
}

export interface TaskResult extends EvalTask {
  base: string;
  adapter: string;
  baseScores: TaskScores;
  adapterScores: TaskScores;
}

export interface EvaluationResult extends EvaluationSummary {
  tasks: TaskResult[];
}

export class EvaluationStopped extends Error {
  constructor() {
    super("The evaluation was stopped before it finished.");
    this.name = "EvaluationStopped";
  }
}

export async function evaluate(opts: EvaluateOptions): Promise<EvaluationResult> {
  const started = performance.now();
  const seed = opts.seed ?? 0;
  const maxTasks = opts.maxTasks ?? DEFAULT_MAX_TASKS;
  const maxTokens = opts.maxTokens ?? DEFAULT_EVAL_MAX_TOKENS;
  if (opts.windowTokens + maxTokens > opts.modelInfo.trainContextSize) {
    throw new UserError(
      `A prompt of ${opts.windowTokens} tokens plus ${maxTokens} to generate does not fit the model's context of ${opts.modelInfo.trainContextSize} tokens; ` +
        "evaluate with a shorter sequence length or fewer tokens.",
    );
  }
  const roots = opts.roots ?? [{ folder: opts.folder, prefix: "" }];
  const sources = await readSources(roots, opts.files);
  if (sources.length === 0) {
    throw new UserError(`None of the ${opts.files.length} held-out files could be read in ${opts.folder}, so there is nothing to evaluate the adapter on.`);
  }
  const tasks = await fittingTasks(opts.engine, sampleTasks(sources, {
    seed, maxTasks: maxTasks * OVERSAMPLE, tail: opts.split === "one-file" ? DEFAULT_VAL_FRACTION : undefined,
  }), maxTasks, maxTokens);
  if (tasks.length === 0) {
    throw new UserError(
      `The held-out files (${sources.map((s) => s.path).join(", ")}) have no line of code to ask a completion for, so the adapter cannot be compared with the base model.`,
    );
  }

  const repos = new Map(await Promise.all(roots.map(async (r) => [r.prefix, await repoNameOf(r.folder)] as const)));
  const repoOf = (file: string) => repos.get(rootOf(roots, file)?.root.prefix ?? "") ?? "";
  const docs = new Map(sources.map((s) => [s.path, s.text]));
  const total = 2 * tasks.length;
  let done = 0;
  // Both models get the adapter's prompt shape (window and density), as serving gives the adapter: the same prompts.
  // All base completions, then all adapter ones: the engine keeps one context per adapter, and switching costs one.
  const answer = async (adapterPath: string | null): Promise<string[]> => {
    const out: string[] = [];
    for (const t of tasks) {
      if (opts.signal?.aborted) throw new EvaluationStopped();
      const text = taskDocument(docs.get(t.file)!, t);
      const c = await completeAtCursor(opts.engine, opts.format, {
        text, offset: t.offset, filePath: t.file, repoName: repoOf(t.file), windowTokens: opts.windowTokens,
        charsPerToken: opts.charsPerToken, maxTokens, adapterPath,
      }, { signal: opts.signal });
      out.push(c.text);
      opts.onProgress?.(++done, total);
    }
    return out;
  };
  const base = await answer(null);
  const adapter = await answer(opts.adapterPath);

  const results: TaskResult[] = tasks.map((t, i) => ({
    ...t, base: base[i], adapter: adapter[i], baseScores: score(base[i], t.expected), adapterScores: score(adapter[i], t.expected),
  }));
  const summary = summarize(results.map((r) => ({ language: r.language, base: r.baseScores, adapter: r.adapterScores })), { seed });
  const kinds: Record<string, number> = {};
  for (const t of tasks) kinds[t.kind] = (kinds[t.kind] ?? 0) + 1;
  const loss = opts.trainer ?? { valLossBase: null, valLoss: null, adapterStep: null };
  return {
    taskCount: tasks.length,
    kinds,
    files: new Set(tasks.map((t) => t.file)).size,
    ...summary,
    loss: {
      base: loss.valLossBase,
      adapter: loss.valLoss,
      perplexityBase: perplexity(loss.valLossBase),
      perplexityAdapter: perplexity(loss.valLoss),
      adapterStep: loss.adapterStep,
    },
    settings: { seed, maxTasks, windowTokens: opts.windowTokens, maxTokens, resamples: DEFAULT_RESAMPLES },
    seconds: (performance.now() - started) / 1000,
    decision: decide(tasks.length, summary.base, summary.adapter, summary.diff),
    tasks: results,
  };
}

/** The evaluation without its per-task records: what the manifest and the run's events keep. */
export function summaryOf(result: EvaluationResult): EvaluationSummary {
  const { tasks: _tasks, ...summary } = result;
  return summary;
}

/** exp(validation loss): the model's average branching factor per token; null when there is no finite one. */
function perplexity(loss: number | null): number | null {
  if (loss === null) return null;
  const p = Math.exp(loss);
  return Number.isFinite(p) ? p : null;
}

async function readSources(roots: readonly DatasetRoot[], files: readonly string[]): Promise<SourceText[]> {
  const out: SourceText[] = [];
  for (const file of files) {
    const at = rootOf(roots, file);
    const text = at ? await fs.readFile(path.join(at.root.folder, at.rel), "utf8").catch(() => null) : null;
    if (text !== null) out.push({ path: file, text });
  }
  return out;
}

/**
 * The first `maxTasks` tasks whose expected text fits in `maxTokens` tokens: a longer answer cannot be given within
 * the serving budget by either model, so it would measure the budget rather than the models.
 */
async function fittingTasks(engine: CompletionEngine, candidates: EvalTask[], maxTasks: number, maxTokens: number): Promise<EvalTask[]> {
  const out: EvalTask[] = [];
  for (let i = 0; i < candidates.length && out.length < maxTasks; i += TOKENIZE_BATCH) {
    const batch = candidates.slice(i, i + TOKENIZE_BATCH);
    const tokens = await engine.tokenize(batch.map((t) => [{ text: t.expected, special: false }]));
    batch.forEach((t, k) => {
      if (out.length < maxTasks && tokens[k].length <= maxTokens) out.push(t);
    });
  }
  return out;
}
