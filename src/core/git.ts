// The one way RepoTune runs git: an argument list (never a shell string), and with the repository's own hooks for
// running programs turned off, so that reading a repository cannot run code its .git/config names.
import { execFile } from "node:child_process";
import { promisify } from "node:util";

const execFileAsync = promisify(execFile);

const SAFE = ["-c", "core.fsmonitor=false", "-c", "core.hooksPath=/dev/null"];

export interface GitOptions {
  /** Kill git after this long and reject: a bound on commands whose cost grows with a repository's history. */
  timeoutMs?: number;
}

/** git's stdout as bytes (file names may be any bytes); rejects when git fails, is missing, or runs out of time. */
export async function gitBytes(cwd: string, args: string[], options: GitOptions = {}): Promise<Buffer> {
  const { stdout } = await execFileAsync("git", [...SAFE, ...args], {
    cwd, maxBuffer: 1 << 30, encoding: "buffer", windowsHide: true, timeout: options.timeoutMs ?? 0,
  });
  return stdout;
}

/** git's stdout, trimmed, or null when git fails, is missing, or `cwd` is not in a work tree. */
export async function gitText(cwd: string, args: string[]): Promise<string | null> {
  try {
    return (await gitBytes(cwd, args)).toString("utf8").trim();
  } catch {
    return null;
  }
}
