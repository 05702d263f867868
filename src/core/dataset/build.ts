// The dataset step: folder(s) -> usable text files -> duplicates left out -> held-out split (most recent files in
// git) -> examples (FIM through the prompt-format module only, and plain next-token text) -> tokens (the model's
// own tokenizer, in the engine) -> packed train/val sequences on disk, with examples.jsonl and report.json beside.
//
// Memory is bounded: selection keeps no text (only each file's length and fingerprint), the files are read again
// one by one when their examples are made, and each example's text lives until its line of examples.jsonl is
// written; what stays is its tokens, 4 bytes each, in memory up to a limit and then in a temporary file, until they
// are packed and written a block of sequences at a time.
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import * as path from "node:path";
import type { ModelInfo, Segment } from "../../protocol/engine";
import type { DatasetSummary } from "../../protocol/run";
import { trainingExample, type PromptFormat } from "../promptFormat";
import { UserError } from "../errors";
import { repoName } from "../repoName";
import { describeSkipped, formatBytes } from "../format";
import { DEFAULT_MAX_FILE_BYTES, readSourceFileSync } from "./sourceFile";
import { defaultWorkerCount, defaultWorkerScript, selectRecords, type Selection, type SourceRecord } from "./select";
import { budgetFor, checkMix, DEFAULT_MIX, narrowSpan, WINDOW_FILL, type ExampleMix, type FimSpan } from "./fim";
import { exampleCount, exampleOf, examplesInOrder, examplesPerFile, promptText, sameFormat, segmentsOf, type ExampleJob, type FileExamples, type MadeExample } from "./examples";
import { fitExample, packedBlocks, planPacking, TokenStore } from "./pack";
import { hash32, rng, shuffleInPlace } from "./random";
import { findDuplicatesOf, shingles } from "./dedupe";
import { changeTimes, chooseHeldOut, DEFAULT_VAL_FRACTION, holdOutOrder, type ChangeTimes, type SplitMethod } from "./split";
import { buildReport, ExampleCounts, exampleLine, exampleLineTail, recommendedSteps, SMALL_REPO_TOKENS, smallRepoWarning } from "./report";
import { DatasetWriter, type DatasetFiles } from "./write";
import { datasetRoots, type DatasetRoot } from "./roots";
import { changedSince, updateSplit, type UpdateOption, type UpdateSplit } from "./updateSplit";
import type { DatasetMeta, DatasetReport } from "../../protocol/dataset";

/** What the dataset step needs from the engine: the base model's own tokenizer. */
export interface Tokenizer {
  tokenize(items: Segment[][]): Promise<number[][]>;
}

export interface BuildDatasetOptions {
  /**
   * The folder to learn from, or the folders of a multi-root workspace: each selected with its own git view and
   * ignore files, its paths prefixed with its name (roots.ts), the held-out split taken across all of them.
   */
  folder: string | readonly string[];
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
  /** Folders never to learn from even when inside a folder (RepoTune's own runs folder, when placed there). */
  exclude?: string[];
  /** The user's exclude patterns (gitignore syntax, relative to each folder), on top of its .repotuneignore. */
  excludeGlobs?: string[];
  /** Patterns of files to learn from even though a rule (vendored, generated, excluded...) left them out; never secrets. */
  include?: string[];
  signal?: AbortSignal;
  log?: (message: string) => void;
  /** An adapter update: train on the files changed since this commit plus a replay sample, hold out changed files. */
  update?: UpdateOption;
  /**
   * Worker threads for selecting files; 0 selects them in this thread. Default: one per core (at least 1, at most 8)
   * for folders of 200 files or more when the worker script exists, else 0.
   */
  workers?: number;
  /** Worker threads for making examples (examples.ts), 0 for none; default as for `workers`. */
  exampleWorkers?: number;
  /** The bundled worker; default `selectWorker.js` beside the running bundle (dist/). */
  workerScript?: string;
}

export interface BuiltDataset {
  summary: DatasetSummary;
  meta: DatasetMeta;
  files: DatasetFiles;
  report: DatasetReport;
  /** Examples still longer than seqLen after a narrower window, cut to seqLen. */
  truncatedExamples: number;
}

