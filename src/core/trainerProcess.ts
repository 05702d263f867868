// Runs `python -m repotune_trainer ...` and turns its stdout into typed events. The trainer is started with an
// argument list (no shell) and a minimal environment (python.ts trainerSpawn); a line that does not parse, however
// long or garbled, is reported and skipped, never fatal.
import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream } from "node:fs";
import type { Readable } from "node:stream";
import { parseTrainerLine, type TrainerEvent } from "../protocol/trainer";
import { trainerSpawn } from "./python";

export interface TrainerProcessOptions {
  python: string;
  trainerRoot: string;
  /** Arguments after `-m repotune_trainer`. */
  args: string[];
  onEvent: (event: TrainerEvent) => void;
  /**
   * A stdout line that is not a trainer event (a stray print from a library, a truncated line), cut to its first
   * MALFORMED_PREVIEW_CHARS characters so that a runaway print cannot flood the run's log.
   */
  onMalformed: (line: string, reason: string) => void;
  /** The trainer's stderr (its human-readable log) is copied here. */
  logPath?: string;
  /** Aborting asks the trainer to stop cleanly (SIGINT: it checkpoints and reports `stopped`). */
  signal?: AbortSignal;
  /** How long a stop may take before the process is killed. */
  killAfterMs?: number;
}

export interface TrainerExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** The last done / stopped / error event, if the trainer reported one. */
  final: TrainerEvent | null;
  /** The end of stderr, for error messages when the trainer died without an error event. */
  stderrTail: string;
  /** Set when the process could not be started at all (interpreter missing, not executable). */
  spawnError: string | null;
  aborted: boolean;
}

const STDERR_TAIL_CHARS = 8 * 1024;
/** The longest stdout line read as an event: the trainer's longest (start) is well under a kilobyte. */
export const MAX_EVENT_LINE_BYTES = 1024 * 1024;
export const MALFORMED_PREVIEW_CHARS = 1000;
const live = new Set<ChildProcess>();
let exitHookInstalled = false;

export function runTrainer(opts: TrainerProcessOptions): Promise<TrainerExit> {
  installExitHook();
  return new Promise((resolve) => {
    const result: TrainerExit = { code: null, signal: null, final: null, stderrTail: "", spawnError: null, aborted: false };
    if (opts.signal?.aborted) return resolve({ ...result, aborted: true });

    // Own process group: a Ctrl-C in the terminal reaches only the CLI, which then stops the trainer once, itself.
    const { command, cwd, env } = trainerSpawn(opts.python, opts.trainerRoot);
    const child = spawn(command, ["-m", "repotune_trainer", ...opts.args], {
      cwd,
      env,
      stdio: ["ignore", "pipe", "pipe"],
      detached: process.platform !== "win32",
      windowsHide: true,
    });
    live.add(child);
    const log = opts.logPath ? createWriteStream(opts.logPath, { flags: "a" }) : undefined;
    log?.on("error", () => undefined);

    let killTimer: NodeJS.Timeout | undefined;
    const onAbort = () => {
      result.aborted = true;
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGINT");
      killTimer = setTimeout(() => killTree(child), opts.killAfterMs ?? 10_000);
    };
    opts.signal?.addEventListener("abort", onAbort, { once: true });

    const malformed = (line: string, reason: string) => {
      const preview = line.length > MALFORMED_PREVIEW_CHARS ? `${line.slice(0, MALFORMED_PREVIEW_CHARS)}… (${line.length} characters)` : line;
      opts.onMalformed(preview, reason);
    };
    const stdout = readLines(child.stdout!, MAX_EVENT_LINE_BYTES, (line) => {
      if (line.trim() === "") return;
      const parsed = parseTrainerLine(line);
      if (!parsed.ok) return malformed(line, parsed.reason);
      if (parsed.event.event === "done" || parsed.event.event === "stopped" || parsed.event.event === "error") result.final = parsed.event;
      opts.onEvent(parsed.event);
    }, (head, bytes) => malformed(head, `a line of ${bytes} bytes, longer than any trainer event (at most ${MAX_EVENT_LINE_BYTES})`));

    child.stderr!.setEncoding("utf8");
    child.stderr!.on("data", (chunk: string) => {
      log?.write(chunk);
      result.stderrTail = (result.stderrTail + chunk).slice(-STDERR_TAIL_CHARS);
    });

    let settled = false;
    const finish = async () => {
      if (settled) return;
      settled = true;
      live.delete(child);
      clearTimeout(killTimer);
      opts.signal?.removeEventListener("abort", onAbort);
      await stdout.closed;
      await new Promise<void>((r) => (log ? log.end(r) : r()));
      resolve(result);
    };
    child.on("error", (err: NodeJS.ErrnoException) => {
      result.spawnError = err.code === "ENOENT" ? `${opts.python} was not found` : err.message;
      stdout.close();
      void finish();
    });
    child.on("close", (code, signal) => {
      result.code = code;
      result.signal = signal;
      void finish();
    });
  });
}

/**
 * Splits a byte stream into UTF-8 lines, like readline, but holds at most `maxBytes` of one line: a longer line is
 * dropped as it streams in and reported with its first bytes and its size, so that a print without a newline cannot
 * fill the memory. Bytes that are not UTF-8 become U+FFFD (the line then fails to parse and is reported).
 */
function readLines(
  input: Readable,
  maxBytes: number,
  onLine: (line: string) => void,
  onTooLong: (head: string, bytes: number) => void,
): { closed: Promise<void>; close: () => void } {
  let parts: Buffer[] = [];
  let size = 0;
  // Bytes of the line being dropped (0: not dropping), and its start for the report.
  let dropped = 0;
  let head = "";
  const endLine = () => {
    if (dropped > 0) onTooLong(head, dropped);
    else onLine(Buffer.concat(parts, size).toString("utf8").replace(/\r$/, ""));
    parts = [];
    size = 0;
    dropped = 0;
  };
  input.on("data", (chunk: Buffer) => {
    for (let start = 0; ; ) {
      const newline = chunk.indexOf(10, start);
      const piece = chunk.subarray(start, newline === -1 ? chunk.length : newline);
      if (dropped > 0) {
        dropped += piece.length;
      } else if (size + piece.length > maxBytes) {
        head = Buffer.concat([...parts, piece.subarray(0, MALFORMED_PREVIEW_CHARS)]).subarray(0, MALFORMED_PREVIEW_CHARS).toString("utf8");
        dropped = size + piece.length;
        parts = [];
        size = 0;
      } else if (piece.length > 0) {
        parts.push(piece);
        size += piece.length;
      }
      if (newline === -1) break;
      endLine();
      start = newline + 1;
    }
  });
  let close!: () => void;
  const closed = new Promise<void>((resolve) => {
    let done = false;
    close = () => {
      if (done) return;
      done = true;
      if (size > 0 || dropped > 0) endLine();
      resolve();
    };
  });
  input.once("end", close);
  input.once("close", close);
  return { closed, close };
}

function killTree(child: ChildProcess): void {
  if (child.exitCode !== null || child.signalCode !== null) return;
  try {
    // The whole group: helpers the trainer started (data workers, torchrun ranks) go with it.
    if (process.platform !== "win32" && child.pid) process.kill(-child.pid, "SIGKILL");
    else child.kill("SIGKILL");
  } catch {
    child.kill("SIGKILL");
  }
}

// A detached trainer would outlive the extension host or the CLI; nothing should train for a process that is gone.
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once("exit", () => {
    for (const child of live) killTree(child);
  });
}
