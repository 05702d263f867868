// The dataset folder the trainer reads: train.bin / val.bin (little-endian int32, [n_sequences, seq_len]), their
// flag files (one byte per token) and meta.json; and for people, examples.jsonl (the text of every example) and
// report.json (what went in and what was left out). Every file is written atomically, meta.json last, so a folder
// with a meta.json is complete.
import * as path from "node:path";
import { endianness } from "node:os";
import { promises as fs } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import { z } from "zod";
import { DatasetMeta, DatasetReport } from "../../protocol/dataset";
import { writeJsonAtomic } from "../atomic";
import type { PackedBlock } from "./pack";

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

/**
 * Writes a dataset folder as the build makes it: examples.jsonl line by line while examples are made, each split's
 * sequences a block at a time, so that neither is ever held whole. Every file goes to a temporary name first and is
 * flushed and renamed at `finish`, all at once (flushing a few hundred MB one file after the other was most of the
 * writing time), then report.json and meta.json, meta.json last, so a folder with a meta.json is complete.
 */
export class DatasetWriter {
  private chunk: string[] = [];
  private chunkSize = 0;
  private readonly temps = new Set<TempFile>();

  private constructor(
    private readonly dir: string,
    private readonly examples: TempFile,
  ) {
    this.temps.add(examples);
  }

  static async open(dir: string): Promise<DatasetWriter> {
    await fs.mkdir(dir, { recursive: true });
    return new DatasetWriter(dir, await TempFile.open(path.join(dir, DATA_FILES.examples)));
  }

  /** One line of examples.jsonl (a JSON object, without its newline). */
  async exampleLine(line: string): Promise<void> {
    this.chunk.push(line, "\n");
    this.chunkSize += line.length + 1;
    if (this.chunkSize >= 1 << 20) await this.flushLines();
  }

  private async flushLines(): Promise<void> {
    const text = this.chunk.join("");
    this.chunk = [];
    this.chunkSize = 0;
    await this.examples.write(text);
  }

  /** train.bin and train.flags (or val's) from the packed blocks, in order. */
  async split(name: "train" | "val", blocks: Iterable<PackedBlock>): Promise<void> {
    const tokens = await TempFile.open(path.join(this.dir, name === "train" ? DATA_FILES.train : DATA_FILES.val));
    this.temps.add(tokens);
    const flags = await TempFile.open(path.join(this.dir, name === "train" ? DATA_FILES.trainFlags : DATA_FILES.valFlags));
    this.temps.add(flags);
    for (const block of blocks) {
      await tokens.write(littleEndian(block.data));
      await flags.write(block.flags);
    }
  }

  async finish(out: { meta: DatasetMeta; files: DatasetFiles; report: DatasetReport }): Promise<void> {
    await this.flushLines();
    await Promise.all([...this.temps].map((t) => t.commit()));
    this.temps.clear();
    await writeJsonAtomic(path.join(this.dir, DATA_FILES.files), DatasetFiles.parse(out.files));
    await writeJsonAtomic(path.join(this.dir, DATA_FILES.report), DatasetReport.parse(out.report));
    await writeJsonAtomic(path.join(this.dir, DATA_FILES.meta), DatasetMeta.parse(out.meta));
  }

  /** Removes what was not finished (a build that failed or was stopped). */
  async abort(): Promise<void> {
    await Promise.all([...this.temps].map((t) => t.discard()));
    this.temps.clear();
  }
}

/**
 * A temporary file beside `target`, written in pieces, flushed and renamed over `target` when complete, as
 * writeFileAtomic does for one buffer. The folder itself is flushed by the atomic writes that end a dataset
 * (report.json, meta.json).
 */
class TempFile {
  private constructor(
    private readonly tmp: string,
    private readonly target: string,
    private readonly handle: FileHandle,
  ) {}

  static async open(target: string): Promise<TempFile> {
    const tmp = path.join(path.dirname(target), `.${path.basename(target)}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`);
    return new TempFile(tmp, target, await fs.open(tmp, "w"));
  }

  async write(data: string | Uint8Array): Promise<void> {
    // A write may take less than it was given (a full disk, a signal): the rest follows, or the error does.
    const bytes = typeof data === "string" ? Buffer.from(data, "utf8") : data;
    for (let done = 0; done < bytes.length; ) done += (await this.handle.write(bytes, done, bytes.length - done)).bytesWritten;
  }

  async commit(): Promise<void> {
    await this.handle.sync();
    await this.handle.close();
    await fs.rename(this.tmp, this.target);
  }

  async discard(): Promise<void> {
    await this.handle.close().catch(() => undefined);
    await fs.rm(this.tmp, { force: true });
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
