// The trainer as the extension runs it: detached from the window. Its stdout (the event lines) and stderr (its log)
// go to files in the run folder rather than pipes, so a window reload, which ends the extension host, does not end
// the run: the reloaded window finds the trainer by its pid file and follows the events file again (attachTrainer).
//
// Nothing trains for a window that is gone: the window renews a lease file every few seconds, and the trainer stops
// with a checkpoint when nobody has for LEASE_TIMEOUT_S (VS Code closed; trainer --lease-file).
//
// The CLI keeps runTrainer (trainerProcess.ts): a terminal's trainer ends with the command.
import { spawn, type ChildProcess } from "node:child_process";
import { promises as fs, closeSync, openSync, readFileSync, readSync, rmSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { parseTrainerLine, type TrainerEvent } from "../protocol/trainer";
import { trainerSpawn } from "./python";
import { MALFORMED_PREVIEW_CHARS, MAX_EVENT_LINE_BYTES, type TrainerExit, type TrainerProcessOptions } from "./trainerProcess";
import { processAlive } from "./processAlive";

/** Seconds without a renewal before the trainer stops: longer than a window reload takes. */
export const LEASE_TIMEOUT_S = 30;
const LEASE_RENEW_MS = 5_000;
const POLL_MS = 250;
const STDERR_TAIL_BYTES = 8 * 1024;

export interface TrainerFiles {
  /** The trainer's stdout: one JSON event per line, appended by every attempt (start, resume). */
  events: string;
  pid: string;
  lease: string;
}

export function trainerFiles(runDir: string): TrainerFiles {
  return {
    events: path.join(runDir, "trainer.jsonl"),
    pid: path.join(runDir, "trainer.pid.json"),
    lease: path.join(runDir, "trainer.lease"),
  };
}

/** What the pid file says: which process trains, and where in the events file its lines begin. */
interface PidFile {
  pid: number;
  started: number;
  offset: number;
}

export interface FollowOptions {
  onEvent: (event: TrainerEvent) => void;
  onMalformed: (line: string, reason: string) => void;
  /** Aborting asks the trainer to stop cleanly (SIGINT: it checkpoints and reports `stopped`). */
  signal?: AbortSignal;
  killAfterMs?: number;
  /** The trainer's log file (its stderr), for the tail quoted when it dies without an error event. */
  logPath?: string;
}

/** Starts the trainer detached, writing into `runDir`, and follows it until it exits (as runTrainer does). */
export async function runDetachedTrainer(opts: TrainerProcessOptions & { runDir: string }): Promise<TrainerExit> {
  const files = trainerFiles(opts.runDir);
  const result: TrainerExit = { code: null, signal: null, final: null, stderrTail: "", spawnError: null, aborted: false };
  if (opts.signal?.aborted) return { ...result, aborted: true };
  await fs.mkdir(opts.runDir, { recursive: true });
  const offset = await fs.stat(files.events).then((s) => s.size, () => 0);
  await touch(files.lease);
  const { command, cwd, env } = trainerSpawn(opts.python, opts.trainerRoot);
  const out = openSync(files.events, "a");
  const err = openSync(opts.logPath ?? path.join(opts.runDir, "trainer.log"), "a");
  let child: ChildProcess;
  try {
    child = spawn(command, ["-m", "repotune_trainer", ...opts.args, "--lease-file", files.lease, "--lease-timeout", String(LEASE_TIMEOUT_S)], {
      cwd, env, stdio: ["ignore", out, err], detached: process.platform !== "win32", windowsHide: true,
    });
  } finally {
    closeSync(out);
    closeSync(err);
  }
  const spawned = await new Promise<string | null>((resolve) => {
    child.once("spawn", () => resolve(null));
    child.once("error", (e: NodeJS.ErrnoException) => resolve(e.code === "ENOENT" ? `${opts.python} was not found` : e.message));
  });
  if (spawned !== null || child.pid === undefined) return { ...result, spawnError: spawned ?? "the trainer process did not start" };
  // The extension host may end before the trainer: it must not wait for it, nor take it along.
  child.unref();
  writeFileSync(files.pid, JSON.stringify({ pid: child.pid, started: Date.now(), offset } satisfies PidFile));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve({ code: child.exitCode, signal: child.signalCode });
    else child.once("exit", (code, signal) => resolve({ code, signal }));
  });
  return follow(child.pid, files, offset, { ...opts, logPath: opts.logPath ?? path.join(opts.runDir, "trainer.log") }, exited);
}

