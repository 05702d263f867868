// A file's training examples, made where the file is read: in worker threads for a large repository (the same
// bundled script as file selection, selectWorker.ts), in this thread for a small one. Making examples (reading each
// file again, checking its hash, cutting spans, building prompts, and the JSON of its lines of examples.jsonl) was
// most of the dataset build's main-thread time after selection (bench/dataset.mjs); what stays on the main thread is
// tokenizing, storing tokens and writing, in file order.
//
// A worker sends back each example's segments (the tokenizer needs them as strings) and the UTF-8 of each line of
// examples.jsonl up to its token count (lineHead), which only the tokenizer decides; the buffers are transferred, not
// copied. The output is the same bytes whichever thread made it.
import { createHash } from "node:crypto";
import { Worker } from "node:worker_threads";
import type { ModelInfo, Segment } from "../../protocol/engine";
import { promptFormatFor, trainingExample, type PromptFormat } from "../promptFormat";
import { readSourceFileSync } from "./sourceFile";
import { budgetFor, fimSpans, type Budget, type ExampleMix, type FimSpan, type SpanKind } from "./fim";
import { hash32, rng } from "./random";
import { splitOneFile } from "./split";
import { exampleLineHeadJson } from "./report";

/** Everything making a file's examples needs besides the file: plain data, so that a worker thread gets it too. */
export interface ExampleSetup {
  /** The model, whose prompt format a worker rebuilds (promptFormatFor); checked against the build's (sameFormat). */
  model: ModelInfo;
  seqLen: number;
  charsPerToken: number;
  mix: ExampleMix;
  /** Times more examples per file for a small repository (1 for most). */
  scale: number;
  seed: number;
  valFraction: number;
  maxFileBytes: number;
}

/** One file to make examples of. */
export interface ExampleJob {
  /** Dataset path (prefixed in a multi-root dataset): what prompts, seeds and examples.jsonl name. */
  path: string;
  /** Where to read it. */
  abs: string;
  repo: string;
  /** SHA-256 of its text when it was selected: a file that changed since (unscanned text) gives no examples. */
  digest: string;
  split: "train" | "val";
  /** The single file of a "one-file" split: its last examples by position are validation examples. */
  oneFile: boolean;
}

export interface MadeExample {
  split: "train" | "val";
  /** A training example of the one-file split's file: these come after all others, before shuffling. */
  ownFile: boolean;
  kind: SpanKind;
  start: number;
  middleLength: number;
  openEnd: boolean;
  segments: Segment[];
}

/**
 * A file's examples in order, as places in its text (SPAN_FIELDS numbers each; exampleOf makes them examples),
 * and the heads of their lines of examples.jsonl, UTF-8, back to back. From a worker, the file's text is one string
 * to copy, where its examples' prompts (which hold each character about four times) would be many.
 */
export interface FileExamples {
  text: string;
  spans: Int32Array;
  heads: Uint8Array;
  /** headEnds[i]: where example i's head ends in `heads` (it starts where the one before ends). */
  headEnds: Int32Array;
}

const KINDS: readonly SpanKind[] = ["rest-of-line", "lines", "block", "next-token"];
/** Per example: kind (index in KINDS), split (1: val), ownFile, openEnd, prefix start, middle start, middle end, suffix end. */
const SPAN_FIELDS = 8;

export function exampleCount(f: FileExamples): number {
  return f.spans.length / SPAN_FIELDS;
}

/** Example `i` of a file, its prompt built from the file's text through the prompt-format module. */
export function exampleOf(f: FileExamples, i: number, filePath: string, repo: string, format: PromptFormat): MadeExample {
  const at = i * SPAN_FIELDS;
  const s = f.spans;
  const start = s[at + 5];
  const end = s[at + 6];
  const span: FimSpan = {
    kind: KINDS[s[at]], prefix: f.text.slice(s[at + 4], start), middle: f.text.slice(start, end), suffix: f.text.slice(end, s[at + 7]), start,
    openEnd: s[at + 3] === 1,
  };
  return {
    split: s[at + 1] === 1 ? "val" : "train", ownFile: s[at + 2] === 1, kind: span.kind, start, middleLength: end - start, openEnd: span.openEnd,
    segments: segmentsOf(span, filePath, repo, format),
  };
}

const MAX_EXAMPLES_PER_FILE = 256;
/** Examples per file cover it about this many times over (each character in about two examples' windows). */
const COVERAGE = 2;

export function examplesPerFile(chars: number, budget: Budget, scale: number): number {
  const base = Math.max(2, Math.ceil((COVERAGE * chars) / (budget.prompt + budget.middle)));
  return Math.min(MAX_EXAMPLES_PER_FILE * scale, base * scale);
}

/** Reads the file, as it was when selected, and makes its examples; null when it changed or cannot be read. */
export function readAndMake(setup: ExampleSetup, format: PromptFormat, job: ExampleJob): FileExamples | null {
  const read = readSourceFileSync(job.abs, setup.maxFileBytes);
  if (!read.ok || createHash("sha256").update(read.text).digest("hex") !== job.digest) return null;
  return makeFileExamples(setup, format, job, read.text);
}