/** A small repository gets up to this many times more examples per file (more cursors, not copies). */
const MAX_SMALL_REPO_SCALE = 8;
const TOKENIZE_BATCH_CHARS = 512 * 1024;
const TOKENIZE_BATCH_ITEMS = 512;
/**
 * Tokens packed at a time (64 MB, and 16 MB of flags; two blocks are held, one being written while the next is
 * packed), and tokens kept in memory before the rest go to a temporary file (128 MB): what bounds the build's memory
 * however large the repository. Each block of sequences reads the file forward once: at 50,000 files (200 million
 * tokens, 262 million places in sequences) 17 reads of 0.7 GB from the page cache, about 60 ms each; blocks twice
 * this size took the same time and 0.2 GB more memory (bench/dataset.mjs).
 */
const WRITE_BLOCK_TOKENS = 16 << 20;
const STORE_CHUNK_TOKENS = 1 << 20;
const STORE_MEMORY_CHUNKS = 32;

/** A usable file of one of the roots, by its dataset path (prefixed in a multi-root dataset). */
interface FileEntry extends SourceRecord {
  root: DatasetRoot;
  /** The path within its root's folder. */
  rel: string;
  /** Repository name in its prompts' headers. */
  repo: string;
}

/** An example on its way through the tokenizer. */
interface Example {
  file: FileEntry;
  made: MadeExample;
  /** Its line of examples.jsonl up to the tokens, bytes [from, to) of `heads` (examples.ts); null once narrowed. */
  heads: Uint8Array | null;
  from: number;
  to: number;
  /** A narrowed example's middle, its line then written whole (the others' middle is in `heads`). */
  middle: string | null;
  truncated: boolean;
}

/** Below this many files, starting worker threads costs more than it saves (as in select.ts). */
const WORKER_MIN_FILES = 200;

