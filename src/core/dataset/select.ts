// Which files of one folder a dataset learns from, and why each other file is left out (judge.ts decides for one
// file). Files are read, judged and dropped as they come, a bounded number at a time: only the usable texts are
// kept, or for the dataset step (selectRecords) only their lengths and fingerprints. Judging is CPU-bound
// (classification and the secret prefilter read every text, and secretlint's rules run where the prefilter says they
// could fire), so large folders are judged in worker threads, one per core.
import { existsSync, promises as fs } from "node:fs";
import { availableParallelism } from "node:os";
import * as path from "node:path";
import { Worker } from "node:worker_threads";
import { UserError } from "../errors";
import { listFiles } from "./discover";
import { DEFAULT_MAX_FILE_BYTES } from "./sourceFile";
import { Judge, type JudgeRules, type Keep, type Verdict } from "./judge";
import type { Fingerprint } from "./dedupe";
import type { WorkerBatch, WorkerReply, WorkerSetup } from "./selectWorker";

export interface SourceText {
  path: string;
  text: string;
}

/** A usable file as the dataset step keeps it: no text (it reads the file again), only what it needs before that. */
export interface SourceRecord {
  path: string;
  /** Length of the text (UTF-16 code units, as String.length). */
  chars: number;
  fingerprint: Fingerprint;
}

export interface SelectOptions {
  maxFileBytes?: number;
  /** Absolute folders never to learn from (RepoTune's own runs folder when placed inside); left out uncounted. */
  exclude?: string[];
  /**
   * Patterns (gitignore syntax, relative to the folder) of files to learn from even though a rule would leave them
   * out: user excludes, vendored, generated, lockfile, minified, data-heavy. Never a file with a secret, and never
   * one that cannot be read as text (binary, too large, not UTF-8).
   */
  include?: string[];
  /** Patterns (gitignore syntax) of files never to learn from, on top of the folder's .repotuneignore. */
  excludeGlobs?: string[];
  signal?: AbortSignal;
  /**
   * Worker threads that judge files; 0 judges them in this thread. Default: one per core (at least 1, at
   * most 8) for folders of 200 files or more when the worker script exists, else 0.
   */
  workers?: number;
  /** The bundled worker; default `selectWorker.js` beside the running bundle (dist/). */
  workerScript?: string;
}

export interface LanguageStats {
  files: number;
  bytes: number;
}

export interface Selection<T = SourceText> {
  /** Usable files in path order. */
  usable: T[];
  /** Files left out, by reason ("secret" among them); with `usable` they add up to `listed`. */
  skipped: Record<string, number>;
  listed: number;
  secretsExcluded: number;
  /** Files left out for secrets, by the rule that found one (a file counts once under each rule that fired). */
  secretFindings: Record<string, number>;
  /** Usable files and their bytes by Linguist language name ("Other" when Linguist does not know the file). */
  languages: Record<string, LanguageStats>;
}

/** The workspace's own exclusions, gitignore syntax, at the root of the folder. */
export const REPOTUNEIGNORE = ".repotuneignore";
const OTHER_LANGUAGE = "Other";
/** Files read and judged at once in one thread: enough to hide read latency. */
const CONCURRENCY = 16;
/** Below this many files, starting workers (each loads the rules) costs more than it saves. */
const WORKER_MIN_FILES = 200;
const MAX_WORKERS = 8;
/** Files per message to a worker, and messages in flight per worker (so that it never waits for the next). */
const BATCH = 32;
const IN_FLIGHT = 2;

export function selectFiles(folder: string, opts: SelectOptions = {}): Promise<Selection<SourceText>> {
  return select(folder, opts, "text", (v) => ({ path: v.path, text: v.text! }));
}

/** selectFiles for the dataset step: each usable file's length and fingerprint instead of its text. */
export function selectRecords(folder: string, opts: SelectOptions = {}): Promise<Selection<SourceRecord>> {
  return select(folder, opts, "record", (v) => ({ path: v.path, chars: v.chars, fingerprint: v.fingerprint! }));
}

type Usable = Extract<Verdict, { path: string }>;

