// The one schema module for the dataset folder the extension writes and the Python trainer reads
// (train.bin / val.bin: little-endian int32 [n_sequences, seq_len], -1 = padding; train.flags / val.flags: one byte
// per token, the FLAG_ bits below; meta.json below). Version 1 folders have no flag files: every real token is a
// target and a sequence is one example. trainer/repotune_trainer/data.py validates the same fields on its side.
import { z } from "zod";
import { DatasetSummary } from "./run";

/** The token id that marks padding in train.bin / val.bin: no loss is taken there. */
export const PAD = -1;

/** Flag bits: the first token of an example (attention does not reach back past it, and it is not predicted from the
 * example before), and a token that is never a target (prompt-format sentinels, BOS). */
export const FLAG_START = 1;
export const FLAG_NO_LOSS = 2;

export const DatasetMeta = z.object({
  format: z.literal("repotune-tokens"),
  version: z.literal(2),
  seq_len: z.number().int().positive(),
  dtype: z.literal("int32"),
  pad: z.literal(PAD),
  train_sequences: z.number().int().nonnegative(),
  val_sequences: z.number().int().nonnegative(),
  vocab_size: z.number().int().positive(),
  prompt_format: z.string(),
  model_path: z.string(),
  summary: DatasetSummary,
});
export type DatasetMeta = z.infer<typeof DatasetMeta>;

/** Kinds of training examples: FIM middles a completion would insert, and plain text (no FIM tokens). */
export const ExampleKind = z.enum(["rest-of-line", "lines", "block", "next-token"]);
export type ExampleKind = z.infer<typeof ExampleKind>;

/**
 * One line of examples.jsonl: the text of one training or validation example, to read what the adapter learns from.
 * `prompt` is the prompt-format text before the middle with special tokens written as their text (the model's BOS,
 * added in front of every example when the model asks for one, is not written); a next-token example has an empty
 * prompt and its whole text as `middle`. `openEnd`: the suffix was left out, as at the end of what is being written.
 */
export const ExampleLine = z.object({
  split: z.enum(["train", "val"]),
  file: z.string(),
  kind: ExampleKind,
  openEnd: z.boolean(),
  /** Offset of the middle in the file (UTF-16 code units, as editors count). */
  start: z.number().int().nonnegative(),
  prompt: z.string(),
  middle: z.string(),
  tokens: z.number().int().nonnegative(),
  /** The example was still longer than seq_len after narrowing its window, and its tail was cut. */
  truncated: z.boolean(),
});
export type ExampleLine = z.infer<typeof ExampleLine>;

/**
 * report.json: what went into the dataset and what was left out, and why. Counts only for secrets: the report is
 * built from the files training used, so it may hold the user's code paths but never a secret.
 */
export const DatasetReport = z.object({
  format: z.literal("repotune-dataset-report"),
  version: z.literal(1),
  files: z.object({
    listed: z.number().int().nonnegative(),
    used: z.number().int().nonnegative(),
    /** Files not read as usable text, by reason (binary, too_large, secrets, ...). */
    skipped: z.record(z.string(), z.number().int()),
  }),
  /** Usable files and their bytes by language, as file selection reported them; empty when it did not classify. */
  languages: z.record(z.string(), z.object({ files: z.number().int().nonnegative(), bytes: z.number().int().nonnegative() })),
  /** Files left out for holding a secret, and those files counted by the rule that found one. */
  secrets: z.object({ filesExcluded: z.number().int().nonnegative(), findings: z.record(z.string(), z.number().int().nonnegative()) }),
  duplicates: z.object({
    exact: z.number().int().nonnegative(),
    near: z.number().int().nonnegative(),
    ofHeldOut: z.number().int().nonnegative(),
    removed: z.array(z.object({ file: z.string(), of: z.string(), kind: z.enum(["exact", "near"]), similarity: z.number(), ofHeldOut: z.boolean() })),
  }),
  split: z.object({
    method: z.enum(["recent", "hash", "one-file"]),
    /** Held-out files, in the order they were chosen (newest first for "recent"). */
    heldOut: z.array(z.string()),
    train: z.number().int().nonnegative(),
    heldOutChars: z.number().int().nonnegative(),
    totalChars: z.number().int().nonnegative(),
  }),
  tokens: z.object({ train: z.number().int().nonnegative(), val: z.number().int().nonnegative(), charsPerToken: z.number().positive() }),
  sequences: z.object({ train: z.number().int().nonnegative(), val: z.number().int().nonnegative(), seqLen: z.number().int().positive() }),
  examples: z.object({
    train: z.number().int().nonnegative(),
    val: z.number().int().nonnegative(),
    byKind: z.record(ExampleKind, z.number().int().nonnegative()),
    openEnd: z.number().int().nonnegative(),
    truncated: z.number().int().nonnegative(),
    /** The weights the kinds were drawn with. */
    mix: z.object({ restOfLine: z.number(), lines: z.number(), block: z.number(), nextToken: z.number() }),
    /** Examples per file were multiplied by this for a small repository (1 otherwise). */
    perFileScale: z.number().int().positive(),
  }),
  recommendedSteps: z.number().int().positive().nullable(),
  warnings: z.array(z.string()),
});
export type DatasetReport = z.infer<typeof DatasetReport>;
