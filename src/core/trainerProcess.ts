// Runs `python -m repotune_trainer ...` and turns its stdout into typed events. The trainer is started with an
// argument list (no shell) and a minimal environment; a line that does not parse is reported, never fatal.
import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream } from "node:fs";
import * as readline from "node:readline";
import { parseTrainerLine, type TrainerEvent } from "../protocol/trainer";
import { trainerSpawn } from "./python";

export interface TrainerProcessOptions {
  python: string;
  trainerRoot: string;
  /** Arguments after `-m repotune_trainer`. */
  args: string[];
  onEvent: (event: TrainerEvent) => void;
  /** A stdout line that is not a trainer event (a stray print from a library, a truncated line). */
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

    const lines = readline.createInterface({ input: child.stdout!, crlfDelay: Infinity });
    lines.on("line", (line) => {
      if (line.trim() === "") return;
      const parsed = parseTrainerLine(line);
      if (!parsed.ok) return opts.onMalformed(line, parsed.reason);
      if (parsed.event.event === "done" || parsed.event.event === "stopped" || parsed.event.event === "error") result.final = parsed.event;
      opts.onEvent(parsed.event);
    });
    const stdoutClosed = new Promise<void>((r) => lines.once("close", r));

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
      await stdoutClosed;
      await new Promise<void>((r) => (log ? log.end(r) : r()));
      resolve(result);
    };
    child.on("error", (err: NodeJS.ErrnoException) => {
      result.spawnError = err.code === "ENOENT" ? `${opts.python} was not found` : err.message;
      lines.close();
      void finish();
    });
    child.on("close", (code, signal) => {
      result.code = code;
      result.signal = signal;
      void finish();
    });
  });
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
