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
import { asDiskFull, writeJsonAtomic } from "../atomic";
import type { PackedBlock } from "./pack";

/** Which files went where: the CLI draws its before/after completions from the validation files. */
export const DatasetFiles = z.object({
  train: z.array(z.string()),
  val: z.array(z.string()),
  /** How the validation files were chosen (absent in folders written before it was recorded). */
  split: z.enum(["recent", "hash", "one-file"]).optional(),
});
export type DatasetFiles = z.infer<typeof DatasetFiles>;

/** Bytes of examples.jsonl gathered before they are written. */
const LINES_CHUNK = 1 << 20;
/** Bytes a file may have queued for writing before its writer waits for them (tens of milliseconds of writing). */
const MAX_QUEUED_BYTES = 32 << 20;
const NEWLINE = new Uint8Array([10]);

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
  /** Lines of examples.jsonl as UTF-8, filled in place; full chunks wait in `pending` until `drain`. */
  private chunk = Buffer.allocUnsafeSlow(LINES_CHUNK);
  private used = 0;
  private pending: Uint8Array[] = [];
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

  /** One line of examples.jsonl (a JSON object, without its newline); written out by `drain`. */
  exampleLine(line: string): void {
    // A UTF-16 code unit takes at most 3 bytes of UTF-8.
    if (!this.room(line.length * 3 + 1)) {
      this.pending.push(Buffer.from(`${line}\n`, "utf8"));
      return;
    }
    this.used += this.chunk.write(line, this.used);
    this.chunk[this.used++] = 10;
  }

  /**
   * One line of examples.jsonl given as its UTF-8 head, bytes [from, to) of `heads`, and its tail (report.ts:
   * exampleLineHeadJson, exampleLineTail).
   */
  exampleLineParts(heads: Uint8Array, from: number, to: number, tail: Uint8Array): void {
    const head = new Uint8Array(heads.buffer, heads.byteOffset + from, to - from);
    if (!this.room(head.length + tail.length + 1)) {
      this.pending.push(Buffer.concat([head, tail, NEWLINE]));
      return;
    }
    // TypedArray set of plain Uint8Array views: Buffer's copy and subarray take a slower path, per line.
    this.chunk.set(head, this.used);
    this.used += head.length;
    this.chunk.set(tail, this.used);
    this.used += tail.length;
    this.chunk[this.used++] = 10;
  }

  /** Whether `bytes` fit in the current chunk, after starting a new one if need be; false for a line longer than a chunk. */
  private room(bytes: number): boolean {
    if (this.used + bytes <= this.chunk.length) return true;
    if (this.used > 0) {
      this.pending.push(this.chunk.subarray(0, this.used));
      this.chunk = Buffer.allocUnsafeSlow(LINES_CHUNK);
      this.used = 0;
    }
    return bytes <= this.chunk.length;
  }

  /** Writes the lines of examples.jsonl that fill whole chunks (and any longer line), in order. */
  async drain(): Promise<void> {
    const pending = this.pending;
    this.pending = [];
    for (const bytes of pending) await this.examples.write(bytes);
  }

  private async flushLines(): Promise<void> {
    if (this.used > 0) {
      this.pending.push(this.chunk.subarray(0, this.used));
      this.chunk = Buffer.allocUnsafeSlow(0);
      this.used = 0;
    }
    await this.drain();
  }

  /** train.bin and train.flags (or val's) from the packed blocks, in order. */
  async split(name: "train" | "val", blocks: Iterable<PackedBlock>): Promise<void> {
    const tokens = await TempFile.open(path.join(this.dir, name === "train" ? DATA_FILES.train : DATA_FILES.val));
    this.temps.add(tokens);
    const flags = await TempFile.open(path.join(this.dir, name === "train" ? DATA_FILES.trainFlags : DATA_FILES.valFlags));
    this.temps.add(flags);
    // A block is written while the next is packed into the other pair of buffers (packedBlocks alternates two), and
    // finished before the one after that reuses its buffers.
    let previous: Promise<unknown> = Promise.resolve();
    for (const block of blocks) {
      const written = Promise.all([tokens.queue(littleEndian(block.data)), flags.queue(block.flags)]);
      written.catch(() => undefined);
      await previous;
      previous = written;
    }
    await previous;
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
  /** Writes queued and not known to be done, oldest first: they run one after the other in libuv's thread pool. */
  private readonly queued: { done: Promise<void>; bytes: number }[] = [];
  private queuedBytes = 0;
  private last: Promise<void> = Promise.resolve();

  private constructor(
    private readonly tmp: string,
    private readonly target: string,
    private readonly handle: FileHandle,
  ) {}

  static async open(target: string): Promise<TempFile> {
    const tmp = path.join(path.dirname(target), `.${path.basename(target)}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`);
    return new TempFile(tmp, target, await fs.open(tmp, "w"));
  }

  /**
   * Queues `bytes` after the writes before them and returns once at most MAX_QUEUED_BYTES wait: the caller goes on
   * with its work while a pool thread copies them into the file (in this kernel, copying into the page cache is most
   * of a write's cost: about 1.8 s of CPU per GB here). `bytes` must not change until written (see `queue`).
   */
  async write(bytes: Uint8Array): Promise<void> {
    this.queue(bytes);
    while (this.queuedBytes > MAX_QUEUED_BYTES) {
      const oldest = this.queued.shift()!;
      this.queuedBytes -= oldest.bytes;
      await oldest.done;
    }
  }

  /** Queues `bytes` and returns when they are written; a write fails, and every one after it, if one before failed. */
  queue(bytes: Uint8Array): Promise<void> {
    const done = this.last.then(async () => {
      // A write may take less than it was given (a full disk, a signal): the rest follows, or the error does.
      try {
        for (let at = 0; at < bytes.length; ) at += (await this.handle.write(bytes, at, bytes.length - at)).bytesWritten;
      } catch (err) {
        // A full disk says so, and where, rather than Node's "ENOSPC: no space left on device, write".
        throw asDiskFull(err, this.target, false);
      }
    });
    // Handled here, thrown where it is awaited (the caller's, or `commit`): not an unhandled rejection meanwhile.
    done.catch(() => undefined);
    this.last = done;
    this.queued.push({ done, bytes: bytes.length });
    this.queuedBytes += bytes.length;
    return done;
  }

  async commit(): Promise<void> {
    await this.last;
    this.queued.length = 0;
    this.queuedBytes = 0;
    await this.handle.sync();
    await this.handle.close();
    await fs.rename(this.tmp, this.target);
  }

  async discard(): Promise<void> {
    await this.last.catch(() => undefined);
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
