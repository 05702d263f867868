// Which files of a folder RepoTune may learn from: what git would commit (tracked, plus untracked files that are
// not ignored), or, outside git, a walk that honours every .gitignore on the way down.
import { promises as fs } from "node:fs";
import * as path from "node:path";
import ignore, { type Ignore } from "ignore";
import { gitBytes, gitText } from "../git";


export interface Listing {
  /** Paths relative to the folder, with "/" separators, sorted. */
  paths: string[];
  /** How the list was made: git's view of the working tree, or a walk of the file system. */
  source: "git" | "walk";
  /** Entries the walk could not use (symlinks, unreadable folders, pipes and other special files), counted by reason. */
  skipped: Record<string, number>;
}

/** Folders that hold tool state or installed dependencies, never the user's code; skipped outside git. */
const ALWAYS_SKIPPED_DIRS = new Set([".git", ".hg", ".svn", "node_modules"]);

export async function listFiles(folder: string): Promise<Listing> {
  const fromGit = await gitListFiles(folder);
  if (fromGit) return { paths: fromGit, source: "git", skipped: {} };
  return walk(folder);
}

/** The files git sees in `folder`, or null when the folder is not in a git work tree (or git is missing). */
async function gitListFiles(folder: string): Promise<string[] | null> {
  try {
    if ((await gitText(folder, ["rev-parse", "--is-inside-work-tree"])) !== "true") return null;
    // -z keeps file names byte-exact (no quoting of unusual characters); paths come relative to `folder`.
    const out = await gitBytes(folder, ["ls-files", "--cached", "--others", "--exclude-standard", "-z"]);
    const paths = new Set(out.toString("utf8").split("\0").filter((p) => p.length > 0));
    return [...paths].sort();
  } catch {
    return null;
  }
}

interface Rules {
  /** Folder the .gitignore lives in, relative to the walk root ("" for the root). */
  base: string;
  ig: Ignore;
}

async function walk(root: string): Promise<Listing> {
  const paths: string[] = [];
  const skipped: Record<string, number> = {};
  const skip = (reason: string) => (skipped[reason] = (skipped[reason] ?? 0) + 1);

  // Symlinks are never followed, so a link loop cannot trap the walk, and a link cannot pull files from outside
  // the folder into training data (git does not follow them either).
  async function visit(rel: string, inherited: Rules[]): Promise<void> {
    const abs = path.join(root, rel);
    let entries;
    try {
      entries = await fs.readdir(abs, { withFileTypes: true });
    } catch {
      skip("unreadable");
      return;
    }
    const rules = [...inherited];
    if (entries.some((e) => e.name === ".gitignore" && e.isFile())) {
      try {
        rules.push({ base: rel, ig: ignore().add(await fs.readFile(path.join(abs, ".gitignore"), "utf8")) });
      } catch {
        skip("unreadable");
      }
    }
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const entry of entries) {
      const child = rel ? `${rel}/${entry.name}` : entry.name;
      if (entry.isDirectory()) {
        if (ALWAYS_SKIPPED_DIRS.has(entry.name) || isIgnored(rules, child, true)) continue;
        await visit(child, rules);
      } else if (isIgnored(rules, child, false)) {
        continue;
      } else if (entry.isSymbolicLink()) {
        skip("symlink");
      } else if (entry.isFile()) {
        paths.push(child);
      } else {
        // A named pipe would block a read forever; it and sockets or devices are counted, never opened.
        skip("not_a_file");
      }
    }
  }

  await visit("", []);
  paths.sort();
  return { paths, source: "walk", skipped };
}

/** Git semantics: deeper .gitignore files override shallower ones, and `!pattern` re-includes. */
function isIgnored(rules: Rules[], rel: string, isDir: boolean): boolean {
  let ignored = false;
  for (const { base, ig } of rules) {
    const local = base ? rel.slice(base.length + 1) : rel;
    const result = ig.test(isDir ? `${local}/` : local);
    if (result.ignored) ignored = true;
    else if (result.unignored) ignored = false;
  }
  return ignored;
}
