// Reads one candidate file and decides whether it is text RepoTune can learn from.
import { promises as fs } from "node:fs";
import { isBinaryFile } from "isbinaryfile";

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
  // Not followed: a link may point outside the folder (a key in ~/.ssh), and its target is listed anyway
  // when it is inside.
  if (stat.isSymbolicLink()) return { ok: false, reason: "symlink" };
  if (!stat.isFile()) return { ok: false, reason: "not_a_file" };
  if (stat.size === 0) return { ok: false, reason: "empty" };
  if (stat.size > maxBytes) return { ok: false, reason: "too_large" };
  let bytes: Buffer;
  try {
    bytes = await fs.readFile(absPath);
  } catch {
    return { ok: false, reason: "unreadable" };
  }
  if (await isBinaryFile(bytes, bytes.length)) return { ok: false, reason: "binary" };
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    return { ok: false, reason: "not_utf8" };
  }
  if (text.trim() === "") return { ok: false, reason: "empty" };
  return { ok: true, text, bytes: bytes.length };
}
