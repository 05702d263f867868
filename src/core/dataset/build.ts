// The dataset step: folder -> usable text files -> duplicates left out -> held-out split (most recent files in
// git) -> examples (FIM through the prompt-format module only, and plain next-token text) -> tokens (the model's
// own tokenizer, in the engine) -> packed train/val sequences on disk, with examples.jsonl and report.json beside.
import type { ModelInfo, Segment } from "../../protocol/engine";
import type { DatasetSummary } from "../../protocol/run";
import { trainingExample, type PromptFormat } from "../promptFormat";
import { UserError } from "../errors";
import { repoName } from "../repoName";
import { describeSkipped, formatBytes } from "../format";
import { DEFAULT_MAX_FILE_BYTES } from "./sourceFile";
import { selectFiles, type SourceText } from "./select";
import { budgetFor, checkMix, DEFAULT_MIX, fimSpans, narrowSpan, WINDOW_FILL, type Budget, type ExampleMix, type FimSpan } from "./fim";
import { fitExample, pack } from "./pack";
import { hash32, rng, shuffleInPlace } from "./random";
import { findDuplicates } from "./dedupe";
import { changeTimes, chooseHeldOut, DEFAULT_VAL_FRACTION, holdOutOrder, splitOneFile, type SplitMethod } from "./split";
import { buildReport, exampleLine, recommendedSteps, SMALL_REPO_TOKENS, smallRepoWarning } from "./report";
import { writeDataset, type DatasetFiles } from "./write";
import { changedSince, updateSplit, type UpdateOption, type UpdateSplit } from "./updateSplit";
import type { DatasetMeta, DatasetReport } from "../../protocol/dataset";

/** What the dataset step needs from the engine: the base model's own tokenizer. */
export interface Tokenizer {
  tokenize(items: Segment[][]): Promise<number[][]>;
}

export interface BuildDatasetOptions {
  folder: string;
  outDir: string;
  tokenizer: Tokenizer;
  format: PromptFormat;
  model: ModelInfo;
  modelPath: string;
  seqLen: number;
  seed: number;
  maxFileBytes?: number;
  valFraction?: number;
  /** Relative weights of the kinds of examples; DEFAULT_MIX (fim.ts) when absent. */
  mix?: ExampleMix;
  /** The trainer's batch size: with it the summary recommends a number of steps (summary.recommendedSteps). */
  batch?: number;
  /** Folders never to learn from even when inside `folder` (RepoTune's own runs folder, when placed there). */
  exclude?: string[];
  /** The user's exclude patterns (gitignore syntax), on top of the folder's .repotuneignore. */
  excludeGlobs?: string[];
  /** Patterns of files to learn from even though a rule (vendored, generated, excluded...) left them out; never secrets. */
  include?: string[];
  signal?: AbortSignal;
  log?: (message: string) => void;
  /** An adapter update: train on the files changed since this commit plus a replay sample, hold out changed files. */
  update?: UpdateOption;
}

export interface BuiltDataset {
  summary: DatasetSummary;
  meta: DatasetMeta;
  files: DatasetFiles;
  report: DatasetReport;
  /** Examples still longer than seqLen after a narrower window, cut to seqLen. */
  truncatedExamples: number;
}

export type { SourceText };

/**
 * What file selection hands the dataset step (select.ts's Selection has this shape). What a selection does not
 * know is left out, and the report shows none.
 */
export interface FileSelection {
  usable: SourceText[];
  skipped: Record<string, number>;
  listed: number;
  /** Files left out because they hold a secret, and those files by the rule that found one: counts, never secrets. */
  secretsExcluded?: number;
  secretFindings?: Record<string, number>;
  /** Usable files and their bytes by language. */
  languages?: Record<string, { files: number; bytes: number }>;
}

const MAX_EXAMPLES_PER_FILE = 256;
/** Examples per file cover it about this many times over (each character in about two examples' windows). */
const COVERAGE = 2;
/** A small repository gets up to this many times more examples per file (more cursors, not copies). */
const MAX_SMALL_REPO_SCALE = 8;
const TOKENIZE_BATCH_CHARS = 512 * 1024;
const TOKENIZE_BATCH_ITEMS = 512;

interface Example {
  file: SourceText;
  span: FimSpan;
  budget: Budget;
  truncated: boolean;
  segments: Segment[];
  tokens: number[];
}

