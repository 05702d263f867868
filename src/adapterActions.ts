// Commands behind the Run view's and the report's buttons: resume a stopped run, retry with the settings an
// out-of-memory error named, and the adapters list's delete, reveal and report. Registered through commands.ts.
import * as vscode from "vscode";
import { promises as fs } from "node:fs";
import * as path from "node:path";
import type { Ctx } from "./ctx";
import type { RunController } from "./run";
import { listAdapters } from "./core/runStore";
import { RunModel, adaptersChanged, canResume } from "./views/runModel";
import { RunPanel } from "./views/runPanel";
import type { SuggestedSettings } from "./protocol/webview";

type Factory = (ctx: Ctx, run: RunController) => (...args: unknown[]) => unknown;

/** Continues the shown run (or the run folder given) from its newest checkpoint. */
const resumeTraining: Factory = (ctx, run) => async (arg?: unknown) => {
  if (!canResume(run)) {
    void vscode.window.showWarningMessage("RepoTune: this version cannot resume a run yet. Fine-tune again to train from the start.");
    return null;
  }
  const runDir = typeof arg === "string" ? arg : RunModel.for(ctx, run).runSnapshot.runDir;
  if (!runDir) {
    void vscode.window.showInformationMessage("RepoTune: there is no stopped run to resume in this workspace.");
    return null;
  }
  await vscode.commands.executeCommand("repotune.run.focus");
  return run.resume(runDir);
};

/** The repotune.training settings that hold each suggested value (fit.py names trainer flags and the seqLen setting). */
const SUGGESTED_SETTING: Record<Exclude<keyof SuggestedSettings, "text">, string> = {
  seqLen: "training.seqLen",
  rank: "training.rank",
  batch: "training.batch",
  gradAccum: "training.gradAccum",
  gradCheckpoint: "training.gradCheckpoint",
  baseWeights: "training.baseWeights",
};

/**
 * Writes the settings the trainer's out-of-memory message named into repotune.training (where the user set them:
 * this workspace, else the user settings) and fine-tunes again. Values no setting holds yet are named, not lost.
 */
const retryWithSuggestedSettings: Factory = (ctx, run) => async () => {
  const suggestion = RunModel.for(ctx, run).runSnapshot.suggestion;
  if (!suggestion) {
    void vscode.window.showInformationMessage("RepoTune: the last run did not suggest other settings.");
    return;
  }
  const cfg = vscode.workspace.getConfiguration("repotune");
  const applied: string[] = [];
  const missing: string[] = [];
  for (const [field, key] of Object.entries(SUGGESTED_SETTING) as [keyof typeof SUGGESTED_SETTING, string][]) {
    const value = suggestion[field];
    if (value === undefined) continue;
    const inspected = cfg.inspect(key);
    const target = inspected?.workspaceValue !== undefined ? vscode.ConfigurationTarget.Workspace : vscode.ConfigurationTarget.Global;
    try {
      await cfg.update(key, value, target);
      applied.push(`repotune.${key} = ${value}`);
    } catch {
      // Not a registered setting in this version: the user can still pass it to the trainer by hand.
      missing.push(`${field} ${value}`);
    }
  }
  if (applied.length === 0) {
    void vscode.window.showWarningMessage(
      `RepoTune: the trainer suggests ${suggestion.text}, but this version has no setting for ${missing.join(", ")}. ` +
        "Lower repotune.training.seqLen or repotune.training.rank, or train on a machine with more memory.",
    );
    return;
  }
  const rest = missing.length ? ` No setting holds ${missing.join(", ")} yet.` : "";
  void vscode.window.showInformationMessage(`RepoTune: set ${applied.join(", ")} and started again.${rest}`);
  return vscode.commands.executeCommand("repotune.fineTune");
};

