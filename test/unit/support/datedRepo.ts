// Git repositories whose commits have controlled dates, for the tests of the held-out split by recency.
import { execFileSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import { rng } from "../../../src/core/dataset/random";
import { writeFiles } from "./pipeline";

/** Distinct code for file `seed`: its own identifiers, so no two files are near duplicates. */
export function code(seed: number, lines = 30): string {
  const r = rng(seed);
  // Names spelled in letters: code of digit-heavy names would be left out as data, not learned from.
  const letters = (n: number) => [...String(n)].map((d) => "abcdefghij"[Number(d)]).join("");
  const w = () => `v${letters(seed)}_${letters(r.int(0, 300))}`;
  return Array.from({ length: lines }, () => `let ${w()} = ${w()} + ${r.int(0, 99)};`).join("\n") + "\n";
}

/** git with a fixed identity and, for commits, a fixed date (both author and committer). */
export function gitAt(cwd: string, date: string | null, ...args: string[]): string {
  const env = { ...process.env, ...(date ? { GIT_AUTHOR_DATE: date, GIT_COMMITTER_DATE: date } : {}) };
  return execFileSync("git", ["-c", "user.name=RepoTune Test", "-c", "user.email=test@repotune.invalid", ...args], { cwd, env, encoding: "utf8" });
}

export function day(n: number): string {
  return new Date(Date.UTC(2024, 0, 1) + n * 86_400_000).toISOString();
}

/**
 * A git repository in which file i (in the order given) is committed on its own, on day `firstDay` + i. Files in
 * `first` (ignore files, and what they leave out) are committed the day before, all at once.
 */
export function datedRepo(root: string, files: Record<string, string>, firstDay = 0, first: Record<string, string> = {}): string {
  mkdirSync(root, { recursive: true });
  gitAt(root, null, "init", "-q", "-b", "main");
  if (Object.keys(first).length > 0) {
    writeFiles(root, first);
    gitAt(root, null, "add", "-A");
    gitAt(root, day(firstDay - 1), "commit", "-q", "-m", "first");
  }
  Object.entries(files).forEach(([rel, text], i) => {
    writeFiles(root, { [rel]: text });
    gitAt(root, null, "add", rel);
    gitAt(root, day(firstDay + i), "commit", "-q", "-m", `add ${rel}`);
  });
  return root;
}