export async function buildDataset(opts: BuildDatasetOptions): Promise<BuiltDataset> {
  const log = opts.log ?? (() => undefined);
  const timer = stepTimer();
  const mix = opts.mix ?? DEFAULT_MIX;
  const badMix = checkMix(mix);
  if (badMix !== null) throw new UserError(`The mix of example kinds is invalid: ${badMix} (rest of line, lines, block, next token).`);
  const maxFileBytes = opts.maxFileBytes ?? DEFAULT_MAX_FILE_BYTES;
  const selection: FileSelection = await selectFiles(opts.folder, {
    maxFileBytes, exclude: opts.exclude, include: opts.include, excludeGlobs: opts.excludeGlobs, signal: opts.signal,
  });
  timer.lap("selection");
  const { usable, skipped, listed } = selection;
  if (listed === 0) {
    throw new UserError(`The folder ${opts.folder} has no files to learn from. Open the folder of a code repository and fine-tune again.`);
  }
  if (usable.length === 0) {
    throw new UserError(
      `The folder has no text files RepoTune can learn from: all ${listed} files were skipped (${describeSkipped(skipped)}). ` +
        `RepoTune learns from UTF-8 text files up to ${formatBytes(maxFileBytes)} that are not excluded by .gitignore, ` +
        ".repotuneignore or the repotune.dataset.exclude setting, and are not vendored, generated or holding a secret; " +
        "open a folder with source code, or re-admit files with the repotune.dataset.include setting.",
    );
  }
  checkAborted(opts.signal);
  const valFraction = opts.valFraction ?? DEFAULT_VAL_FRACTION;
  const warnings: string[] = [];

  // One order decides both which copy of a duplicate survives and which files are held out: the newest changes in
  // git (or a path hash) come first, so a held-out file keeps its copies out of training.
  const recency = await changeTimes(opts.folder);
  timer.lap("git history");
  if (recency.warning !== null) warnings.push(recency.warning);
  const byPath = new Map(usable.map((f) => [f.path, f]));
  const ordered = holdOutOrder(usable.map((f) => f.path), recency.times).map((p) => byPath.get(p)!);
  const { kept, duplicates } = findDuplicates(ordered);
  timer.lap("duplicates");
  if (duplicates.length > 0) log(`Left out ${duplicates.length} duplicate files.`);
  checkAborted(opts.signal);
  let selected = kept;
  let update: UpdateSplit | null = null;
  if (opts.update) {
    update = updateSplit(kept.map((f) => ({ path: f.path, chars: f.text.length })), await changedSince(opts.folder, opts.update.sinceCommit), recency.times, {
      seed: opts.seed, replayFraction: opts.update.replayFraction, valFraction,
    });
    const use = new Set([...update.changed, ...update.replay]);
    selected = kept.filter((f) => use.has(f.path));
    log(`Updating: ${update.changed.length} files changed since ${opts.update.sinceCommit.slice(0, 12)}, ${update.replay.length} earlier files replayed.`);
  }
  const held = update ? updateHeldOut(update) : holdOut(kept, recency.times, valFraction);
  timer.lap("split");
  const byName = [...selected].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const trainFiles = held.method === "one-file" ? byName : byName.filter((f) => !held.val.has(f.path));

  const repo = await repoName(opts.folder);
  const charsPerToken = await sampleCharsPerToken(opts.tokenizer, byName);
  log(`Read ${selected.length} files; about ${charsPerToken.toFixed(2)} characters per token.`);
  const scale = smallRepoScale(trainFiles, held.method, repo, opts.seqLen, charsPerToken);
  const examples: Example[] = [];
  for (const file of byName) examples.push(...fileExamples(file, repo, opts, charsPerToken, mix, scale));
  timer.lap("examples");
  log(`Tokenizing ${examples.length} examples.`);
  const tokenizer = withBos(opts.tokenizer, opts.model);
  await tokenizeAll(tokenizer, examples, opts.signal);
  const truncatedExamples = await fitAll(tokenizer, examples, repo, opts);
  timer.lap("tokenizing");

  const { train: trainExamples, val: valExamples } = splitExamples(examples, held, valFraction);
  const splitOf = new Map<Example, "train" | "val">();
  for (const e of trainExamples) splitOf.set(e, "train");
  for (const e of valExamples) splitOf.set(e, "val");
  // Training order is shuffled so that a sequence mixes files; validation keeps file order, which is stable.
  shuffleInPlace(trainExamples, rng(hash32(`repotune-order:${opts.seed}`)));
  const noLoss = await noLossTokenIds(opts.tokenizer, opts.format, opts.model);
  const train = pack(trainExamples.map((e) => e.tokens), opts.seqLen, noLoss);
  const val = pack(valExamples.map((e) => e.tokens), opts.seqLen, noLoss);
  timer.lap("packing");

  const steps = opts.batch !== undefined ? recommendedSteps(train.sequences, opts.batch) : null;
  if (train.tokens < SMALL_REPO_TOKENS) warnings.push(smallRepoWarning(train.tokens, scale, steps));
  const valFiles = held.method === "one-file" ? byName.filter((f) => f.path === held.order[0]) : byName.filter((f) => held.val.has(f.path));
  const files: DatasetFiles = { train: trainFiles.map((f) => f.path), val: valFiles.map((f) => f.path), split: held.method };
  const dups = { exact: 0, near: 0, ofHeldOut: 0 };
  for (const d of duplicates) {
    dups[d.kind]++;
    if (held.val.has(d.of)) dups.ofHeldOut++;
  }
  const summary: DatasetSummary = {
    filesUsed: selected.length,
    filesSkipped: skipped,
    examples: examples.length,
    trainSequences: train.sequences,
    valSequences: val.sequences,
    trainTokens: train.tokens,
    valTokens: val.tokens,
    seqLen: opts.seqLen,
    promptFormat: opts.format.family,
    duplicates: dups,
    splitMethod: update ? "update" : held.method,
    heldOutFiles: held.val.size,
    ...(update ? { changedFiles: update.changed.length, replayFiles: update.replay.length } : {}),
    charsPerToken,
    ...(steps !== null ? { recommendedSteps: steps } : {}),
    warnings,
  };
  const meta: DatasetMeta = {
    format: "repotune-tokens",
    version: 2,
    seq_len: opts.seqLen,
    dtype: "int32",
    pad: -1,
    train_sequences: train.sequences,
    val_sequences: val.sequences,
    vocab_size: opts.model.vocabSize,
    prompt_format: opts.format.family,
    model_path: opts.modelPath,
    summary,
  };
  const chars = (list: readonly SourceText[]) => list.reduce((n, f) => n + f.text.length, 0);
  const report = buildReport({
    listed, used: selected.length, skipped, languages: selection.languages ?? {},
    secretsExcluded: selection.secretsExcluded ?? 0, secretFindings: selection.secretFindings ?? {},
    duplicates, method: held.method, heldOut: held.order, trainFiles: trainFiles.length,
    heldOutChars: held.method === "one-file" ? 0 : chars(valFiles), totalChars: chars(selected),
    trainTokens: train.tokens, valTokens: val.tokens, charsPerToken,
    trainSequences: train.sequences, valSequences: val.sequences, seqLen: opts.seqLen,
    examples: examples.map((e) => ({ split: splitOf.get(e)!, kind: e.span.kind, openEnd: e.span.openEnd, truncated: e.truncated })),
    mix, perFileScale: scale, recommendedSteps: steps, warnings,
  });
  checkAborted(opts.signal);
  // Examples were made file by file in name order, each file's by position: examples.jsonl reads top to bottom.
  // Lines are made as they are written, not all held at once.
  const lines = (function* () {
    for (const e of examples) {
      yield exampleLine({
        split: splitOf.get(e)!, file: e.file.path, kind: e.span.kind, openEnd: e.span.openEnd, start: e.span.start,
        prompt: promptText(e, opts.format, repo), middle: e.span.middle, tokens: e.tokens.length, truncated: e.truncated,
      });
    }
  })();
  await writeDataset(opts.outDir, { train, val, meta, files, examples: lines, report });
  timer.lap("report and writing");
  log(timer.line());
  return { summary, meta, files, report, truncatedExamples };
}

