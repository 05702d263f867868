// Which files are held out for validation. The split hashes each file's path and nothing else, so a file stays on
// the same side across runs and seeds, and validation losses of two runs of one repository are comparable.
import { hashUnit } from "./random";

export const DEFAULT_VAL_FRACTION = 0.1;

export function splitFiles(paths: readonly string[], valFraction = DEFAULT_VAL_FRACTION): { train: string[]; val: string[] } {
  if (paths.length < 2) return { train: [...paths], val: [] };
  const scored = paths.map((p) => ({ p, u: hashUnit(`repotune-val:${p}`) })).sort((a, b) => a.u - b.u);
  // At least one file on each side: a validation loss needs held-out code, and training needs the rest.
  const nVal = Math.min(paths.length - 1, Math.max(1, scored.filter((s) => s.u < valFraction).length));
  const val = new Set(scored.slice(0, nVal).map((s) => s.p));
  return { train: paths.filter((p) => !val.has(p)), val: paths.filter((p) => val.has(p)) };
}

/** With a single file, its last examples (by position in the file) are held out instead. */
export function splitOneFile<T extends { start: number }>(examples: readonly T[], valFraction = DEFAULT_VAL_FRACTION): { train: T[]; val: T[] } {
  const sorted = [...examples].sort((a, b) => a.start - b.start);
  if (sorted.length < 2) return { train: sorted, val: [] };
  const nVal = Math.min(sorted.length - 1, Math.max(1, Math.round(sorted.length * valFraction)));
  return { train: sorted.slice(0, sorted.length - nVal), val: sorted.slice(sorted.length - nVal) };
}
