// The data of an adapter update: the files changed since the parent adapter's commit, a replay sample of the other
// files (so the adapter does not forget what it learned), and held-out files taken from the changed ones, newest
// first, so the evaluation asks "does it complete the code written since".
import { gitBytes, gitText } from "../git";
import { UserError } from "../errors";
import { hashUnit } from "./random";
import { chooseHeldOut, holdOutOrder } from "./split";

export const DEFAULT_REPLAY_FRACTION = 0.3;

export interface UpdateOption {
  /** The commit the parent adapter was trained on (its manifest's gitCommit). */
  sinceCommit: string;
  /** Share of the unchanged files replayed in training (default DEFAULT_REPLAY_FRACTION, at least one file). */
  replayFraction?: number;
}

/**
 * Paths (relative to `folder`) changed since `commit`: committed since, modified in the work tree or index, and
 * untracked files not ignored. Throws a UserError when the commit is not in the repository.
 */
export async function changedSince(folder: string, commit: string): Promise<Set<string>> {
  const known = await gitText(folder, ["cat-file", "-e", `${commit}^{commit}`]);
  if (known === null) {
    throw new UserError(
      `The commit ${commit.slice(0, 12)} the adapter was trained on is not in this repository any more (history was rewritten, or this is another clone). ` +
        "Fine-tune from scratch (RepoTune: Fine-tune on this repo) instead of updating.",
    );
  }
  // Against the work tree, so uncommitted edits count; -z keeps names byte-exact; --relative: paths under `folder`.
  const diff = await gitBytes(folder, ["diff", "--name-only", "--no-renames", "--relative", "-z", commit, "--"]);
  const untracked = await gitBytes(folder, ["ls-files", "--others", "--exclude-standard", "-z"]);
  const out = new Set<string>();
  for (const buf of [diff, untracked]) for (const p of buf.toString("utf8").split("\0")) if (p !== "") out.add(p);
  return out;
}

export interface UpdateSplit {
  changed: string[];
  replay: string[];
  /** Held-out files in the order chosen (newest first); one file alone means: hold out its end. */
  heldOut: string[];
}

/**
 * Chooses the update's files among `usable` (paths with their sizes). Throws a UserError when no usable file changed.
 */
export function updateSplit(
  usable: readonly { path: string; chars: number }[],
  changedPaths: ReadonlySet<string>,
  times: ReadonlyMap<string, number> | null,
  opts: { seed: number; replayFraction?: number; valFraction: number },
): UpdateSplit {
  const changed = usable.filter((f) => changedPaths.has(f.path));
  if (changed.length === 0) {
    throw new UserError(
      changedPaths.size === 0
        ? "Nothing to update: no file changed since the commit the adapter was trained on. Commit or edit code, then update again."
        : `Nothing to update: the ${changedPaths.size} files changed since the adapter's commit are not files RepoTune learns from (binary, ignored, generated or too large).`,
    );
  }
  const fraction = opts.replayFraction ?? DEFAULT_REPLAY_FRACTION;
  const others = usable.filter((f) => !changedPaths.has(f.path));
  const count = others.length === 0 ? 0 : Math.min(others.length, Math.max(1, Math.round(fraction * others.length)));
  // A seeded hash order: the same repository, commit and seed always replay the same files.
  const replay = [...others]
    .map((f) => ({ p: f.path, h: hashUnit(`repotune-replay:${opts.seed}:${f.path}`) }))
    .sort((a, b) => a.h - b.h || (a.p < b.p ? -1 : 1))
    .slice(0, count)
    .map((x) => x.p);
  const byPath = new Map(changed.map((f) => [f.path, f]));
  const ordered = holdOutOrder(changed.map((f) => f.path), times).map((p) => byPath.get(p)!);
  const heldOut = changed.length === 1 ? [changed[0].path] : chooseHeldOut(ordered, opts.valFraction).val;
  return { changed: changed.map((f) => f.path), replay, heldOut };
}