interface HeldOut {
  method: SplitMethod;
  /** Held-out files in the order they were chosen; the single file for "one-file". */
  order: string[];
  /** Held-out files; empty for "one-file", where the end of the file is held out instead. */
  val: Set<string>;
}

function holdOut(kept: readonly SourceText[], times: ReadonlyMap<string, number> | null, valFraction: number): HeldOut {
  if (kept.length === 1) return { method: "one-file", order: [kept[0].path], val: new Set() };
  const order = chooseHeldOut(kept.map((f) => ({ path: f.path, chars: f.text.length })), valFraction).val;
  // Files that all changed at once (one commit, nothing committed yet) carry no recency: their order is the hash's.
  const distinct = new Set(kept.map((f) => times?.get(f.path) ?? -Infinity));
  return { method: distinct.size > 1 ? "recent" : "hash", order, val: new Set(order) };
}

/** An update holds out its newest changed files, or the end of the one changed file (among replayed ones). */
function updateHeldOut(u: UpdateSplit): HeldOut {
  if (u.changed.length === 1) return { method: "one-file", order: [u.changed[0]], val: new Set() };
  return { method: "recent", order: u.heldOut, val: new Set(u.heldOut) };
}

function splitExamples(examples: Example[], held: HeldOut, valFraction: number): { train: Example[]; val: Example[] } {
  if (held.method === "one-file") {
    // The one file's end is held out; other files (an update's replayed ones) all train.
    const own = splitOneFile(examples.filter((e) => e.file.path === held.order[0]), (e) => e.span.start, valFraction);
    return { train: [...examples.filter((e) => e.file.path !== held.order[0]), ...own.train], val: own.val };
  }
  return { train: examples.filter((e) => !held.val.has(e.file.path)), val: examples.filter((e) => held.val.has(e.file.path)) };
}

