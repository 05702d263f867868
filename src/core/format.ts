// How RepoTune writes numbers for people, in the CLI, in messages and in the webviews (pure: bundled for all three).

/** A byte count in binary units (1 KB = 1024 bytes, as VS Code shows file sizes): "1 MB", "373 MB", "1.5 GB". */
export function formatBytes(n: number): string {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  for (; n >= 1024 && i < units.length - 1; i++) n /= 1024;
  return `${Number.isInteger(n) || n >= 100 ? Math.round(n) : n.toFixed(1)} ${units[i]}`;
}

/** Files skipped by reason, for people: "binary 2, too large 1", or "none". */
export function describeSkipped(skipped: Record<string, number>): string {
  const entries = Object.entries(skipped).filter(([, n]) => n > 0);
  return entries.length ? entries.map(([reason, n]) => `${reason.replace(/_/g, " ")} ${n}`).join(", ") : "none";
}
