// Reads one candidate file and decides whether it is text RepoTune can learn from.
import { lstatSync, readFileSync, promises as fs, type Stats } from "node:fs";
import { isBinaryFile, isBinaryFileSync } from "isbinaryfile";

export const DEFAULT_MAX_FILE_BYTES = 1024 * 1024;

export type SkipReason = "binary" | "too_large" | "empty" | "not_utf8" | "symlink" | "not_a_file" | "unreadable";

/** `bytes` is the file's size on disk, for per-language byte counts without encoding the text again. */
export type ReadResult = { ok: true; text: string; bytes: number } | { ok: false; reason: SkipReason };

const utf8 = new TextDecoder("utf-8", { fatal: true });

export async function readSourceFile(absPath: string, maxBytes = DEFAULT_MAX_FILE_BYTES): Promise<ReadResult> {
  let stat;
  try {
    stat = await fs.lstat(absPath);
  } catch {
    return { ok: false, reason: "unreadable" };
  }
  const byStat = statReason(stat, maxBytes);
  if (byStat !== null) return { ok: false, reason: byStat };
  let bytes: Buffer;
  try {
    bytes = await fs.readFile(absPath);
  } catch {
    return { ok: false, reason: "unreadable" };
  }
  if (await isBinaryFile(bytes, bytes.length)) return { ok: false, reason: "binary" };
  return decode(bytes);
}

/**
 * readSourceFile with synchronous calls, for worker threads (which have nothing else to do while they wait) and for
 * the dataset step reading back the files it selected. Each asynchronous call is a hop to libuv's thread pool: on
 * two busy cores the five of a read (lstat, open, fstat, read, close) cost a third of a worker's time
 * (bench/README.md).
 */
export function readSourceFileSync(absPath: string, maxBytes = DEFAULT_MAX_FILE_BYTES): ReadResult {
  let stat;
  try {
    stat = lstatSync(absPath);
  } catch {
    return { ok: false, reason: "unreadable" };
  }
  const byStat = statReason(stat, maxBytes);
  if (byStat !== null) return { ok: false, reason: byStat };
  let bytes: Buffer;
  try {
    bytes = readFileSync(absPath);
  } catch {
    return { ok: false, reason: "unreadable" };
  }
  if (isBinaryFileSync(bytes, bytes.length)) return { ok: false, reason: "binary" };
  return decode(bytes);
}

function statReason(stat: Stats, maxBytes: number): SkipReason | null {
  // Not followed: a link may point outside the folder (a key in ~/.ssh), and its target is listed anyway
  // when it is inside.
  if (stat.isSymbolicLink()) return "symlink";
  if (!stat.isFile()) return "not_a_file";
  if (stat.size === 0) return "empty";
  if (stat.size > maxBytes) return "too_large";
  return null;
}

function decode(bytes: Buffer): ReadResult {
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    return { ok: false, reason: "not_utf8" };
  }
  if (text.trim() === "") return { ok: false, reason: "empty" };
  return { ok: true, text, bytes: bytes.length };
}