/**
 * The engine prepends BOS to every completion prompt of a model that asks for one (ModelInfo.addBos), so each
 * training example starts with it too: the adapter learns on exactly the token sequence it is later asked.
 */
function withBos(tokenizer: Tokenizer, model: ModelInfo): Tokenizer {
  const bos = model.addBos && model.bos !== null ? model.bos : null;
  if (bos === null) return tokenizer;
  return { tokenize: async (items) => (await tokenizer.tokenize(items)).map((t) => [bos, ...t]) };
}

/**
 * Tokens never to train as targets: the prompt format's sentinels (FIM markers, repo and file headers), which the
 * completion prompt always supplies, and BOS. The end-of-middle token stays a target: it teaches where to stop.
 */
async function noLossTokenIds(tokenizer: Tokenizer, format: PromptFormat, model: ModelInfo): Promise<Set<number>> {
  const example = trainingExample(format, { prefix: "a", middle: "b", suffix: "c", filePath: "f", repoName: "r" });
  const sentinels = example.filter((s) => s.special && s.text !== format.endOfMiddle.text);
  const [end, ...each] = await tokenizer.tokenize([[format.endOfMiddle], ...sentinels.map((s) => [s])]);
  // Only a sentinel that is one token: one written as several (a space piece and a marker) would otherwise mask
  // that piece everywhere in code.
  const ids = new Set(each.filter((t) => t.length === 1).map((t) => t[0]));
  for (const id of end) ids.delete(id);
  if (model.bos !== null) ids.add(model.bos);
  return ids;
}

/** Characters per token of this model on this code, measured on a sample, to size context windows in characters. */
async function sampleCharsPerToken(tokenizer: Tokenizer, files: SourceText[]): Promise<number> {
  const sample: Segment[][] = [];
  let chars = 0;
  for (const f of files) {
    const text = f.text.slice(0, 16 * 1024);
    sample.push([{ text, special: false }]);
    chars += text.length;
    if (chars >= 64 * 1024) break;
  }
  const tokens = (await tokenizer.tokenize(sample)).reduce((n, t) => n + t.length, 0);
  return tokens > 0 ? chars / tokens : 1;
}

