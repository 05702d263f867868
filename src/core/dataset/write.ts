// The dataset folder the trainer reads: train.bin / val.bin (little-endian int32, [n_sequences, seq_len]), their
// flag files (one byte per token) and meta.json. Every file is written atomically, meta.json last, so a folder with a meta.json is complete.
import * as path from "node:path";
import { endianness } from "node:os";
import { promises as fs } from "node:fs";
import { z } from "zod";
import { DatasetMeta } from "../../protocol/dataset";
import { writeFileAtomic, writeJsonAtomic } from "../atomic";

/** Which files went where: the CLI draws its before/after completions from the validation files. */
export const DatasetFiles = z.object({ train: z.array(z.string()), val: z.array(z.string()) });
export type DatasetFiles = z.infer<typeof DatasetFiles>;

export const DATA_FILES = {
  train: "train.bin", val: "val.bin", trainFlags: "train.flags", valFlags: "val.flags", meta: "meta.json", files: "files.json",
} as const;

export interface PackedSplit {
  data: Int32Array;
  flags: Uint8Array;
}

export async function writeDataset(dir: string, train: PackedSplit, val: PackedSplit, meta: DatasetMeta, files: DatasetFiles): Promise<void> {
  await writeFileAtomic(path.join(dir, DATA_FILES.train), littleEndian(train.data));
  await writeFileAtomic(path.join(dir, DATA_FILES.trainFlags), train.flags);
  await writeFileAtomic(path.join(dir, DATA_FILES.val), littleEndian(val.data));
  await writeFileAtomic(path.join(dir, DATA_FILES.valFlags), val.flags);
  await writeJsonAtomic(path.join(dir, DATA_FILES.files), files);
  await writeJsonAtomic(path.join(dir, DATA_FILES.meta), DatasetMeta.parse(meta));
}

export async function readDatasetMeta(dir: string): Promise<DatasetMeta> {
  return DatasetMeta.parse(JSON.parse(await fs.readFile(path.join(dir, DATA_FILES.meta), "utf8")));
}

export async function readDatasetFiles(dir: string): Promise<DatasetFiles> {
  return DatasetFiles.parse(JSON.parse(await fs.readFile(path.join(dir, DATA_FILES.files), "utf8")));
}

export async function readTokens(file: string): Promise<Int32Array> {
  const bytes = await fs.readFile(file);
  const out = new Int32Array(bytes.length / 4);
  for (let i = 0; i < out.length; i++) out[i] = bytes.readInt32LE(i * 4);
  return out;
}

function littleEndian(tokens: Int32Array): Uint8Array {
  const bytes = new Uint8Array(tokens.buffer, tokens.byteOffset, tokens.byteLength);
  if (endianness() === "LE") return bytes;
  const swapped = Buffer.alloc(tokens.byteLength);
  tokens.forEach((t, i) => swapped.writeInt32LE(t, i * 4));
  return swapped;
}
