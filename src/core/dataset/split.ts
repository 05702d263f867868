// Which files are held out for validation. In a git repository the most recently changed files are, so that the
// validation loss asks "does it complete what I write next" (code written after the code it learned from); outside
// git, or in a repository without commits, a hash of each path decides, so a file stays on the same side across runs
// and seeds and validation losses of two runs stay comparable. Either way about a tenth of the code is held out.
import { gitBytes, gitText } from "../git";
import { hashUnit } from "./random";

export const DEFAULT_VAL_FRACTION = 0.1;

/** How the held-out files were chosen: by recency in git, by path hash, or the end of a single file. */
export type SplitMethod = "recent" | "hash" | "one-file";

/** A validation loss over one or two files says little about a repository: hold out a few when there are some. */
export const MIN_HELD_OUT_FILES = 3;

/**
 * Most of the code that may be held out when the fraction and the file minimum ask for more: in a small repository
 * three files can be half of it, and a single huge recent file would leave little to learn from. A file that would
 * cross this stays in training and the next one in order is taken instead.
 */
const MAX_HELD_OUT_SHARE = 1 / 3;

/** Commits git log reads for change times: the newest files are all that is needed, and history can be huge. */
const MAX_COMMITS = 2000;
const GIT_TIMEOUT_MS = 60_000;

export interface ChangeTimes {
  /** Newest commit time (seconds) of each path relative to the folder; uncommitted changes are Infinity. */
  times: Map<string, number> | null;
  /** Why a git repository's history could not be used, for the dataset's warnings. */
  warning: string | null;
}

/**
 * When each file of `folder` last changed, from one bounded `git log` (newest MAX_COMMITS commits, paths relative to
 * the folder) and `git status` (modified and untracked files count as newest). Null times outside git or without
 * commits; files older than the commits read have no time and count as oldest.
 */
export async function changeTimes(folder: string): Promise<ChangeTimes> {
  const prefix = await gitText(folder, ["rev-parse", "--show-prefix"]);
  if (prefix === null) return { times: null, warning: null };
  const hasCommit = await gitText(folder, ["rev-parse", "--verify", "--quiet", "HEAD"]);
  if (hasCommit === null || hasCommit === "") return { times: null, warning: null };
  const times = new Map<string, number>();
  try {
    // -z keeps names byte-exact; --no-renames skips rename detection, costly on large commits (a renamed file is
    // listed under its new name either way). Each commit reads "\0<time>\0\n<name>\0<name>\0...".
    const log = await gitBytes(
      folder,
      ["log", `--max-count=${MAX_COMMITS}`, "--format=%x00%ct", "--name-only", "--no-renames", "--relative", "-z"],
      { timeoutMs: GIT_TIMEOUT_MS },
    );
    const tokens = log.toString("utf8").split("\0");
    let time: number | null = null;
    let first = false;
    for (let i = 0; i < tokens.length; i++) {
      const t = tokens[i];
      if (t === "") {
        const next = tokens[i + 1];
        if (next !== undefined && /^\d+$/.test(next)) {
          time = Number(next);
          first = true;
          i++;
        }
        continue;
      }
      if (time === null) continue;
      const name = first && t.startsWith("\n") ? t.slice(1) : t;
      first = false;
      times.set(name, Math.max(times.get(name) ?? -Infinity, time));
    }
  } catch (err) {
    const slow = (err as { killed?: boolean }).killed === true;
    return {
      times: null,
      warning: slow
        ? `Reading the git history took longer than ${GIT_TIMEOUT_MS / 1000} s, so held-out files were chosen by path instead of by recency.`
        : "The git history could not be read, so held-out files were chosen by path instead of by recency.",
    };
  }
  try {
    // Status paths are relative to the repository root, whatever the folder. No optional locks: reading must not
    // take the index lock that a git command the user runs at the same time needs.
    const status = await gitBytes(folder, ["--no-optional-locks", "status", "--porcelain", "-z", "-uall", "--no-renames"], { timeoutMs: GIT_TIMEOUT_MS });
    for (const entry of status.toString("utf8").split("\0")) {
      if (entry.length < 4) continue;
      const repoPath = entry.slice(3);
      if (repoPath.startsWith(prefix)) times.set(repoPath.slice(prefix.length), Infinity);
    }
  } catch {
    // Without status, uncommitted edits keep their last commit's time: the order is still by recency.
  }
  return { times, warning: null };
}

/**
 * The order in which files are held out: newest change first when change times are known, ties (one commit, or
 * files older than the history read) and every file outside git in the order of a hash of the path.
 */
export function holdOutOrder(paths: readonly string[], times: ReadonlyMap<string, number> | null): string[] {
  const keyed = paths.map((p) => ({ p, t: times?.get(p) ?? -Infinity, h: hashUnit(`repotune-val:${p}`) }));
  keyed.sort((a, b) => (b.t !== a.t ? (b.t > a.t ? 1 : -1) : a.h !== b.h ? a.h - b.h : a.p < b.p ? -1 : a.p > b.p ? 1 : 0));
  return keyed.map((k) => k.p);
}

/**
 * Held-out files taken in `ordered` order until they hold `valFraction` of the characters (a proxy for tokens) and
 * at least MIN_HELD_OUT_FILES files, never all files, and skipping files that would cross MAX_HELD_OUT_SHARE.
 */
export function chooseHeldOut(
  ordered: readonly { path: string; chars: number }[],
  valFraction = DEFAULT_VAL_FRACTION,
): { train: string[]; val: string[] } {
  const n = ordered.length;
  if (n < 2) return { train: ordered.map((f) => f.path), val: [] };
  const total = ordered.reduce((s, f) => s + f.chars, 0);
  const target = valFraction * total;
  const minFiles = Math.min(MIN_HELD_OUT_FILES, n - 1);
  const val: string[] = [];
  let chars = 0;
  for (const f of ordered) {
    if (val.length >= n - 1 || (val.length >= minFiles && chars >= target)) break;
    if (chars + f.chars > MAX_HELD_OUT_SHARE * total) continue;
    val.push(f.path);
    chars += f.chars;
  }
  // Every file alone is over the share (two files, one larger): hold out the smallest, the first in order on ties.
  if (val.length === 0) val.push([...ordered].sort((a, b) => a.chars - b.chars)[0].path);
  const held = new Set(val);
  return { train: ordered.filter((f) => !held.has(f.path)).map((f) => f.path), val };
}

/** With a single file, its last examples (by position in the file) are held out instead. */
export function splitOneFile<T>(examples: readonly T[], startOf: (e: T) => number, valFraction = DEFAULT_VAL_FRACTION): { train: T[]; val: T[] } {
  const sorted = [...examples].sort((a, b) => startOf(a) - startOf(b));
  if (sorted.length < 2) return { train: sorted, val: [] };
  const nVal = Math.min(sorted.length - 1, Math.max(1, Math.round(sorted.length * valFraction)));
  return { train: sorted.slice(0, sorted.length - nVal), val: sorted.slice(sorted.length - nVal) };
}