/**
 * Follows the trainer of `runDir` that a previous window started, if it still runs (or finished since, leaving its
 * last event in the events file). Events the run's history already holds (trainer time up to `seenUntil`) are not
 * passed on again. Undefined when there is nothing to attach to.
 */
export function attachTrainer(runDir: string, seenUntil: number, opts: FollowOptions): Promise<TrainerExit> | undefined {
  const files = trainerFiles(runDir);
  const pidFile = readPidFile(files.pid);
  if (!pidFile) return undefined;
  const alive = isOurTrainer(pidFile.pid, runDir);
  if (!alive && !hasFinalEvent(files.events, pidFile.offset)) return undefined;
  const onEvent = (e: TrainerEvent) => {
    if ((e.time ?? Infinity) > seenUntil) opts.onEvent(e);
  };
  return follow(pidFile.pid, files, pidFile.offset, { ...opts, onEvent }, alive ? undefined : Promise.resolve({ code: null, signal: null }));
}

/** Whether attachTrainer has something to follow in `runDir`: a trainer still running, or one that ended unseen. */
export function canAttach(runDir: string): boolean {
  const files = trainerFiles(runDir);
  const pidFile = readPidFile(files.pid);
  return pidFile !== undefined && (isOurTrainer(pidFile.pid, runDir) || hasFinalEvent(files.events, pidFile.offset));
}

/** Whether `runDir` has a trainer running for it (started by this window or another). */
export function trainerRunning(runDir: string): boolean {
  const pidFile = readPidFile(trainerFiles(runDir).pid);
  return pidFile !== undefined && isOurTrainer(pidFile.pid, runDir);
}

function follow(
  pid: number,
  files: TrainerFiles,
  offset: number,
  opts: FollowOptions,
  exited?: Promise<{ code: number | null; signal: NodeJS.Signals | null }>,
): Promise<TrainerExit> {
  const result: TrainerExit = { code: null, signal: null, final: null, stderrTail: "", spawnError: null, aborted: false };
  let position = offset;
  let partial = "";
  // A line longer than any event (a runaway print) is reported once, by its start, and skipped to its end.
  let skipping = false;
  const readNew = (): void => {
    let fd: number | undefined;
    try {
      fd = openSync(files.events, "r");
      const chunk = Buffer.alloc(64 * 1024);
      for (;;) {
        const n = readSync(fd, chunk, 0, chunk.length, position);
        if (n <= 0) break;
        position += n;
        partial += chunk.subarray(0, n).toString("utf8");
        const lines = partial.split("\n");
        partial = lines.pop() ?? "";
        for (const [i, line] of lines.entries()) {
          if (i === 0 && skipping) skipping = false;
          else deliver(line);
        }
        if (!skipping && Buffer.byteLength(partial) > MAX_EVENT_LINE_BYTES) {
          opts.onMalformed(`${partial.slice(0, MALFORMED_PREVIEW_CHARS)}…`, `a line longer than any trainer event (at most ${MAX_EVENT_LINE_BYTES} bytes)`);
          skipping = true;
        }
        if (skipping) partial = "";
      }
    } catch {
      // Not written yet, or removed with the run: nothing to read now.
    } finally {
      if (fd !== undefined) closeSync(fd);
    }
  };
  const deliver = (line: string): void => {
    if (line.trim() === "") return;
    const parsed = parseTrainerLine(line);
    if (!parsed.ok) return opts.onMalformed(line, parsed.reason);
    if (parsed.event.event === "done" || parsed.event.event === "stopped" || parsed.event.event === "error") result.final = parsed.event;
    opts.onEvent(parsed.event);
  };

  return new Promise((resolve) => {
    const renew = setInterval(() => void touch(files.lease), LEASE_RENEW_MS);
    let killTimer: NodeJS.Timeout | undefined;
    const onAbort = (): void => {
      result.aborted = true;
      signalTrainer(pid, "SIGINT");
      killTimer = setTimeout(() => signalTrainer(-pid, "SIGKILL"), opts.killAfterMs ?? 10_000);
    };
    opts.signal?.addEventListener("abort", onAbort, { once: true });
    // A trainer this window did not start has no exit event to wait for: it is polled.
    const gone = exited ?? new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => {
      const check = setInterval(() => {
        if (!processAlive(pid)) {
          clearInterval(check);
          r({ code: null, signal: null });
        }
      }, POLL_MS);
    });
    const poll = setInterval(readNew, POLL_MS);
    readNew();
    void gone.then((how) => {
      clearInterval(poll);
      clearInterval(renew);
      clearTimeout(killTimer);
      opts.signal?.removeEventListener("abort", onAbort);
      readNew();
      if (partial.trim() !== "") deliver(partial);
      result.code = how.code;
      result.signal = how.signal;
      result.stderrTail = tailOf(opts.logPath);
      rmSync(files.pid, { force: true });
      resolve(result);
    });
  });
}

