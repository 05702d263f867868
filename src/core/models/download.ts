// Downloads a base model into the models folder of global storage (one copy for all workspaces).
//
// Written on Node's fetch rather than node-llama-cpp's createModelDownloader (3.21.1, through ipull): tried against
// a 127.0.0.1 server that dropped the connection after 1 MB, that downloader retried from byte 0 (Range
// bytes=0-...), kept nothing on disk after a cancel, started from 0 again the next time, and checks no checksum.
// A model is 0.5-8 GB, so an interrupted download must continue where it stopped: the bytes received so far stay in
// "<file>.partial", the next attempt asks for the rest with an HTTP Range request, and only a whole file whose
// SHA-256 matches is renamed into place.
import { createHash, type Hash } from "node:crypto";
import { createReadStream, createWriteStream, promises as fs } from "node:fs";
import * as path from "node:path";
import { Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { formatBytes } from "../format";

export interface DownloadProgress {
  /** Bytes of the file on disk so far, the resumed part included. */
  receivedBytes: number;
  /** Size of the whole file, when the server says. */
  totalBytes: number | null;
  /** Bytes that were already in the partial file when this attempt started. */
  resumedFrom: number;
}

export interface DownloadOptions {
  /** `hf:<user>/<repo>/<file>[#<branch>]` (node-llama-cpp's model URI form) or an http(s) URL. */
  uri: string;
  /** The models folder (global storage); created when missing. */
  dir: string;
  fileName: string;
  /** Lower-case hex SHA-256 of the whole file, or null when none is known (then only the size is checked). */
  sha256: string | null;
  onProgress?: (p: DownloadProgress) => void;
  signal?: AbortSignal;
  /** The Hugging Face endpoint or mirror `hf:` URIs resolve on (the repotune.models.endpoint setting); default $HF_ENDPOINT, else huggingface.co. */
  endpoint?: string;
}

export interface DownloadResult {
  path: string;
  bytes: number;
  /** The file's SHA-256; for a file already in place, the catalog's (null when it has none). */
  sha256: string | null;
  /** Bytes taken from an earlier, interrupted attempt (0 for a fresh download). */
  resumedFrom: number;
  /** True when the file was already in place and nothing was fetched. */
  existing: boolean;
}

export type DownloadErrorCode = "network" | "http" | "checksum" | "disk" | "cancelled" | "incomplete";

export class DownloadError extends Error {
  constructor(readonly code: DownloadErrorCode, message: string) {
    super(message);
    this.name = "DownloadError";
  }
}

const PROGRESS_INTERVAL_MS = 200;

/**
 * The https URL of an `hf:` model URI (node-llama-cpp's `hf:<user>/<repo>/<path>#<branch>` form), on $HF_ENDPOINT
 * when set; URLs unchanged.
 */
export function resolveModelUri(uri: string, endpointSetting?: string): string {
  if (/^https?:\/\//i.test(uri)) return uri;
  const m = /^hf:([^/#]+)\/([^/#]+)\/([^#]+?)(?:#(.+))?$/.exec(uri);
  if (!m) {
    throw new DownloadError("http", `"${uri}" is not a model address RepoTune can download: use hf:<user>/<repository>/<file>.gguf or an https:// URL.`);
  }
  const [, user, repo, file, branch] = m;
  const encodedPath = file.split("/").map(encodeURIComponent).join("/");
  // HF_ENDPOINT: the Hugging Face mirror a company or region uses (the variable huggingface_hub reads too).
  const endpoint = (endpointSetting || process.env.HF_ENDPOINT || "https://huggingface.co").replace(/\/+$/, "");
  return `${endpoint}/${user}/${repo}/resolve/${encodeURIComponent(branch ?? "main")}/${encodedPath}`;
}

export function partialPath(target: string): string {
  return `${target}.partial`;
}

export async function downloadModel(opts: DownloadOptions): Promise<DownloadResult> {
  const target = path.join(opts.dir, opts.fileName);
  const partial = partialPath(target);
  const url = resolveModelUri(opts.uri, opts.endpoint);
  await fs.mkdir(opts.dir, { recursive: true }).catch((err: NodeJS.ErrnoException) => {
    throw diskError(err, opts.dir);
  });

  // A file in place was verified before it was renamed there.
  const existing = await fs.stat(target).catch(() => null);
  if (existing?.isFile()) {
    return { path: target, bytes: existing.size, sha256: opts.sha256, resumedFrom: 0, existing: true };
  }

  let start = (await fs.stat(partial).catch(() => null))?.size ?? 0;
  let response = await request(url, start, opts.signal);
  if (response.status === 416 && start > 0) {
    // The partial file is as long as the remote one or longer (the file changed on the server): start over.
    await response.body?.cancel();
    await fs.rm(partial, { force: true });
    start = 0;
    response = await request(url, 0, opts.signal);
  }
  if (response.status !== 200 && response.status !== 206) {
    await response.body?.cancel();
    throw new DownloadError("http", `The server refused the model download (HTTP ${response.status} ${response.statusText}) from ${url}. ${httpHint(response.status)}`);
  }
  if (response.status === 200 && start > 0) start = 0; // The server ignored the Range request and sends the whole file.
  const total = totalSize(response, start);
  await checkFreeSpace(opts.dir, total !== null ? total - start : null);

  const hash = createHash("sha256");
  if (start > 0) await hashFile(partial, hash, opts.signal);
  let received = start;
  // At most one report per interval, and the latest count always reported (a stalled transfer shows where it stopped).
  let lastReport = 0;
  let pending: NodeJS.Timeout | undefined;
  const report = (force: boolean) => {
    const now = Date.now();
    if (!force && now - lastReport < PROGRESS_INTERVAL_MS) {
      pending ??= setTimeout(() => {
        pending = undefined;
        report(true);
      }, lastReport + PROGRESS_INTERVAL_MS - now);
      return;
    }
    clearTimeout(pending);
    pending = undefined;
    lastReport = now;
    opts.onProgress?.({ receivedBytes: received, totalBytes: total, resumedFrom: start });
  };
  report(true);
  const counter = new Transform({
    transform(chunk: Buffer, _enc, done) {
      hash.update(chunk);
      received += chunk.length;
      report(false);
      done(null, chunk);
    },
  });
  try {
    if (!response.body) throw new DownloadError("network", `The server sent no data for ${url}.`);
    await pipeline(
      Readable.fromWeb(response.body as import("node:stream/web").ReadableStream<Uint8Array>),
      counter,
      createWriteStream(partial, { flags: start > 0 ? "a" : "w" }),
      { signal: opts.signal },
    );
  } catch (err) {
    report(true);
    throw transferError(err, opts.signal, partial, received, total);
  } finally {
    clearTimeout(pending);
  }
  report(true);

  if (total !== null && received !== total) {
    throw new DownloadError("incomplete", `The download of ${opts.fileName} ended after ${formatBytes(received)} of ${formatBytes(total)}. Start the download again: it continues from ${partial}.`);
  }
  const digest = hash.digest("hex");
  if (opts.sha256 !== null && digest !== opts.sha256.toLowerCase()) {
    await fs.rm(partial, { force: true });
    throw new DownloadError("checksum", `The downloaded ${opts.fileName} is corrupted: its SHA-256 is ${digest}, expected ${opts.sha256}. The file was deleted; download it again (if this repeats, the file on the server changed or a proxy alters it).`);
  }
  await syncFile(partial);
  await fs.rename(partial, target);
  return { path: target, bytes: received, sha256: digest, resumedFrom: start, existing: false };
}

async function request(url: string, start: number, signal: AbortSignal | undefined): Promise<Response> {
  try {
    return await fetch(url, {
      headers: start > 0 ? { range: `bytes=${start}-` } : {},
      redirect: "follow",
      signal,
    });
  } catch (err) {
    if (signal?.aborted) throw cancelled();
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    const detail = cause?.code ?? cause?.message ?? (err as Error).message;
    throw new DownloadError("network", `RepoTune could not reach ${new URL(url).host} to download the model (${detail}). Check the network connection or proxy, then try again; a download that was interrupted continues where it stopped.`);
  }
}

function totalSize(response: Response, start: number): number | null {
  const range = response.headers.get("content-range");
  const m = range ? /\/(\d+)\s*$/.exec(range) : null;
  if (m) return Number(m[1]);
  const length = response.headers.get("content-length");
  return length !== null && /^\d+$/.test(length) ? start + Number(length) : null;
}

async function checkFreeSpace(dir: string, needed: number | null): Promise<void> {
  if (needed === null) return;
  const stats = await fs.statfs(dir).catch(() => null);
  if (!stats) return;
  const free = stats.bavail * stats.bsize;
  if (free < needed) {
    throw new DownloadError("disk", `There is not enough disk space for the model: it needs ${formatBytes(needed)} more, and ${dir} has ${formatBytes(free)} free. Free some space and download again.`);
  }
}

async function hashFile(file: string, hash: Hash, signal: AbortSignal | undefined): Promise<void> {
  try {
    for await (const chunk of createReadStream(file, { signal })) hash.update(chunk as Buffer);
  } catch (err) {
    if (signal?.aborted) throw cancelled();
    throw err;
  }
}

function transferError(err: unknown, signal: AbortSignal | undefined, partial: string, received: number, total: number | null): Error {
  if (err instanceof DownloadError) return err;
  if (signal?.aborted) return cancelled();
  const e = err as NodeJS.ErrnoException;
  if (e.code === "ENOSPC" || e.code === "EDQUOT" || e.code === "EACCES" || e.code === "EROFS" || e.code === "EPERM") return diskError(e, partial);
  const of = total !== null ? ` of ${formatBytes(total)}` : "";
  return new DownloadError("network", `The connection broke after ${formatBytes(received)}${of} (${e.message}). Start the download again: it continues from the ${formatBytes(received)} already saved.`);
}

function diskError(err: NodeJS.ErrnoException, where: string): DownloadError {
  if (err.code === "ENOSPC" || err.code === "EDQUOT") {
    return new DownloadError("disk", `The disk is full: the model could not be written to ${where}. Free some space and download again; what was saved so far is kept.`);
  }
  return new DownloadError("disk", `The model could not be written to ${where} (${err.code ?? err.message}). Check that this folder is writable.`);
}

function cancelled(): DownloadError {
  return new DownloadError("cancelled", "The model download was cancelled. Starting it again continues where it stopped.");
}

function httpHint(status: number): string {
  if (status === 401 || status === 403) return "The file may need a Hugging Face login or a licence acceptance; download it in a browser and choose it with \"Use my own GGUF\".";
  if (status === 404) return "The file is no longer at this address; pick another model or use your own GGUF file.";
  return "Try again later, or download the file in a browser and choose it with \"Use my own GGUF\".";
}

async function syncFile(file: string): Promise<void> {
  const handle = await fs.open(file, "r+");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
