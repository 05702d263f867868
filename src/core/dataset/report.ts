// What the dataset step tells people: report.json (files used and left out, duplicates, the split, examples by
// kind, warnings), examples.jsonl (the text of every example), and the training length it recommends. Built only
// from the files training uses and from counts, so neither holds a secret.
import type { DatasetReport, ExampleKind, ExampleLine } from "../../protocol/dataset";
import type { Duplicate } from "./dedupe";
import type { ExampleMix } from "./fim";
import type { SplitMethod } from "./split";

/** Under this many training tokens a repository is small: more examples per file, and a warning. */
export const SMALL_REPO_TOKENS = 20_000;

/**
 * Passes over the training data a run should make: "a few", so that a small repository is learned, not glimpsed.
 * Steps are bounded: at least enough for the learning rate schedule to matter, and at most what a laptop GPU trains
 * in about half an hour for a 1.5B model at seq_len 256 (a large repository then sees a part of its data).
 */
const RECOMMENDED_EPOCHS = 3;
const MIN_RECOMMENDED_STEPS = 20;
const MAX_RECOMMENDED_STEPS = 2000;

/** Steps that show `trainSequences` about RECOMMENDED_EPOCHS times at this batch size, within the bounds above. */
export function recommendedSteps(trainSequences: number, batch: number): number {
  const steps = Math.ceil((RECOMMENDED_EPOCHS * trainSequences) / Math.max(1, batch));
  return Math.min(MAX_RECOMMENDED_STEPS, Math.max(MIN_RECOMMENDED_STEPS, steps));
}

/** How many times `steps` of `batch` sequences go over `trainSequences` (the data's epochs at that length). */
export function epochsAt(trainSequences: number, steps: number, batch: number): number {
  return trainSequences > 0 ? (steps * batch) / trainSequences : 0;
}

export function smallRepoWarning(trainTokens: number, perFileScale: number, steps: number | null): string {
  const more = perFileScale > 1 ? ` RepoTune drew ${perFileScale} times more examples from each file to make up for it.` : "";
  const train = steps !== null ? ` Train for about ${steps} steps (about ${RECOMMENDED_EPOCHS} passes over the data);` : "";
  return (
    `This repository is small: ${trainTokens.toLocaleString("en-US")} training tokens, under ${SMALL_REPO_TOKENS.toLocaleString("en-US")}.${more}` +
    `${train} the adapter can only learn the patterns of this little code, so expect a modest gain and check it on your own files.`
  );
}

/** One example as training saw it, for examples.jsonl and the counts of the report. */
export interface ExampleRecord {
  split: "train" | "val";
  file: string;
  kind: ExampleKind;
  openEnd: boolean;
  start: number;
  prompt: string;
  middle: string;
  tokens: number;
  truncated: boolean;
}

export function exampleLine(e: ExampleRecord): string {
  const line: ExampleLine = {
    split: e.split, file: e.file, kind: e.kind, openEnd: e.openEnd, start: e.start, prompt: e.prompt, middle: e.middle,
    tokens: e.tokens, truncated: e.truncated,
  };
  return JSON.stringify(line);
}

/**
 * exampleLine in two parts, head + tail, the same characters: the head (all but the token count, and most of the
 * line) is made where the example is (a worker thread), the tail once the tokenizer has counted. JSON.stringify
 * writes keys in insertion order, so the head is exampleLine's text up to the tokens, and this object's JSON with
 * its closing "}" left out (the caller drops it, which spares copying the string).
 */
export function exampleLineHeadJson(e: Omit<ExampleRecord, "tokens" | "truncated">): string {
  const head = { split: e.split, file: e.file, kind: e.kind, openEnd: e.openEnd, start: e.start, prompt: e.prompt, middle: e.middle };
  return JSON.stringify(head);
}

export function exampleLineTail(tokens: number, truncated: boolean): string {
  return `,"tokens":${JSON.stringify(tokens)},"truncated":${truncated}}`;
}

/** The examples counted as they are made (the build keeps no list of them). */
export class ExampleCounts {
  train = 0;
  val = 0;
  byKind: Record<ExampleKind, number> = { "rest-of-line": 0, lines: 0, block: 0, "next-token": 0 };
  openEnd = 0;
  truncated = 0;

  add(e: Pick<ExampleRecord, "split" | "kind" | "openEnd" | "truncated">): void {
    this[e.split]++;
    this.byKind[e.kind]++;
    if (e.openEnd) this.openEnd++;
    if (e.truncated) this.truncated++;
  }
}

export interface ReportInput {
  listed: number;
  used: number;
  skipped: Record<string, number>;
  languages: Record<string, { files: number; bytes: number }>;
  secretsExcluded: number;
  secretFindings: Record<string, number>;
  duplicates: readonly Duplicate[];
  method: SplitMethod;
  heldOut: readonly string[];
  trainFiles: number;
  heldOutChars: number;
  totalChars: number;
  trainTokens: number;
  valTokens: number;
  charsPerToken: number;
  trainSequences: number;
  valSequences: number;
  seqLen: number;
  examples: ExampleCounts;
  mix: ExampleMix;
  perFileScale: number;
  recommendedSteps: number | null;
  warnings: readonly string[];
}

export function buildReport(r: ReportInput): DatasetReport {
  const heldOut = new Set(r.method === "one-file" ? [] : r.heldOut);
  const removed = r.duplicates.map((d) => ({ file: d.path, of: d.of, kind: d.kind, similarity: round(d.similarity), ofHeldOut: heldOut.has(d.of) }));
  return {
    format: "repotune-dataset-report",
    version: 1,
    files: { listed: r.listed, used: r.used, skipped: r.skipped },
    languages: r.languages,
    secrets: { filesExcluded: r.secretsExcluded, findings: { ...r.secretFindings } },
    duplicates: {
      exact: removed.filter((d) => d.kind === "exact").length,
      near: removed.filter((d) => d.kind === "near").length,
      ofHeldOut: removed.filter((d) => d.ofHeldOut).length,
      removed,
    },
    split: { method: r.method, heldOut: [...r.heldOut], train: r.trainFiles, heldOutChars: r.heldOutChars, totalChars: r.totalChars },
    tokens: { train: r.trainTokens, val: r.valTokens, charsPerToken: round(r.charsPerToken) },
    sequences: { train: r.trainSequences, val: r.valSequences, seqLen: r.seqLen },
    examples: {
      train: r.examples.train,
      val: r.examples.val,
      byKind: { ...r.examples.byKind },
      openEnd: r.examples.openEnd,
      truncated: r.examples.truncated,
      mix: { ...r.mix },
      perFileScale: r.perFileScale,
    },
    recommendedSteps: r.recommendedSteps,
    warnings: [...r.warnings],
  };
}

/** Four decimals: enough to read, and the same text on every machine. */
function round(x: number): number {
  return Math.round(x * 1e4) / 1e4;
}
