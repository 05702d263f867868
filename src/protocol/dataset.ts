// The one schema module for the dataset folder the extension writes and the Python trainer reads
// (train.bin / val.bin: little-endian int32 [n_sequences, seq_len], -1 = padding; meta.json below).
// trainer/repotune_trainer/data.py validates the same fields on its side.
import { z } from "zod";
import { DatasetSummary } from "./run";

/** The token id that marks padding in train.bin / val.bin: no loss is taken there. */
export const PAD = -1;

export const DatasetMeta = z.object({
  format: z.literal("repotune-tokens"),
  version: z.literal(1),
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