/**
 * A file's examples, each with its split: a held-out file's are validation examples; with a single file
 * ("one-file"), its last examples by position are.
 */
export function makeFileExamples(setup: ExampleSetup, format: PromptFormat, job: ExampleJob, text: string): FileExamples {
  const budget = budgetFor(setup.seqLen, setup.charsPerToken, job.path, job.repo);
  const count = examplesPerFile(text.length, budget, setup.scale);
  const spans = fimSpans(text, count, budget, rng(hash32(`repotune-fim:${setup.seed}:${job.path}`)), setup.mix);
  // A short file drawn many times repeats cursors: one example per distinct span.
  const seen = new Set<string>();
  let out: { span: FimSpan; e: MadeExample }[] = [];
  for (const span of spans) {
    const key = `${span.kind}:${span.start}:${span.middle.length}:${span.openEnd}`;
    if (seen.has(key)) continue;
    seen.add(key);
    const e: MadeExample = {
      split: job.split, ownFile: false, kind: span.kind, start: span.start, middleLength: span.middle.length, openEnd: span.openEnd,
      segments: segmentsOf(span, job.path, job.repo, format),
    };
    out.push({ span, e });
  }
  if (job.oneFile) {
    // The one file's end is held out; other files (an update's replayed ones) all train.
    const own = splitOneFile(out, (x) => x.span.start, setup.valFraction);
    for (const x of own.train) x.e.ownFile = true;
    for (const x of own.val) x.e.split = "val";
    // Sorted by position, as they already were (spans come in file order and the sort is stable).
    out = [...own.train, ...own.val].sort((a, b) => a.span.start - b.span.start);
  }
  const heads = out.map(({ span, e }) =>
    exampleLineHeadJson({ split: e.split, file: job.path, kind: e.kind, openEnd: e.openEnd, start: e.start, prompt: promptText(e), middle: span.middle }),
  );
  let bytes = 0;
  for (const h of heads) bytes += Buffer.byteLength(h);
  // Not from Buffer's shared pool: a worker transfers this buffer's memory to the main thread.
  const buf = Buffer.allocUnsafeSlow(bytes);
  const headEnds = new Int32Array(heads.length);
  let at = 0;
  // Each head is its JSON less the closing "}" (one byte), which the next head's bytes overwrite.
  heads.forEach((h, i) => (headEnds[i] = at += buf.write(h, at) - 1));
  const places = new Int32Array(out.length * SPAN_FIELDS);
  out.forEach(({ span, e }, i) => {
    // Prefix and suffix are slices of the text around the middle (an open end's suffix is empty).
    const end = span.start + span.middle.length;
    places.set([KINDS.indexOf(e.kind), e.split === "val" ? 1 : 0, e.ownFile ? 1 : 0, e.openEnd ? 1 : 0, span.start - span.prefix.length, span.start, end, end + span.suffix.length], i * SPAN_FIELDS);
  });
  return { text, spans: places, heads: buf, headEnds };
}

/** A FIM example through the prompt-format module; a next-token example is its text alone (BOS comes in front). */
export function segmentsOf(span: FimSpan, filePath: string, repo: string, format: PromptFormat): Segment[] {
  if (span.kind === "next-token") return [{ text: span.middle, special: false }];
  return trainingExample(format, { prefix: span.prefix, middle: span.middle, suffix: span.suffix, filePath, repoName: repo });
}

/**
 * The prompt of an example as text, special tokens as their text: what examples.jsonl shows before the middle. A FIM
 * example's segments are the prompt, the middle and the end-of-middle token (trainingExample; an empty middle is
 * left out).
 */
export function promptText(e: Pick<MadeExample, "kind" | "middleLength" | "segments">): string {
  if (e.kind === "next-token") return "";
  const end = e.segments.length - (e.middleLength === 0 ? 1 : 2);
  let text = "";
  for (let i = 0; i < end; i++) text += e.segments[i].text;
  return text;
}

/**
 * Whether `format` builds the same training examples as the model's own format, which is what a worker thread uses
 * (a PromptFormat is code and does not travel): a caller that passes another format gets its examples made in this
 * thread.
 */
export function sameFormat(format: PromptFormat, model: ModelInfo): boolean {
  let own: PromptFormat;
  try {
    own = promptFormatFor(model);
  } catch {
    return false;
  }
  const probe = { prefix: "a\n", middle: "b", suffix: "c\n", filePath: "d/e.ts", repoName: "r" };
  const shape = (f: PromptFormat) => JSON.stringify([f.family, f.endOfMiddle, trainingExample(f, probe), trainingExample(f, { prefix: "", middle: "", suffix: "" })]);
  return shape(own) === shape(format);
}

// ---- Worker threads ----

