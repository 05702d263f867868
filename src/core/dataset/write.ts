// The dataset folder the trainer reads: train.bin / val.bin (little-endian int32, [n_sequences, seq_len]), their
// flag files (one byte per token) and meta.json; and for people, examples.jsonl (the text of every example) and
// report.json (what went in and what was left out). Every file is written atomically, meta.json last, so a folder
// with a meta.json is complete.
import * as path from "node:path";
import { endianness } from "node:os";
import { promises as fs } from "node:fs";
import { randomBytes } from "node:crypto";
import { z } from "zod";
import { DatasetMeta, DatasetReport } from "../../protocol/dataset";
import { writeFileAtomic, writeJsonAtomic } from "../atomic";

/** Which files went where: the CLI draws its before/after completions from the validation files. */
export const DatasetFiles = z.object({
  train: z.array(z.string()),
  val: z.array(z.string()),
  /** How the validation files were chosen (absent in folders written before it was recorded). */
  split: z.enum(["recent", "hash", "one-file"]).optional(),
});
export type DatasetFiles = z.infer<typeof DatasetFiles>;

export const DATA_FILES = {
  train: "train.bin", val: "val.bin", trainFlags: "train.flags", valFlags: "val.flags", meta: "meta.json", files: "files.json",
  examples: "examples.jsonl", report: "report.json",
} as const;

export interface PackedSplit {
  data: Int32Array;
  flags: Uint8Array;
}

export interface DatasetOutput {
  train: PackedSplit;
  val: PackedSplit;
  meta: DatasetMeta;
  files: DatasetFiles;
  /** Lines of examples.jsonl, each one JSON object without its newline. */
  examples: Iterable<string>;
  report: DatasetReport;
}

export async function writeDataset(dir: string, out: DatasetOutput): Promise<void> {
  await writeFileAtomic(path.join(dir, DATA_FILES.train), littleEndian(out.train.data));
  await writeFileAtomic(path.join(dir, DATA_FILES.trainFlags), out.train.flags);
  await writeFileAtomic(path.join(dir, DATA_FILES.val), littleEndian(out.val.data));
  await writeFileAtomic(path.join(dir, DATA_FILES.valFlags), out.val.flags);
  await writeJsonAtomic(path.join(dir, DATA_FILES.files), DatasetFiles.parse(out.files));
  await writeLinesAtomic(path.join(dir, DATA_FILES.examples), out.examples);
  await writeJsonAtomic(path.join(dir, DATA_FILES.report), DatasetReport.parse(out.report));
  await writeJsonAtomic(path.join(dir, DATA_FILES.meta), DatasetMeta.parse(out.meta));
}

/**
 * Writes lines to a temporary file in chunks, flushes it and renames it over `target`, as writeFileAtomic does for
 * one buffer: examples.jsonl of a large repository is several times its code, too large for one string. The folder
 * itself is flushed by the atomic writes that follow (report.json, meta.json).
 */
async function writeLinesAtomic(target: string, lines: Iterable<string>): Promise<void> {
  const dir = path.dirname(target);
  await fs.mkdir(dir, { recursive: true });
  const tmp = path.join(dir, `.${path.basename(target)}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`);
  const handle = await fs.open(tmp, "w");
  try {
    let chunk: string[] = [];
    let size = 0;
    for (const line of lines) {
      chunk.push(line, "\n");
      size += line.length + 1;
      if (size >= 1 << 20) {
        await handle.write(chunk.join(""));
        chunk = [];
        size = 0;
      }
    }
    await handle.write(chunk.join(""));
    await handle.sync();
    await handle.close();
    await fs.rename(tmp, target);
  } catch (err) {
    await handle.close().catch(() => undefined);
    await fs.rm(tmp, { force: true });
    throw err;
  }
}

export async function readDatasetMeta(dir: string): Promise<DatasetMeta> {
  return DatasetMeta.parse(JSON.parse(await fs.readFile(path.join(dir, DATA_FILES.meta), "utf8")));
}

export async function readDatasetFiles(dir: string): Promise<DatasetFiles> {
  return DatasetFiles.parse(JSON.parse(await fs.readFile(path.join(dir, DATA_FILES.files), "utf8")));
}

export async function readDatasetReport(dir: string): Promise<DatasetReport> {
  return DatasetReport.parse(JSON.parse(await fs.readFile(path.join(dir, DATA_FILES.report), "utf8")));
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
