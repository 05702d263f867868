// The dataset step: folder -> usable text files -> FIM examples (through the prompt-format module only) ->
// tokens (the model's own tokenizer, in the engine) -> packed train/val sequences on disk.
import * as path from "node:path";
import type { ModelInfo, Segment } from "../../protocol/engine";
import type { DatasetSummary } from "../../protocol/run";
import { trainingExample, type PromptFormat } from "../promptFormat";
import { UserError } from "../errors";
import { repoName } from "../repoName";
import { describeSkipped, formatBytes } from "../format";
import { listFiles } from "./discover";
import { DEFAULT_MAX_FILE_BYTES, readSourceFile } from "./sourceFile";
import { fimSpans, fimWindow, windowCharsFor, WINDOW_FILL } from "./fim";
import { fitExample, pack } from "./pack";
import { hash32, rng, shuffleInPlace } from "./random";
import { DEFAULT_VAL_FRACTION, splitFiles, splitOneFile } from "./split";
import { writeDataset, type DatasetFiles } from "./write";
import type { DatasetMeta } from "../../protocol/dataset";

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
  /** Folders never to learn from even when inside `folder` (RepoTune's own runs folder, when placed there). */
  exclude?: string[];
  signal?: AbortSignal;
  log?: (message: string) => void;
}

export interface BuiltDataset {
  summary: DatasetSummary;
  meta: DatasetMeta;
  files: DatasetFiles;
  /** Examples still longer than seqLen after a narrower window, cut to seqLen. */
  truncatedExamples: number;
}

export interface SourceText {
  path: string;
  text: string;
}

const MAX_EXAMPLES_PER_FILE = 256;
const TOKENIZE_BATCH_CHARS = 512 * 1024;
const TOKENIZE_BATCH_ITEMS = 512;
const READ_CONCURRENCY = 16;

interface Example {
  file: SourceText;
  start: number;
  end: number;
  /** Built without the file's suffix (cursor at the end of what is written). */
  openEnd: boolean;
  windowChars: number;
  segments: Segment[];
  tokens: number[];
}