/** This workspace's adapter at `adapterPath`, or a reason it is not one RepoTune may delete. */
async function ownAdapter(ctx: Ctx, adapterPath: string): Promise<{ runId: string } | { refused: string }> {
  const repoId = await ctx.repoId();
  if (!repoId) return { refused: "Open the workspace the adapter was trained for first." };
  const repoDir = path.join(ctx.runsRoot, repoId);
  const resolved = path.resolve(adapterPath);
  const rel = path.relative(repoDir, resolved).split(path.sep);
  if (rel.length !== 2 || rel[0] === ".." || path.isAbsolute(rel[0]!) || rel[1] !== `adapter-${rel[0]}.gguf`) {
    return { refused: `${adapterPath} is not an adapter RepoTune trained for this workspace, so it is not deleted.` };
  }
  return { runId: rel[0]! };
}

async function pickAdapter(ctx: Ctx, title: string): Promise<string | undefined> {
  const repoId = await ctx.repoId();
  const adapters = repoId ? await listAdapters(ctx.runsRoot, repoId) : [];
  if (adapters.length === 0) {
    void vscode.window.showInformationMessage("RepoTune: no adapter has been trained for this workspace.");
    return undefined;
  }
  const pick = await vscode.window.showQuickPick(
    adapters.map((a) => ({
      label: `${a.adapterPath === ctx.activeAdapter ? "$(check) " : ""}${a.runId}`,
      description: path.basename(a.baseModelPath),
      adapterPath: a.adapterPath,
    })),
    { title },
  );
  return pick?.adapterPath;
}

/**
 * Deletes an adapter file of this workspace after asking; the active one only with a warning that completions
 * switch to the base model. The run's report, events and manifest stay.
 */
const deleteAdapter: Factory = (ctx) => async (arg?: unknown) => {
  const adapterPath = typeof arg === "string" ? arg : await pickAdapter(ctx, "RepoTune: delete which adapter?");
  if (!adapterPath) return false;
  const own = await ownAdapter(ctx, adapterPath);
  if ("refused" in own) {
    void vscode.window.showErrorMessage(`RepoTune: ${own.refused}`);
    return false;
  }
  const active = ctx.activeAdapter !== null && path.resolve(ctx.activeAdapter) === path.resolve(adapterPath);
  const detail = active
    ? "This adapter serves this workspace's completions now. After deleting it, completions come from the base model alone."
    : "The adapter file is deleted; the run's report stays.";
  const confirm = active ? "Delete and Use Base Model" : "Delete";
  const choice = await vscode.window.showWarningMessage(`Delete the adapter of run ${own.runId}?`, { modal: true, detail }, confirm);
  if (choice !== confirm) return false;
  if (active) await ctx.setActiveAdapter(null);
  await fs.rm(adapterPath, { force: true });
  ctx.log.info(`Deleted adapter ${adapterPath}.`);
  adaptersChanged.fire();
  return true;
};

/** Shows where an adapter file is: in the explorer or the OS file manager where possible, else its path to copy. */
const revealAdapter: Factory = (ctx) => async (arg?: unknown) => {
  const adapterPath = typeof arg === "string" ? arg : await pickAdapter(ctx, "RepoTune: reveal which adapter?");
  if (!adapterPath) return;
  const uri = vscode.Uri.file(adapterPath);
  if (vscode.workspace.getWorkspaceFolder(uri)) return vscode.commands.executeCommand("revealInExplorer", uri);
  // The OS file manager is only reachable from a local desktop window; a remote or browser window gets the path.
  if (vscode.env.uiKind === vscode.UIKind.Desktop && vscode.env.remoteName === undefined) {
    return vscode.commands.executeCommand("revealFileInOS", uri);
  }
  const choice = await vscode.window.showInformationMessage(`RepoTune: the adapter is ${adapterPath}`, "Copy Path");
  if (choice === "Copy Path") await vscode.env.clipboard.writeText(adapterPath);
};

/** The training report of a run folder (an adapter's run), or of the shown run. */
const openRunReport: Factory = (ctx, run) => (arg?: unknown) => RunPanel.show(ctx, run, typeof arg === "string" ? arg : undefined);

export const adapterCommands: Record<string, Factory> = {
  "repotune.resumeTraining": resumeTraining,
  "repotune.retryWithSuggestedSettings": retryWithSuggestedSettings,
  "repotune.deleteAdapter": deleteAdapter,
  "repotune.revealAdapter": revealAdapter,
  "repotune.openRunReport": openRunReport,
};