/** Files per message to a worker. */
const BATCH = 16;
/**
 * Batches sent to each worker ahead of the one the build is at: enough that a worker never waits while this thread
 * is busy (it sends more only when it takes replies, between its own work), few enough to bound the examples held
 * (some hundreds of KB of text per batch) when tokenizing is the slower side (the engine).
 */
const AHEAD_PER_WORKER = 8;

export interface ExampleWorkerSetup {
  task: "examples";
  setup: ExampleSetup;
}

export interface ExampleBatch {
  id: number;
  jobs: ExampleJob[];
}

export interface ExampleReply {
  id: number;
  files: (FileExamples | null)[];
}

/** The worker's side: makes a batch's examples and sends them back, their heads' memory transferred. */
export function exampleWorker(data: ExampleWorkerSetup, post: (reply: ExampleReply, transfer: ArrayBuffer[]) => void): (batch: ExampleBatch) => void {
  const format = promptFormatFor(data.setup.model);
  return (batch) => {
    const files = batch.jobs.map((job) => readAndMake(data.setup, format, job));
    const transfer = files.flatMap((f) => (f ? [f.heads.buffer as ArrayBuffer, f.headEnds.buffer as ArrayBuffer, f.spans.buffer as ArrayBuffer] : []));
    post({ id: batch.id, files }, transfer);
  };
}

/**
 * Each job's examples (null for a file that changed or went away), in the order of `jobs`: made in `workers` worker
 * threads running `script`, or in this thread when `workers` is 0.
 */
export async function* examplesInOrder(
  jobs: readonly ExampleJob[], setup: ExampleSetup, format: PromptFormat, workers: number, script: string | null,
): AsyncGenerator<FileExamples | null> {
  if (workers === 0 || script === null) {
    for (const job of jobs) yield readAndMake(setup, format, job);
    return;
  }
  const pool = new ExamplePool(jobs, { task: "examples", setup }, workers, script);
  try {
    for (let b = 0; b < pool.batches; b++) yield* await pool.take(b);
  } finally {
    await pool.close();
  }
}

class ExamplePool {
  readonly batches: number;
  private readonly workers: Worker[];
  private readonly busy: number[];
  private readonly ready = new Map<number, (FileExamples | null)[]>();
  private waiting: { id: number; resolve: (files: (FileExamples | null)[]) => void; reject: (err: Error) => void } | null = null;
  private next = 0;
  private taken = 0;
  private failed: Error | null = null;

  constructor(
    private readonly jobs: readonly ExampleJob[],
    setup: ExampleWorkerSetup,
    count: number,
    script: string,
  ) {
    this.batches = Math.ceil(jobs.length / BATCH);
    this.workers = Array.from({ length: count }, () => new Worker(script, { workerData: setup }));
    this.busy = this.workers.map(() => 0);
    this.workers.forEach((w, k) => {
      w.on("message", (reply: ExampleReply) => {
        this.busy[k]--;
        this.ready.set(reply.id, reply.files);
        this.deliver();
        this.pump();
      });
      // The worker's own message is not passed on: an error about a file could quote it.
      w.on("error", (err) => this.fail(new Error(`Making examples stopped: a worker thread failed (${err.name}). Fine-tune again; if it fails again, report it.`)));
      w.on("exit", (code) => this.fail(new Error(`Making examples stopped: a worker thread exited early (code ${code}). Fine-tune again; if it fails again, report it.`)));
    });
    this.pump();
  }

  /** Batch `id`'s files, once made; batches are taken in order. */
  take(id: number): Promise<(FileExamples | null)[]> {
    this.taken = id;
    this.pump();
    return new Promise((resolve, reject) => {
      this.waiting = { id, resolve, reject };
      this.deliver();
    });
  }

  async close(): Promise<void> {
    const all = this.workers.splice(0);
    for (const w of all) w.removeAllListeners("exit");
    await Promise.all(all.map((w) => w.terminate()));
  }

  private deliver(): void {
    const w = this.waiting;
    if (w === null) return;
    if (this.failed) {
      this.waiting = null;
      w.reject(this.failed);
      return;
    }
    const files = this.ready.get(w.id);
    if (files === undefined) return;
    this.ready.delete(w.id);
    this.waiting = null;
    w.resolve(files);
  }

  private pump(): void {
    const limit = Math.min(this.batches, this.taken + 1 + AHEAD_PER_WORKER * this.workers.length);
    while (this.next < limit && this.failed === null) {
      let k = -1;
      for (let i = 0; i < this.workers.length; i++) if (k === -1 || this.busy[i] < this.busy[k]) k = i;
      const id = this.next++;
      this.busy[k]++;
      this.workers[k].postMessage({ id, jobs: this.jobs.slice(id * BATCH, (id + 1) * BATCH) } satisfies ExampleBatch);
    }
  }

  private fail(err: Error): void {
    if (this.failed === null) this.failed = err;
    this.deliver();
  }
}