export async function buildDataset(opts: BuildDatasetOptions): Promise<BuiltDataset> {
  const log = opts.log ?? (() => undefined);
  const { usable, skipped, listed } = await readUsableFiles(opts.folder, opts.maxFileBytes ?? DEFAULT_MAX_FILE_BYTES, opts.exclude);
  if (listed === 0) {
    throw new UserError(`The folder ${opts.folder} has no files to learn from. Open the folder of a code repository and fine-tune again.`);
  }
  if (usable.length === 0) {
    throw new UserError(
      `The folder has no text files RepoTune can learn from: all ${listed} files were skipped (${describeSkipped(skipped)}). ` +
        `RepoTune learns from UTF-8 text files up to ${formatBytes(opts.maxFileBytes ?? DEFAULT_MAX_FILE_BYTES)} that .gitignore does not exclude; ` +
        "open a folder with source code.",
    );
  }
  checkAborted(opts.signal);

  const repo = await repoName(opts.folder);
  const charsPerToken = await sampleCharsPerToken(opts.tokenizer, usable);
  log(`Read ${usable.length} files; about ${charsPerToken.toFixed(2)} characters per token.`);

  const examples: Example[] = [];
  for (const file of usable) examples.push(...fileExamples(file, repo, opts, charsPerToken));
  log(`Tokenizing ${examples.length} examples.`);
  const tokenizer = withBos(opts.tokenizer, opts.model);
  await tokenizeAll(tokenizer, examples, opts.signal);
  const truncatedExamples = await fitAll(tokenizer, examples, repo, opts);

  const { trainExamples, valExamples, files } = splitExamples(usable, examples, opts.valFraction ?? DEFAULT_VAL_FRACTION);
  // Training order is shuffled so that a sequence mixes files; validation keeps file order, which is stable.
  shuffleInPlace(trainExamples, rng(hash32(`repotune-order:${opts.seed}`)));
  const noLoss = await noLossTokenIds(opts.tokenizer, opts.format, opts.model);
  const train = pack(trainExamples.map((e) => e.tokens), opts.seqLen, noLoss);
  const val = pack(valExamples.map((e) => e.tokens), opts.seqLen, noLoss);

  const summary: DatasetSummary = {
    filesUsed: usable.length,
    filesSkipped: skipped,
    examples: examples.length,
    trainSequences: train.sequences,
    valSequences: val.sequences,
    trainTokens: train.tokens,
    valTokens: val.tokens,
    seqLen: opts.seqLen,
    promptFormat: opts.format.family,
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
  checkAborted(opts.signal);
  await writeDataset(opts.outDir, train, val, meta, files);
  return { summary, meta, files, truncatedExamples };
}

/** The listed files that are usable text, and the others counted by reason. */
export async function readUsableFiles(
  folder: string,
  maxFileBytes = DEFAULT_MAX_FILE_BYTES,
  exclude: string[] = [],
): Promise<{ usable: SourceText[]; skipped: Record<string, number>; listed: number }> {
  const listing = await listFiles(folder);
  const excluded = exclude.map((d) => path.relative(folder, d).split(path.sep).join("/")).filter((r) => r !== "" && !r.startsWith("..") && !path.isAbsolute(r));
  listing.paths = listing.paths.filter((p) => !excluded.some((d) => p === d || p.startsWith(`${d}/`)));
  const skipped: Record<string, number> = { ...listing.skipped };
  const results = new Array<SourceText | null>(listing.paths.length).fill(null);
  let next = 0;
  const worker = async () => {
    while (next < listing.paths.length) {
      const i = next++;
      const rel = listing.paths[i];
      const read = await readSourceFile(path.join(folder, rel), maxFileBytes);
      if (read.ok) results[i] = { path: rel, text: read.text };
      else skipped[read.reason] = (skipped[read.reason] ?? 0) + 1;
    }
  };
  await Promise.all(Array.from({ length: READ_CONCURRENCY }, worker));
  const usable = results.filter((r): r is SourceText => r !== null);
  // Reads finish in any order; sorted reasons keep summaries and messages stable.
  const sortedSkipped = Object.fromEntries(Object.entries(skipped).sort(([a], [b]) => (a < b ? -1 : 1)));
  const listed = listing.paths.length + Object.values(listing.skipped).reduce((a, b) => a + b, 0);
  return { usable, skipped: sortedSkipped, listed };
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

function fileExamples(file: SourceText, repoName: string, opts: BuildDatasetOptions, charsPerToken: number): Example[] {
  const windowChars = windowCharsFor(opts.seqLen, charsPerToken, file.path, repoName);
  const count = Math.min(MAX_EXAMPLES_PER_FILE, Math.max(2, Math.ceil((2 * file.text.length) / windowChars)));
  const spans = fimSpans(file.text, count, windowChars, rng(hash32(`repotune-fim:${opts.seed}:${file.path}`)));
  return spans.map((s) => ({
    file,
    start: s.start,
    end: s.start + s.middle.length,
    openEnd: s.openEnd,
    windowChars,
    segments: trainingExample(opts.format, { prefix: s.prefix, middle: s.middle, suffix: s.suffix, filePath: file.path, repoName }),
    tokens: [],
  }));
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
 * Keeps every example within seqLen: one that came out longer (code denser than the sample) is rebuilt with a
 * window narrowed by the overshoot, and only if still too long is it cut. Returns how many were cut.
 */
async function fitAll(tokenizer: Tokenizer, examples: Example[], repoName: string, opts: BuildDatasetOptions): Promise<number> {
  const long = examples.filter((e) => e.tokens.length > opts.seqLen);
  for (const e of long) {
    e.windowChars = Math.max(16, Math.floor(e.windowChars * ((opts.seqLen * WINDOW_FILL) / e.tokens.length)));
    const end = Math.min(e.end, e.start + Math.floor(e.windowChars / 2));
    const { prefix, suffix } = fimWindow(e.openEnd ? e.file.text.slice(0, end) : e.file.text, e.start, end, e.windowChars);
    e.end = end;
    e.segments = trainingExample(opts.format, { prefix, middle: e.file.text.slice(e.start, end), suffix, filePath: e.file.path, repoName });
  }
  await tokenizeAll(tokenizer, long, opts.signal);
  let truncated = 0;
  for (const e of long) {
    const fit = fitExample(e.tokens, opts.seqLen);
    e.tokens = fit.tokens;
    if (fit.truncated) truncated++;
  }
  return truncated;
}

function splitExamples(usable: SourceText[], examples: Example[], valFraction: number): { trainExamples: Example[]; valExamples: Example[]; files: DatasetFiles } {
  if (usable.length === 1) {
    const { train, val } = splitOneFile(examples, valFraction);
    return { trainExamples: train, valExamples: val, files: { train: [usable[0].path], val: [usable[0].path] } };
  }
  const split = splitFiles(usable.map((f) => f.path), valFraction);
  const valSet = new Set(split.val);
  return {
    trainExamples: examples.filter((e) => !valSet.has(e.file.path)),
    valExamples: examples.filter((e) => valSet.has(e.file.path)),
    files: split,
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
