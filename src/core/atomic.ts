// Writes that matter go to a temporary name, are flushed to disk, then renamed over the target: a reader (the
// trainer, the extension activating an adapter) sees either the old file or the complete new one, never half.
// A full disk is reported as such (which file, how much is free, what to do), with the temporary file removed.
import { closeSync, fstatSync, ftruncateSync, openSync, statfsSync, writeFileSync, promises as fs } from "node:fs";
import * as path from "node:path";
import { randomBytes } from "node:crypto";
import { UserError } from "./errors";
import { formatBytes } from "./format";

/** No space left on the disk (ENOSPC) or in the user's quota (EDQUOT) while writing `file`. */
export class DiskFullError extends UserError {
  readonly code: string;
  constructor(readonly file: string, cause: NodeJS.ErrnoException, existed: boolean) {
    const dir = path.dirname(file);
    super(
      `The disk is full: RepoTune could not write ${file} (${cause.code === "EDQUOT" ? "disk quota exceeded" : "no space left on device"}; ` +
      `${freeSpace(dir)}). ${existed ? "The file is unchanged." : "Nothing was half-written."} ` +
      `Free space on the disk that holds ${dir}, then try again.`,
    );
    this.name = "DiskFullError";
    this.code = cause.code ?? "ENOSPC";
  }
}

export async function writeFileAtomic(target: string, data: string | Uint8Array): Promise<void> {
  const dir = path.dirname(target);
  const tmp = path.join(dir, `.${path.basename(target)}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`);
  try {
    await fs.mkdir(dir, { recursive: true });
    const handle = await fs.open(tmp, "w");
    try {
      await handle.writeFile(data);
      await handle.sync();
    } catch (err) {
      await handle.close().catch(() => undefined);
      throw err;
    }
    await handle.close();
    await fs.rename(tmp, target);
  } catch (err) {
    await fs.rm(tmp, { force: true });
    throw asDiskFull(err, target, await exists(target));
  }
  await syncDir(dir);
}

export async function writeJsonAtomic(target: string, value: unknown): Promise<void> {
  await writeFileAtomic(target, JSON.stringify(value, null, 2) + "\n");
}

/**
 * Appends `text` whole or not at all: when the write fails part way (a full disk), the file is cut back to its
 * length before, so a line-per-record file never holds half a record that would spoil the next one appended after
 * space is freed. For files one process appends to at a time (a run's events: one run per repository).
 */
export function appendWhole(file: string, text: string): void {
  const fd = openSync(file, "a");
  try {
    const before = fstatSync(fd).size;
    try {
      writeFileSync(fd, text);
    } catch (err) {
      try {
        ftruncateSync(fd, before);
      } catch {
        // Cutting back only frees space; if even that fails the reader's partial-line skip is the last defence.
      }
      throw asDiskFull(err, file, true);
    }
  } finally {
    closeSync(fd);
  }
}

/** `err` as a DiskFullError when it is a full disk or quota while writing `file` (`existed`: it had a previous
 * version, left unchanged), else `err` itself. For other writers that clean up after themselves (the dataset's). */
export function asDiskFull(err: unknown, file: string, existed: boolean): unknown {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  return code === "ENOSPC" || code === "EDQUOT" ? new DiskFullError(file, err as NodeJS.ErrnoException, existed) : err;
}

function exists(file: string): Promise<boolean> {
  return fs.stat(file).then(() => true, () => false);
}

function freeSpace(dir: string): string {
  try {
    const s = statfsSync(dir);
    return `${formatBytes(s.bavail * s.bsize)} free there`;
  } catch {
    return "free space unknown";
  }
}

// The rename itself is only durable once the directory entry is flushed; Windows cannot open directories,
// where this is a no-op.
async function syncDir(dir: string): Promise<void> {
  let handle: fs.FileHandle | undefined;
  try {
    handle = await fs.open(dir, "r");
    await handle.sync();
  } catch {
    // Best effort: the data itself is already synced.
  } finally {
    await handle?.close().catch(() => undefined);
  }
}