async function select<T>(folder: string, opts: SelectOptions, keep: Keep, usable: (v: Usable) => T): Promise<Selection<T>> {
  const rules: JudgeRules = {
    maxFileBytes: opts.maxFileBytes ?? DEFAULT_MAX_FILE_BYTES,
    // One pattern per line: `ignore` splits a string into lines, but takes each item of an array whole.
    exclude: [...(opts.excludeGlobs ?? []), ...(await readRepotuneIgnore(folder)).split(/\r?\n/)],
    include: opts.include ?? [],
  };
  opts.signal?.throwIfAborted();

  const listing = await listFiles(folder);
  const insideFolders = (opts.exclude ?? [])
    .map((d) => path.relative(folder, d).split(path.sep).join("/"))
    .filter((r) => r !== "" && !r.startsWith("..") && !path.isAbsolute(r));
  const paths = listing.paths.filter((p) => !insideFolders.some((d) => p === d || p.startsWith(`${d}/`)));

  const skipped: Record<string, number> = { ...listing.skipped };
  const secretFindings: Record<string, number> = {};
  const languages: Record<string, LanguageStats> = {};
  const results = new Array<T | null>(paths.length).fill(null);
  const count = (table: Record<string, number>, key: string) => (table[key] = (table[key] ?? 0) + 1);
  const tally = (i: number, verdict: Verdict): void => {
    if ("reason" in verdict) {
      count(skipped, verdict.reason);
      for (const rule of verdict.secretRules ?? []) count(secretFindings, rule);
      return;
    }
    results[i] = usable(verdict);
    const stats = (languages[verdict.language ?? OTHER_LANGUAGE] ??= { files: 0, bytes: 0 });
    stats.files++;
    stats.bytes += verdict.bytes;
  };

  const script = opts.workerScript ?? defaultWorkerScript();
  const workers = opts.workers ?? (paths.length >= WORKER_MIN_FILES && script ? defaultWorkerCount() : 0);
  if (workers > 0) {
    if (!script || !existsSync(script)) throw new Error(`The worker script ${script ?? "selectWorker.js"} is missing; rebuild RepoTune (node esbuild.mjs).`);
    await judgeInWorkers({ folder, rules, keep }, paths, workers, script, tally, opts.signal);
  } else {
    await judgeHere(new Judge(folder, rules, keep), paths, tally, opts.signal);
  }
  opts.signal?.throwIfAborted();

  const listed = paths.length + Object.values(listing.skipped).reduce((a, b) => a + b, 0);
  return {
    usable: results.filter((r): r is T => r !== null),
    // Files finish in any order; sorted keys keep summaries and messages stable.
    skipped: sortedKeys(skipped),
    listed,
    secretsExcluded: skipped.secret ?? 0,
    secretFindings: sortedKeys(secretFindings),
    languages: sortedKeys(languages),
  };
}

type Tally = (index: number, verdict: Verdict) => void;

async function judgeHere(judge: Judge, paths: string[], tally: Tally, signal?: AbortSignal): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < paths.length) {
      signal?.throwIfAborted();
      const i = next++;
      tally(i, await judge.judge(paths[i]));
    }
  };
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, paths.length) }, worker));
}

async function judgeInWorkers(setup: WorkerSetup, paths: string[], count: number, script: string, tally: Tally, signal?: AbortSignal): Promise<void> {
  const pool = Array.from({ length: count }, () => new Worker(script, { workerData: setup }));
  const starts = new Map<number, number>();
  let next = 0;
  let nextId = 0;
  let settle: { resolve: () => void; reject: (err: unknown) => void } | null = null;
  const done = new Promise<void>((resolve, reject) => (settle = { resolve, reject }));
  const finish = (err?: unknown) => {
    const s = settle;
    settle = null;
    if (s) err === undefined ? s.resolve() : s.reject(err);
  };
  const send = (worker: Worker) => {
    if (!settle) return;
    if (next < paths.length) {
      const batch: WorkerBatch = { id: nextId++, paths: paths.slice(next, next + BATCH) };
      starts.set(batch.id, next);
      next += batch.paths.length;
      worker.postMessage(batch);
    } else if (starts.size === 0) {
      finish();
    }
  };
  const onAbort = () => finish(signal?.reason);
  signal?.addEventListener("abort", onAbort, { once: true });
  for (const worker of pool) {
    worker.on("message", (reply: WorkerReply) => {
      const start = starts.get(reply.id) ?? 0;
      starts.delete(reply.id);
      reply.verdicts.forEach((v, k) => tally(start + k, v));
      send(worker);
    });
    // The worker's own message is not passed on: an error about a file could quote it.
    worker.on("error", (err) => finish(new Error(`Selecting files stopped: a worker thread failed (${err.name}). Fine-tune again; if it fails again, report it.`)));
    worker.on("exit", (code) => finish(new Error(`Selecting files stopped: a worker thread exited early (code ${code}). Fine-tune again; if it fails again, report it.`)));
    for (let k = 0; k < IN_FLIGHT; k++) send(worker);
  }
  try {
    await done;
  } finally {
    signal?.removeEventListener("abort", onAbort);
    await Promise.all(pool.map((w) => w.terminate()));
  }
}

/**
 * One worker per core: the selecting thread (in VS Code, the extension host, shared with other extensions) only
 * hands out paths and counts verdicts, so it is idle nearly all the time and the system gives it a core whenever it
 * has something to do. With one core fewer, two cores judged at half speed (bench/dataset.mjs).
 */
export function defaultWorkerCount(): number {
  return Math.max(1, Math.min(MAX_WORKERS, availableParallelism()));
}

/**
 * selectWorker.js beside the running bundle (dist/ for the extension and the CLI), or null where there is none: the
 * dataset step's worker threads, for selection and for making examples.
 */
export function defaultWorkerScript(): string | null {
  if (typeof __dirname !== "string") return null;
  const script = path.join(__dirname, "selectWorker.js");
  return existsSync(script) ? script : null;
}

async function readRepotuneIgnore(folder: string): Promise<string> {
  try {
    return await fs.readFile(path.join(folder, REPOTUNEIGNORE), "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return "";
    throw new UserError(
      `RepoTune could not read ${path.join(folder, REPOTUNEIGNORE)} (${(err as NodeJS.ErrnoException).code ?? "error"}), ` +
        "so it cannot tell which files you excluded. Make the file readable, or delete it, and fine-tune again.",
    );
  }
}

function sortedKeys<T>(table: Record<string, T>): Record<string, T> {
  return Object.fromEntries(Object.entries(table).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}
