// Which files of a folder RepoTune may learn from: what git would commit (tracked, plus untracked files that are
// not ignored), or, outside git, a walk that honours every .gitignore on the way down.
import { promises as fs, type Dirent } from "node:fs";
import * as path from "node:path";
import ignore, { type Ignore } from "ignore";
import { gitBytes, gitText } from "../git";


export interface Listing {
  /** Paths relative to the folder, with "/" separators, sorted. */
  paths: string[];
  /** How the list was made: git's view of the working tree, or a walk of the file system. */
  source: "git" | "walk";
  /** Entries that could not be used (names that are not UTF-8; in a walk also symlinks, unreadable folders, pipes
   * and other special files), counted by reason. */
  skipped: Record<string, number>;
}

/** Folders that hold tool state or installed dependencies, never the user's code; skipped outside git. */
const ALWAYS_SKIPPED_DIRS = new Set([".git", ".hg", ".svn", "node_modules"]);

/**
 * A name that is not UTF-8 (Latin-1 bytes, say) has no exact JavaScript string: decoded with replacement characters
 * it names no file, and the read fails as if the file were unreadable. Such entries are counted under their own
 * reason instead.
 */
const NAME_NOT_UTF8 = "name_not_utf8";
const utf8Name = new TextDecoder("utf-8", { fatal: true });

function nameOf(bytes: Uint8Array): string | null {
  try {
    return utf8Name.decode(bytes);
  } catch {
    return null;
  }
}

export async function listFiles(folder: string): Promise<Listing> {
  const fromGit = await gitListFiles(folder);
  if (fromGit) return { ...fromGit, source: "git" };
  return walk(folder);
}

/** The files git sees in `folder`, or null when the folder is not in a git work tree (or git is missing). */
async function gitListFiles(folder: string): Promise<Omit<Listing, "source"> | null> {
  let out: Buffer;
  try {
    if ((await gitText(folder, ["rev-parse", "--is-inside-work-tree"])) !== "true") return null;
    // -z keeps file names byte-exact (no quoting of unusual characters); paths come relative to `folder`.
    out = await gitBytes(folder, ["ls-files", "--cached", "--others", "--exclude-standard", "-z"]);
  } catch {
    return null;
  }
  const paths = new Set<string>();
  let notUtf8 = 0;
  for (let start = 0; start < out.length;) {
    let end = out.indexOf(0, start);
    if (end === -1) end = out.length;
    if (end > start) {
      const name = nameOf(out.subarray(start, end));
      if (name === null) notUtf8++;
      else paths.add(name);
    }
    start = end + 1;
  }
  return { paths: [...paths].sort(), skipped: notUtf8 ? { [NAME_NOT_UTF8]: notUtf8 } : {} };
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
    const entries: Array<{ name: string; entry: Dirent<Buffer> }> = [];
    try {
      for (const entry of await fs.readdir(abs, { withFileTypes: true, encoding: "buffer" })) {
        const name = nameOf(entry.name);
        if (name === null) skip(NAME_NOT_UTF8);
        else entries.push({ name, entry });
      }
    } catch {
      skip("unreadable");
      return;
    }
    const rules = [...inherited];
    if (entries.some((e) => e.name === ".gitignore" && e.entry.isFile())) {
      try {
        rules.push({ base: rel, ig: ignore().add(await fs.readFile(path.join(abs, ".gitignore"), "utf8")) });
      } catch {
        skip("unreadable");
      }
    }
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const { name, entry } of entries) {
      const child = rel ? `${rel}/${name}` : name;
      if (entry.isDirectory()) {
        if (ALWAYS_SKIPPED_DIRS.has(name) || isIgnored(rules, child, true)) continue;
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