export async function buildDataset(opts: BuildDatasetOptions): Promise<BuiltDataset> {
  const log = opts.log ?? (() => undefined);
  const timer = stepTimer();
  const mix = opts.mix ?? DEFAULT_MIX;
  const badMix = checkMix(mix);
  if (badMix !== null) throw new UserError(`The mix of example kinds is invalid: ${badMix} (rest of line, lines, block, next token).`);
  const roots = datasetRoots(opts.folder);
  if (opts.update && roots.length > 1) {
    throw new UserError("An adapter update follows one repository's commits; it cannot take several folders. Update from one folder, or fine-tune from scratch.");
  }
  const maxFileBytes = opts.maxFileBytes ?? DEFAULT_MAX_FILE_BYTES;
  const selection = await selectRoots(roots, {
    maxFileBytes, exclude: opts.exclude, include: opts.include, excludeGlobs: opts.excludeGlobs, signal: opts.signal,
    workers: opts.workers, workerScript: opts.workerScript,
  });
  timer.lap("selection");
  const { usable, skipped, listed } = selection;
  const many = roots.length > 1;
  if (listed === 0) {
    const where = many ? `The folders ${roots.map((r) => r.folder).join(", ")} have` : `The folder ${roots[0].folder} has`;
    throw new UserError(`${where} no files to learn from. Open the folder of a code repository and fine-tune again.`);
  }
  if (usable.length === 0) {
    throw new UserError(
      `${many ? "The folders have" : "The folder has"} no text files RepoTune can learn from: all ${listed} files were skipped (${describeSkipped(skipped)}). ` +
        `RepoTune learns from UTF-8 text files up to ${formatBytes(maxFileBytes)} that are not excluded by .gitignore, ` +
        ".repotuneignore or the repotune.dataset.exclude setting, and are not vendored, generated or holding a secret; " +
        "open a folder with source code, or re-admit files with the repotune.dataset.include setting.",
    );
  }
  checkAborted(opts.signal);
  const valFraction = opts.valFraction ?? DEFAULT_VAL_FRACTION;
  const warnings: string[] = [];
  const texts = new TextReader(maxFileBytes);

  // One order decides both which copy of a duplicate survives and which files are held out: the newest changes in
  // git (or a path hash) come first, so a held-out file keeps its copies out of training.
  const recency = await rootsChangeTimes(roots);
  timer.lap("git history");
  warnings.push(...recency.warnings);
  const byPath = new Map(usable.map((f) => [f.path, f]));
  const ordered = holdOutOrder(usable.map((f) => f.path), recency.times).map((p) => byPath.get(p)!);
  // The exact check of a near-duplicate candidate reads both files again; one that changed since it was selected
  // has no shingles, so it is no one's copy (and is left out below).
  const { kept, duplicates } = findDuplicatesOf(ordered, (f) => f.fingerprint, (f) => shingles(texts.read(f) ?? ""));
  timer.lap("duplicates");
  if (duplicates.length > 0) log(`Left out ${duplicates.length} duplicate files.`);
  checkAborted(opts.signal);
  let selected = kept;
  let update: UpdateSplit | null = null;
  if (opts.update) {
    const folder = roots[0].folder;
    update = updateSplit(kept.map((f) => ({ path: f.path, chars: f.chars })), await changedSince(folder, opts.update.sinceCommit), recency.times, {
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

  const charsPerToken = await sampleCharsPerToken(opts.tokenizer, byName, texts);
  log(`Read ${selected.length} files; about ${charsPerToken.toFixed(2)} characters per token.`);
  const scale = smallRepoScale(trainFiles, held.method, opts.seqLen, charsPerToken);
  const bos = opts.model.addBos && opts.model.bos !== null ? opts.model.bos : null;
  const writer = await DatasetWriter.open(opts.outDir);
  const made = new ExampleMaker(opts, bos, writer, path.join(opts.outDir, `.tokens.${process.pid}.${Date.now()}.tmp`), texts, charsPerToken);
  try {
    // Examples are made file by file in name order, each file's by position, and their lines of examples.jsonl
    // written as they are tokenized: the file reads top to bottom, and no list of examples is kept. Worker threads
    // make the files' examples ahead of this loop, which tokenizes, stores and writes them in order.
    let changed = 0;
    const jobs: ExampleJob[] = byName.map((f) => ({
      path: f.path, abs: path.join(f.root.folder, f.rel), repo: f.repo, digest: f.fingerprint.digest,
      split: held.val.has(f.path) ? "val" : "train", oneFile: held.method === "one-file" && f.path === held.order[0],
    }));
    const setup = { model: opts.model, seqLen: opts.seqLen, charsPerToken, mix, scale, seed: opts.seed, valFraction, maxFileBytes };
    const script = opts.workerScript ?? defaultWorkerScript();
    const workers = sameFormat(opts.format, opts.model) ? (opts.exampleWorkers ?? (byName.length >= WORKER_MIN_FILES && script ? defaultWorkerCount() : 0)) : 0;
    if (workers > 0 && (!script || !existsSync(script))) throw new Error(`The worker script ${script ?? "selectWorker.js"} is missing; rebuild RepoTune (node esbuild.mjs).`);
    let k = 0;
    for await (const examples of examplesInOrder(jobs, setup, opts.format, workers, script)) {
      checkAborted(opts.signal);
      const file = byName[k++];
      if (examples === null) {
        changed++;
        continue;
      }
      await made.addFile(file, examples);
    }
    await made.flush();
    timer.lap("examples and tokenizing");
    if (changed > 0) {
      warnings.push(`${changed} files changed or went away while the dataset was built and were left out; fine-tune again to learn from them.`);
    }
    log(`Made ${made.counts.train + made.counts.val} examples.`);

    // Training order is shuffled so that a sequence mixes files; validation keeps file order, which is stable.
    const trainOrder = [...made.train, ...made.ownTrain];
    shuffleInPlace(trainOrder, rng(hash32(`repotune-order:${opts.seed}`)));
    const noLoss = await noLossTokenIds(opts.tokenizer, opts.format, opts.model);
    const train = planPacking(made.store, trainOrder, opts.seqLen);
    const val = planPacking(made.store, made.val, opts.seqLen);
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
      examples: made.counts.train + made.counts.val,
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
    const chars = (list: readonly FileEntry[]) => list.reduce((n, f) => n + f.chars, 0);
    const report = buildReport({
      listed, used: selected.length, skipped, languages: selection.languages,
      secretsExcluded: selection.secretsExcluded, secretFindings: selection.secretFindings,
      duplicates, method: held.method, heldOut: held.order, trainFiles: trainFiles.length,
      heldOutChars: held.method === "one-file" ? 0 : chars(valFiles), totalChars: chars(selected),
      trainTokens: train.tokens, valTokens: val.tokens, charsPerToken,
      trainSequences: train.sequences, valSequences: val.sequences, seqLen: opts.seqLen,
      examples: made.counts, mix, perFileScale: scale, recommendedSteps: steps, warnings,
    });
    checkAborted(opts.signal);
    const block = Math.max(1, Math.floor(WRITE_BLOCK_TOKENS / opts.seqLen));
    await made.store.settled();
    await writer.split("train", packedBlocks(made.store, train, noLoss, block));
    await writer.split("val", packedBlocks(made.store, val, noLoss, block));
    timer.lap("writing");
    await writer.finish({ meta, files, report });
    timer.lap("flushing to disk");
    log(timer.line());
    return { summary, meta, files, report, truncatedExamples: made.counts.truncated };
  } catch (err) {
    // A batch may still be at the tokenizer: it ends before the files it writes to go.
    await made.idle();
    await writer.abort();
    throw err;
  } finally {
    await made.store.disposeWhenSettled();
  }
}

/**
 * Each root selected on its own (its git view, .gitignore and .repotuneignore; patterns relative to it), its paths
 * prefixed with its name in a multi-root dataset, and the counts added up.
 */
async function selectRoots(roots: readonly DatasetRoot[], opts: Parameters<typeof selectRecords>[1]): Promise<Selection<FileEntry>> {
  const out: Selection<FileEntry> = { usable: [], skipped: {}, listed: 0, secretsExcluded: 0, secretFindings: {}, languages: {} };
  const add = (table: Record<string, number>, from: Record<string, number>) => {
    for (const [k, n] of Object.entries(from)) table[k] = (table[k] ?? 0) + n;
  };
  for (const root of roots) {
    const s = await selectRecords(root.folder, opts);
    const repo = await repoName(root.folder);
    for (const f of s.usable) out.usable.push({ ...f, path: root.prefix + f.path, rel: f.path, root, repo });
    add(out.skipped, s.skipped);
    out.listed += s.listed;
    out.secretsExcluded += s.secretsExcluded;
    add(out.secretFindings, s.secretFindings);
    for (const [lang, st] of Object.entries(s.languages)) {
      const t = (out.languages[lang] ??= { files: 0, bytes: 0 });
      t.files += st.files;
      t.bytes += st.bytes;
    }
  }
  if (roots.length === 1) return out;
  // Roots come in the order given, not by name: sorted as one folder's would be.
  const sorted = <T>(table: Record<string, T>) => Object.fromEntries(Object.entries(table).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  out.usable.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return { ...out, skipped: sorted(out.skipped), secretFindings: sorted(out.secretFindings), languages: sorted(out.languages) };
}

/** Change times of every root's files, by dataset path; null when no root has git history. */
async function rootsChangeTimes(roots: readonly DatasetRoot[]): Promise<{ times: Map<string, number> | null; warnings: string[] }> {
  const each: ChangeTimes[] = [];
  for (const root of roots) each.push(await changeTimes(root.folder));
  const warnings = each.flatMap((c) => (c.warning === null ? [] : [c.warning]));
  if (roots.length === 1) return { times: each[0].times, warnings };
  if (each.every((c) => c.times === null)) return { times: null, warnings };
  const times = new Map<string, number>();
  each.forEach((c, i) => c.times?.forEach((t, p) => times.set(roots[i].prefix + p, t)));
  return { times, warnings };
}

/**
 * Reads a selected file again, as it was when selected: a file whose text changed since (its hash differs) or that
 * can no longer be read gives null, so that nothing enters the dataset that the secret scan did not see.
 */
class TextReader {
  constructor(private readonly maxFileBytes: number) {}

  read(file: FileEntry): string | null {
    const read = readSourceFileSync(path.join(file.root.folder, file.rel), this.maxFileBytes);
    if (!read.ok) return null;
    return createHash("sha256").update(read.text).digest("hex") === file.fingerprint.digest ? read.text : null;
  }
}

/**
 * Tokenizes examples in batches as files hand them over, fits the long ones into the sequence length, writes their
 * lines of examples.jsonl, and keeps their tokens (BOS first where the model wants it) in a TokenStore, by split.
 */
class ExampleMaker {
  readonly store: TokenStore;
  readonly counts = new ExampleCounts();
  /** Store indices of training examples in example order; ownTrain: a single held-out file's training examples, which come last. */
  readonly train: number[] = [];
  readonly ownTrain: number[] = [];
  readonly val: number[] = [];
  private batch: Example[] = [];
  private chars = 0;
  /** exampleLineTail's bytes by token count and truncation: at most 2 x seqLen of them, each made once. */
  private readonly tails = new Map<number, Uint8Array>();
  /** The file last read again to narrow an example (its long examples come together). */
  private lastText: { path: string; text: string } | null = null;
  private inFlight: Promise<void> = Promise.resolve();

  constructor(
    private readonly opts: BuildDatasetOptions,
    private readonly bos: number | null,
    private readonly writer: DatasetWriter,
    spillPath: string,
    private readonly texts: TextReader,
    private readonly charsPerToken: number,
  ) {
    this.store = new TokenStore(opts.seqLen, { path: spillPath, memoryChunks: STORE_MEMORY_CHUNKS, background: true }, STORE_CHUNK_TOKENS);
  }

  async addFile(file: FileEntry, made: FileExamples): Promise<void> {
    const heads = made.heads;
    for (let i = 0, n = exampleCount(made); i < n; i++) {
      const from = i === 0 ? 0 : made.headEnds[i - 1];
      const e: Example = { file, made: exampleOf(made, i, file.path, file.repo, this.opts.format), heads, from, to: made.headEnds[i], middle: null, truncated: false };
      this.batch.push(e);
      for (const s of e.made.segments) this.chars += s.text.length;
      if (this.chars >= TOKENIZE_BATCH_CHARS || this.batch.length >= TOKENIZE_BATCH_ITEMS) await this.send();
    }
  }

  /** Resolves when no batch is at the tokenizer any more, whether it succeeded or not. */
  idle(): Promise<void> {
    return this.inFlight.catch(() => undefined);
  }

  /** Sends what is left and waits until every example is stored and written. */
  async flush(): Promise<void> {
    await this.send();
    await this.inFlight;
  }

  /**
   * Sends the batch to the tokenizer and returns once the batch before it is done: the engine tokenizes one batch
   * (in its own process) while this thread makes the next, and at most two batches of examples are held.
   */
  private async send(): Promise<void> {
    const batch = this.batch;
    if (batch.length === 0) return;
    this.batch = [];
    this.chars = 0;
    checkAborted(this.opts.signal);
    const tokens = this.tokenize(batch);
    const previous = this.inFlight;
    const done = (async () => {
      const t = await tokens;
      await previous;
      await this.finish(batch, t);
    })();
    // Marked as handled now: a failure is thrown where it is awaited (the next send, or flush), not as an
    // unhandled rejection while this thread is busy making examples.
    done.catch(() => undefined);
    this.inFlight = done;
    await previous;
  }

  private async finish(batch: Example[], tokens: number[][]): Promise<void> {
    // An example that came out longer than seqLen (code denser than the sample) is rebuilt with its budget narrowed
    // by the overshoot, and only if still too long is it cut.
    const long = batch.flatMap((e, i) => (tokens[i].length + this.extra > this.opts.seqLen ? [i] : []));
    // Read again to narrow: a file that changed since its examples were made is not narrowed, only cut below.
    const narrowed = long.filter((i) => this.narrow(batch[i], (this.opts.seqLen * WINDOW_FILL) / (tokens[i].length + this.extra)));
    if (narrowed.length > 0) {
      const again = await this.tokenize(narrowed.map((i) => batch[i]));
      tokens = [...tokens];
      narrowed.forEach((i, k) => (tokens[i] = again[k]));
    }
    for (let i = 0; i < batch.length; i++) {
      const e = batch[i];
      let t = tokens[i];
      if (t.length + this.extra > this.opts.seqLen) {
        t = fitExample(t, this.opts.seqLen - this.extra).tokens;
        e.truncated = true;
      }
      const index = this.store.add(t, this.bos ?? undefined);
      const m = e.made;
      (m.split === "val" ? this.val : m.ownFile ? this.ownTrain : this.train).push(index);
      this.counts.add({ split: m.split, kind: m.kind, openEnd: m.openEnd, truncated: e.truncated });
      if (e.heads !== null) {
        this.writer.exampleLineParts(e.heads, e.from, e.to, this.tail(t.length + this.extra, e.truncated));
      } else {
        this.writer.exampleLine(exampleLine({
          split: m.split, file: e.file.path, kind: m.kind, openEnd: m.openEnd, start: m.start,
          prompt: promptText(m), middle: e.middle ?? "", tokens: t.length + this.extra, truncated: e.truncated,
        }));
      }
    }
    await this.writer.drain();
    await this.store.backlog();
  }

  private tail(tokens: number, truncated: boolean): Uint8Array {
    const key = tokens * 2 + (truncated ? 1 : 0);
    let bytes = this.tails.get(key);
    if (bytes === undefined) this.tails.set(key, (bytes = Buffer.from(exampleLineTail(tokens, truncated), "utf8")));
    return bytes;
  }

  /**
   * Rebuilds an example that came out longer than seqLen with its budget narrowed by `factor`, from its file read
   * again (as selected); false when the file changed since, and the example is then cut to fit.
   */
  private narrow(e: Example, factor: number): boolean {
    let text = this.lastText?.path === e.file.path ? this.lastText.text : null;
    if (text === null) {
      text = this.texts.read(e.file);
      if (text === null) return false;
      this.lastText = { path: e.file.path, text };
    }
    const m = e.made;
    const was: FimSpan = { kind: m.kind, prefix: "", middle: text.slice(m.start, m.start + m.middleLength), suffix: "", start: m.start, openEnd: m.openEnd };
    const span = narrowSpan(text, was, budgetFor(this.opts.seqLen, this.charsPerToken, e.file.path, e.file.repo), factor);
    m.segments = segmentsOf(span, e.file.path, e.file.repo, this.opts.format);
    m.middleLength = span.middle.length;
    e.middle = span.middle;
    e.heads = null;
    return true;
  }

  /** BOS, which the engine prepends to every completion prompt of a model that asks for one: 1 token or none. */
  private get extra(): number {
    return this.bos === null ? 0 : 1;
  }

  private async tokenize(batch: readonly Example[]): Promise<number[][]> {
    const tokens = await this.opts.tokenizer.tokenize(batch.map((e) => e.made.segments));
    if (tokens.length !== batch.length) throw new Error(`The engine returned ${tokens.length} token lists for ${batch.length} examples.`);
    return tokens;
  }
}

interface HeldOut {
  method: SplitMethod;
  /** Held-out files in the order they were chosen; the single file for "one-file". */
  order: string[];
  /** Held-out files; empty for "one-file", where the end of the file is held out instead. */
  val: Set<string>;
}

function holdOut(kept: readonly FileEntry[], times: ReadonlyMap<string, number> | null, valFraction: number): HeldOut {
  if (kept.length === 1) return { method: "one-file", order: [kept[0].path], val: new Set() };
  const order = chooseHeldOut(kept.map((f) => ({ path: f.path, chars: f.chars })), valFraction).val;
  // Files that all changed at once (one commit, nothing committed yet) carry no recency: their order is the hash's.
  const distinct = new Set(kept.map((f) => times?.get(f.path) ?? -Infinity));
  return { method: distinct.size > 1 ? "recent" : "hash", order, val: new Set(order) };
}

/** An update holds out its newest changed files, or the end of the one changed file (among replayed ones). */
function updateHeldOut(u: UpdateSplit): HeldOut {
  if (u.changed.length === 1) return { method: "one-file", order: [u.changed[0]], val: new Set() };
  return { method: "recent", order: u.heldOut, val: new Set(u.heldOut) };
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
async function sampleCharsPerToken(tokenizer: Tokenizer, files: readonly FileEntry[], texts: TextReader): Promise<number> {
  const sample: Segment[][] = [];
  let chars = 0;
  for (const f of files) {
    const full = texts.read(f);
    if (full === null) continue;
    const text = full.slice(0, 16 * 1024);
    sample.push([{ text, special: false }]);
    chars += text.length;
    if (chars >= 64 * 1024) break;
  }
  const tokens = (await tokenizer.tokenize(sample)).reduce((n, t) => n + t.length, 0);
  return tokens > 0 ? chars / tokens : 1;
}

/**
 * How many times more examples per file a small repository gets: enough for about SMALL_REPO_TOKENS training tokens
 * (estimated from characters before anything is tokenized), at most MAX_SMALL_REPO_SCALE.
 */
function smallRepoScale(trainFiles: readonly FileEntry[], method: SplitMethod, seqLen: number, charsPerToken: number): number {
  let chars = 0;
  for (const f of trainFiles) {
    const budget = budgetFor(seqLen, charsPerToken, f.path, f.repo);
    // An example holds at most its budget, or the whole file when that is shorter.
    chars += examplesPerFile(f.chars, budget, 1) * Math.min(f.chars, budget.prompt + budget.middle);
  }
  const tokens = (chars / charsPerToken) * (method === "one-file" ? 0.9 : 1);
  return tokens >= SMALL_REPO_TOKENS ? 1 : Math.min(MAX_SMALL_REPO_SCALE, Math.ceil(SMALL_REPO_TOKENS / Math.max(1, tokens)));
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
