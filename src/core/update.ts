// "Update adapter": continue the active adapter on the code changed since the commit it was trained on, plus a replay
// sample of the rest, with the parent's settings (an adapter only continues at its own rank and scale), on the same
// base model (checked by hash), then the same held-out evaluation and keep-or-reject gate as a fresh fine-tune.
import * as path from "node:path";
import { UserError, messageOf } from "./errors";
import { fileIdentity, readManifest, type RunManifest } from "./runStore";
import { tune, MODEL_SETTING, type TuneOptions, type TuneResult } from "./tune";

export interface UpdateOptions extends TuneOptions {
  /** The adapter to continue: an adapter GGUF in a RepoTune run folder (with its manifest.json). */
  parentAdapter: string;
  /** Share of the unchanged files replayed in training (default 0.3, at least one file). */
  replayFraction?: number;
}

export async function updateAdapter(opts: UpdateOptions): Promise<TuneResult> {
  let parent: RunManifest;
  try {
    parent = await checkParent(opts.parentAdapter, opts.modelPath);
  } catch (err) {
    const message = messageOf(err);
    const action = err instanceof UserError ? err.setting : undefined;
    try {
      opts.onEvent({ type: "error", time: Date.now(), message, ...(action ? { action } : {}) });
    } catch {
      // A listener's bug must not hide the failure from the caller.
    }
    return {
      runId: "", runDir: "", status: "failed", adapterPath: null, manifestPath: null, summary: null, valLossBase: null, valLoss: null,
      error: message, evaluation: null, decision: null,
    };
  }
  const { rank, seqLen, alpha } = parent.settings;
  return tune({
    ...opts,
    settings: { ...opts.settings, rank, seqLen, alpha },
    update: { parentAdapter: opts.parentAdapter, parentRunId: parent.runId, sinceCommit: parent.gitCommit!, replayFraction: opts.replayFraction },
  });
}

/** The parent's manifest, when the parent can be continued on this model; a UserError saying what to do otherwise. */
async function checkParent(adapterPath: string, modelPath: string): Promise<RunManifest> {
  const manifestPath = path.join(path.dirname(adapterPath), "manifest.json");
  let m: RunManifest;
  try {
    m = await readManifest(manifestPath);
  } catch {
    throw new UserError(`The adapter ${adapterPath} has no readable RepoTune manifest beside it (${manifestPath}), so RepoTune cannot tell what it was trained on. Fine-tune from scratch instead.`);
  }
  if (m.adapter === null || path.resolve(path.dirname(manifestPath), m.adapter) !== path.resolve(adapterPath)) {
    throw new UserError(`The run folder of ${adapterPath} records no such adapter. Choose an adapter RepoTune trained, or fine-tune from scratch.`);
  }
  if (m.gitCommit === null) {
    throw new UserError(`The adapter ${path.basename(adapterPath)} was trained on a folder without a git commit, so there is no "since" to update from. Fine-tune from scratch instead.`);
  }
  let current;
  try {
    current = await fileIdentity(modelPath);
  } catch {
    throw new UserError(`The model file ${modelPath} does not exist or cannot be read. Set ${MODEL_SETTING} to the model the adapter was trained on (${m.baseModel.path}).`, MODEL_SETTING);
  }
  if (current.sha256 !== m.baseModel.sha256) {
    throw new UserError(
      `The adapter was trained on another base model (${m.baseModel.path}, SHA-256 ${m.baseModel.sha256.slice(0, 12)}), not on ${current.path} (SHA-256 ${current.sha256.slice(0, 12)}): ` +
        `an adapter only fits the weights it was trained on. Set ${MODEL_SETTING} back to that model, or fine-tune from scratch on this one.`,
      MODEL_SETTING,
    );
  }
  return m;
}
