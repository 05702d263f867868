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
