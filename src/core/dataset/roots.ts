// The folders a dataset learns from. A multi-root workspace gives several; each is selected with its own git view,
// .gitignore and .repotuneignore, and its files are named `<folder name>/<path in the folder>` everywhere a path
// appears (prompt headers, examples.jsonl, report.json, files.json), so that two folders' `src/index.ts` stay
// apart. A single folder keeps plain relative paths, as before multi-root existed: its datasets and prompts are
// unchanged.
import * as path from "node:path";

export interface DatasetRoot {
  /** Absolute folder. */
  folder: string;
  /** What its files' paths start with ("" for a single folder, else `<name>/`). */
  prefix: string;
}

/**
 * The roots of `folder` (one folder or several), in the order given, the same folder listed twice taken once. A
 * root's name is its folder's base name; two folders of the same name get "-2", "-3"... in order.
 */
export function datasetRoots(folder: string | readonly string[]): DatasetRoot[] {
  const folders = [...new Set((typeof folder === "string" ? [folder] : folder).map((f) => path.resolve(f)))];
  if (folders.length === 1) return [{ folder: folders[0], prefix: "" }];
  const taken = new Set<string>();
  return folders.map((f) => {
    const base = path.basename(f) || "root";
    let name = base;
    for (let n = 2; taken.has(name); n++) name = `${base}-${n}`;
    taken.add(name);
    return { folder: f, prefix: `${name}/` };
  });
}

/** The root a dataset path belongs to and the path within that root's folder; null for a path of no root. */
export function rootOf(roots: readonly DatasetRoot[], datasetPath: string): { root: DatasetRoot; rel: string } | null {
  for (const root of roots) if (datasetPath.startsWith(root.prefix)) return { root, rel: datasetPath.slice(root.prefix.length) };
  return null;
}

/**
 * The dataset path of a file (absolute path) of one of the roots: what a completion prompt's file header must say
 * for the prompt to be the one the adapter trained on. Null for a file outside every root.
 */
export function datasetPathOf(roots: readonly DatasetRoot[], absFile: string): { root: DatasetRoot; path: string } | null {
  const file = path.resolve(absFile);
  // The deepest root first: a folder nested in another belongs to its own root.
  for (const root of [...roots].sort((a, b) => b.folder.length - a.folder.length)) {
    const rel = path.relative(root.folder, file);
    if (rel !== "" && !rel.startsWith("..") && !path.isAbsolute(rel)) return { root, path: root.prefix + rel.split(path.sep).join("/") };
  }
  return null;
}