function readPidFile(file: string): PidFile | undefined {
  try {
    const p = JSON.parse(readFileSync(file, "utf8")) as Partial<PidFile>;
    if (typeof p.pid === "number" && Number.isInteger(p.pid) && p.pid > 0 && typeof p.offset === "number") {
      return { pid: p.pid, started: p.started ?? 0, offset: p.offset };
    }
  } catch {
    // No pid file: no detached trainer.
  }
  return undefined;
}

/** Alive, and (where the system says) a RepoTune trainer writing into this run folder: a reused pid is not ours. */
function isOurTrainer(pid: number, runDir: string): boolean {
  if (!processAlive(pid)) return false;
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
    return cmdline.includes("repotune_trainer") && cmdline.some((a) => a.startsWith(path.resolve(runDir)));
  } catch {
    return process.platform !== "linux"; // no /proc: the pid file is all there is
  }
}

function hasFinalEvent(eventsFile: string, offset: number): boolean {
  try {
    const text = readFileSync(eventsFile).subarray(offset).toString("utf8");
    return /"event":\s*"(done|stopped|error)"/.test(text);
  } catch {
    return false;
  }
}

function signalTrainer(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(process.platform === "win32" ? Math.abs(pid) : pid, signal);
  } catch {
    // Already gone.
  }
}

/** Renews the lease (the trainer reads only its time) and says which process follows the run. */
async function touch(file: string): Promise<void> {
  await fs.writeFile(file, JSON.stringify({ owner: process.pid, time: Date.now() })).catch(() => undefined);
}

/**
 * The process (another window's extension host) that follows the run in `runDir`, if it is alive and not this one.
 * A window that reloads is gone by the time the new one looks, or soon after; another window on the same
 * repository is not.
 */
export function otherFollower(runDir: string): number | undefined {
  try {
    const owner = (JSON.parse(readFileSync(trainerFiles(runDir).lease, "utf8")) as { owner?: unknown }).owner;
    return typeof owner === "number" && owner !== process.pid && processAlive(owner) ? owner : undefined;
  } catch {
    return undefined;
  }
}

function tailOf(file: string | undefined): string {
  if (!file) return "";
  try {
    const text = readFileSync(file);
    return text.subarray(Math.max(0, text.length - STDERR_TAIL_BYTES)).toString("utf8");
  } catch {
    return "";
  }
}