function fileExamples(file: SourceText, repo: string, opts: BuildDatasetOptions, charsPerToken: number, mix: ExampleMix, scale: number): Example[] {
  const budget = budgetFor(opts.seqLen, charsPerToken, file.path, repo);
  const spans = fimSpans(file.text, examplesPerFile(file, budget, scale), budget, rng(hash32(`repotune-fim:${opts.seed}:${file.path}`)), mix);
  // A short file drawn many times repeats cursors: one example per distinct span.
  const seen = new Set<string>();
  const out: Example[] = [];
  for (const span of spans) {
    const key = `${span.kind}:${span.start}:${span.middle.length}:${span.openEnd}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push({ file, span, budget, truncated: false, segments: segmentsOf(span, file.path, repo, opts.format), tokens: [] });
  }
  return out;
}

function examplesPerFile(file: SourceText, budget: Budget, scale: number): number {
  const base = Math.max(2, Math.ceil((COVERAGE * file.text.length) / (budget.prompt + budget.middle)));
  return Math.min(MAX_EXAMPLES_PER_FILE * scale, base * scale);
}

/**
 * How many times more examples per file a small repository gets: enough for about SMALL_REPO_TOKENS training tokens
 * (estimated from characters before anything is tokenized), at most MAX_SMALL_REPO_SCALE.
 */
function smallRepoScale(trainFiles: readonly SourceText[], method: SplitMethod, repo: string, seqLen: number, charsPerToken: number): number {
  let chars = 0;
  for (const f of trainFiles) {
    const budget = budgetFor(seqLen, charsPerToken, f.path, repo);
    // An example holds at most its budget, or the whole file when that is shorter.
    chars += examplesPerFile(f, budget, 1) * Math.min(f.text.length, budget.prompt + budget.middle);
  }
  const tokens = (chars / charsPerToken) * (method === "one-file" ? 0.9 : 1);
  return tokens >= SMALL_REPO_TOKENS ? 1 : Math.min(MAX_SMALL_REPO_SCALE, Math.ceil(SMALL_REPO_TOKENS / Math.max(1, tokens)));
}

/** A FIM example through the prompt-format module; a next-token example is its text alone (BOS comes in front). */
function segmentsOf(span: FimSpan, filePath: string, repo: string, format: PromptFormat): Segment[] {
  if (span.kind === "next-token") return [{ text: span.middle, special: false }];
  return trainingExample(format, { prefix: span.prefix, middle: span.middle, suffix: span.suffix, filePath, repoName: repo });
}

/** The prompt of an example as text, special tokens as their text: what examples.jsonl shows before the middle. */
function promptText(e: Example, format: PromptFormat, repo: string): string {
  if (e.span.kind === "next-token") return "";
  return format.fim({ prefix: e.span.prefix, suffix: e.span.suffix, filePath: e.file.path, repoName: repo }).map((s) => s.text).join("");
}

async function tokenizeAll(tokenizer: Tokenizer, examples: Example[], signal?: AbortSignal): Promise<void> {
  let batch: Example[] = [];
  let chars = 0;
  const flush = async () => {
    if (batch.length === 0) return;
    checkAborted(signal);
    const tokens = await tokenizer.tokenize(batch.map((e) => e.segments));
    if (tokens.length !== batch.length) throw new Error(`The engine returned ${tokens.length} token lists for ${batch.length} examples.`);
    batch.forEach((e, i) => (e.tokens = tokens[i]));
    batch = [];
    chars = 0;
  };
  for (const e of examples) {
    batch.push(e);
    chars += e.segments.reduce((n, s) => n + s.text.length, 0);
    if (chars >= TOKENIZE_BATCH_CHARS || batch.length >= TOKENIZE_BATCH_ITEMS) await flush();
  }
  await flush();
}

/**
 * Keeps every example within seqLen: one that came out longer (code denser than the sample) is rebuilt with its
 * budget narrowed by the overshoot, and only if still too long is it cut. Returns how many were cut.
 */
async function fitAll(tokenizer: Tokenizer, examples: Example[], repo: string, opts: BuildDatasetOptions): Promise<number> {
  const long = examples.filter((e) => e.tokens.length > opts.seqLen);
  for (const e of long) {
    e.span = narrowSpan(e.file.text, e.span, e.budget, (opts.seqLen * WINDOW_FILL) / e.tokens.length);
    e.segments = segmentsOf(e.span, e.file.path, repo, opts.format);
  }
  await tokenizeAll(tokenizer, long, opts.signal);
  let truncated = 0;
  for (const e of long) {
    const fit = fitExample(e.tokens, opts.seqLen);
    e.tokens = fit.tokens;
    e.truncated = fit.truncated;
    if (fit.truncated) truncated++;
  }
  return truncated;
}

/** Seconds per step of the build, logged as one line at the end ("Time by step: selection 1.2 s, ..."). */
function stepTimer(): { lap(step: string): void; line(): string } {
  const laps: string[] = [];
  let mark = performance.now();
  return {
    lap(step) {
      const now = performance.now();
      laps.push(`${step} ${((now - mark) / 1000).toFixed(2)} s`);
      mark = now;
    },
    line: () => `Time by step: ${laps.join(", ")}.`,
  };
}

function checkAborted(signal?: AbortSignal): void {
  if (signal?.aborted) throw new DatasetAborted();
}

export class DatasetAborted extends Error {
  constructor() {
    super("Preparing the dataset was stopped.");
    this.name = "DatasetAborted";
  }
}
