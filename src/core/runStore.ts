// Where runs live: <runsRoot>/<repoId>/<runId>/ with events.jsonl, manifest.json, data/, checkpoints/ and
// adapter-<runId>.gguf. Run ids sort by time; adapter names are never reused (node-llama-cpp caches adapters
// by path, so a retrained adapter must get a new one).
import { createHash, randomBytes } from "node:crypto";
import { createReadStream, promises as fs } from "node:fs";
import * as path from "node:path";
import { z } from "zod";
import { DatasetSummary, EvalDecision, EvaluationSummary, RunEvent } from "../protocol/run";
import { appendWhole, writeJsonAtomic } from "./atomic";
import { gitText } from "./git";


/**
 * Identifies a workspace folder: the same folder, however reached (symlinks, relative paths), gets the same id. A
 * multi-root workspace (several folders) gets one id for the set, whatever their order; one folder given as a list
 * is that folder, so its runs stay where they were.
 */
export async function repoIdFor(folder: string | readonly string[]): Promise<string> {
  const folders = typeof folder === "string" ? [folder] : folder;
  const real = [...new Set(await Promise.all(folders.map((f) => fs.realpath(f).catch(() => path.resolve(f)))))].sort();
  // NUL cannot occur in a path: the joined list names exactly one set of folders.
  return createHash("sha256").update(real.join("\0")).digest("hex").slice(0, 16);
}

/** e.g. 20251129T033200123Z-3fa9c1: UTC time to the millisecond, so ids sort by creation, then a random suffix. */
export function newRunId(now = new Date()): string {
  const stamp = now.toISOString().replace(/[-:.]/g, "");
  return `${stamp}-${randomBytes(3).toString("hex")}`;
}

export interface RunPaths {
  runId: string;
  repoId: string;
  runDir: string;
  dataDir: string;
  checkpointsDir: string;
  adapterPath: string;
  adapterFile: string;
  manifestPath: string;
  eventsPath: string;
  trainerLogPath: string;
  /** The held-out evaluation with every task's completions (the manifest keeps its summary). */
  evaluationPath: string;
}

export function runPaths(runsRoot: string, repoId: string, runId: string): RunPaths {
  const runDir = path.join(runsRoot, repoId, runId);
  const adapterFile = `adapter-${runId}.gguf`;
  return {
    runId,
    repoId,
    runDir,
    dataDir: path.join(runDir, "data"),
    checkpointsDir: path.join(runDir, "checkpoints"),
    adapterPath: path.join(runDir, adapterFile),
    adapterFile,
    manifestPath: path.join(runDir, "manifest.json"),
    eventsPath: path.join(runDir, "events.jsonl"),
    trainerLogPath: path.join(runDir, "trainer.log"),
    evaluationPath: path.join(runDir, "evaluation.json"),
  };
}

/** A new, empty run folder for `folder` (or a multi-root workspace's folders). */
export async function createRun(runsRoot: string, folder: string | readonly string[]): Promise<RunPaths> {
  const repoId = await repoIdFor(folder);
  for (;;) {
    const paths = runPaths(runsRoot, repoId, newRunId());
    // User-only (0700): a run folder holds the repository's code as training data, and an adapter that learned it.
    await fs.mkdir(path.dirname(paths.runDir), { recursive: true, mode: 0o700 });
    try {
      await fs.mkdir(paths.runDir, { mode: 0o700 }); // not recursive: fails if the id was somehow taken, and we draw another
      return paths;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    }
  }
}

/**
 * Appends one event as a JSON line. Synchronous on purpose: events keep their order, and a crash right after
 * an event still leaves it on disk for the view that replays the file.
 */
export function appendEvent(eventsPath: string, event: RunEvent): void {
  // Whole or not at all: half a line left by a full disk would make the run unreadable for Resume.
  appendWhole(eventsPath, JSON.stringify(event) + "\n");
}

export async function readEvents(eventsPath: string): Promise<RunEvent[]> {
  const text = await fs.readFile(eventsPath, "utf8");
  return text.split("\n").filter((l) => l.trim() !== "").map((l) => RunEvent.parse(JSON.parse(l)));
}

export const TrainSettingsSchema = z.object({
  steps: z.number().int().positive(),
  seqLen: z.number().int().positive(),
  rank: z.number().int().positive(),
  alpha: z.number().positive(),
  lr: z.number().positive(),
  batch: z.number().int().positive(),
  // Defaults for manifests written before these settings existed.
  gradAccum: z.number().int().positive().default(1),
  gradCheckpoint: z.boolean().default(false),
  baseWeights: z.enum(["auto", "keep", "q8_0", "q4_0"]).default("auto"),
  seed: z.number().int(),
  device: z.enum(["auto", "cpu", "cuda", "mps"]),
});

export const RunManifest = z.object({
  format: z.literal("repotune-run"),
  version: z.literal(1),
  runId: z.string(),
  repoId: z.string(),
  folder: z.string(),
  created: z.string(),
  finished: z.string(),
  status: z.enum(["done", "stopped"]),
  baseModel: z.object({ path: z.string(), size: z.number().int(), sha256: z.string() }),
  gitCommit: z.string().nullable(),
  dataset: DatasetSummary,
  settings: TrainSettingsSchema,
  metrics: z.object({
    steps: z.number().int(),
    valLossBase: z.number().nullable(),
    valLoss: z.number().nullable(),
    trainLoss: z.number().nullable(),
    device: z.string().nullable(),
    trainSeconds: z.number(),
  }),
  /** File name of the adapter in the run folder; null when the run stopped before writing one. */
  adapter: z.string().nullable(),
  checkpoint: z.string().nullable(),
  /** The adapter's held-out evaluation against the base model; null when it could not run, absent in older runs. */
  evaluation: EvaluationSummary.nullable().optional(),
  /** Whether the adapter was made active, and why; null when the run wrote no adapter. */
  decision: EvalDecision.nullable().optional(),
  /** The adapter this run continued training from; null for an adapter trained from the base model. */
  parentAdapter: z.string().nullable().optional(),
  /** The run that wrote parentAdapter, when it was a RepoTune run (adapter updates). */
  parentRunId: z.string().optional(),
});
export type RunManifest = z.infer<typeof RunManifest>;

export async function writeManifest(manifestPath: string, manifest: RunManifest): Promise<void> {
  await writeJsonAtomic(manifestPath, RunManifest.parse(manifest));
}

export async function readManifest(manifestPath: string): Promise<RunManifest> {
  return RunManifest.parse(JSON.parse(await fs.readFile(manifestPath, "utf8")));
}

/** Size and SHA-256 of the base model: an adapter only fits the exact weights it was trained on. */
export async function fileIdentity(file: string): Promise<{ path: string; size: number; sha256: string }> {
  const real = await fs.realpath(file);
  const { size } = await fs.stat(real);
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(real, { highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
  return { path: real, size, sha256: hash.digest("hex") };
}

/** HEAD's commit when `folder` is in a git work tree, else null. */
export async function gitCommit(folder: string): Promise<string | null> {
  const sha = await gitText(folder, ["rev-parse", "--verify", "HEAD"]);
  return sha !== null && /^[0-9a-f]{40,64}$/.test(sha) ? sha : null;
}

export interface AdapterEntry {
  runId: string;
  adapterPath: string;
  finished: string;
  baseModelPath: string;
  seqLen: number;
  /** Characters per token the adapter's dataset measured (cuts completion prompts as training did), when recorded. */
  charsPerToken: number | null;
  valLossBase: number | null;
  valLoss: number | null;
}

/** The adapters trained for a repository, newest first (runs without an adapter or a readable manifest are left out). */
export async function listAdapters(runsRoot: string, repoId: string): Promise<AdapterEntry[]> {
  const repoDir = path.join(runsRoot, repoId);
  const runs = await fs.readdir(repoDir).catch(() => [] as string[]);
  const out: AdapterEntry[] = [];
  for (const runId of runs) {
    const entry = await adapterEntry(path.join(repoDir, runId, "manifest.json"));
    if (entry) out.push(entry);
  }
  return out.sort((a, b) => (a.finished < b.finished ? 1 : a.finished > b.finished ? -1 : 0));
}

/** What the run that wrote `adapterPath` recorded about it, when the adapter sits in a RepoTune run folder. */
export function adapterInfo(adapterPath: string): Promise<AdapterEntry | null> {
  return adapterEntry(path.join(path.dirname(adapterPath), "manifest.json"), path.resolve(adapterPath));
}

async function adapterEntry(manifestPath: string, expected?: string): Promise<AdapterEntry | null> {
  let m: RunManifest;
  try {
    m = await readManifest(manifestPath);
  } catch {
    return null;
  }
  if (m.adapter === null) return null;
  const adapterPath = path.join(path.dirname(manifestPath), m.adapter);
  if (expected !== undefined && path.resolve(adapterPath) !== expected) return null;
  const exists = await fs.stat(adapterPath).then((s) => s.isFile(), () => false);
  if (!exists) return null;
  return {
    runId: m.runId, adapterPath, finished: m.finished, baseModelPath: m.baseModel.path, seqLen: m.settings.seqLen,
    charsPerToken: m.dataset.charsPerToken ?? null, valLossBase: m.metrics.valLossBase, valLoss: m.metrics.valLoss,
  };
}
