// Command handlers, each a small factory over the context: one concern each.
import * as vscode from "vscode";
import * as path from "node:path";
import type { Ctx } from "./ctx";
import { listAdapters, type AdapterEntry } from "./core/runStore";
import type { RunController } from "./run";
import { RunPanel } from "./views/runPanel";
import { adapterCommands } from "./adapterActions";
import { checkEnvironment, chooseModel } from "./models";
import { updateAdapterCommand } from "./updateCommand";
import { offerCudaBuild } from "./cudaBuild";
import { setupEnvironmentCommand } from "./pythonEnvCommand";
import { TRUSTED_ONLY, refuseInRestrictedMode } from "./trust";

type Factory = (ctx: Ctx, run: RunController) => (...args: unknown[]) => unknown;

const fineTune: Factory = (_ctx, run) => async () => {
  await vscode.commands.executeCommand("repotune.run.focus");
  return run.start();
};

const stopTraining: Factory = (_ctx, run) => () => run.stop();

const showRun: Factory = (ctx, run) => () => RunPanel.show(ctx, run);

const toggleCompletions: Factory = (ctx) => async () => {
  const on = !ctx.config.completionsEnabled;
  await ctx.config.setCompletionsEnabled(on);
  void vscode.window.setStatusBarMessage(`RepoTune completions ${on ? "on" : "off"}`, 2000);
};

const showLog: Factory = (ctx) => () => ctx.log.show();

/**
 * Picks the adapter that serves completions in this workspace: one of this repository's runs (newest first, with its
 * validation losses), or any adapter file. Takes effect at the next completion, without a reload. Scripts and tests
 * may pass the adapter's path.
 */
const chooseAdapter: Factory = (ctx) => async (arg?: unknown) => {
  if (typeof arg === "string") return ctx.activateAdapter(arg);
  const repoId = await ctx.repoId();
  const adapters = repoId ? await listAdapters(ctx.runsRoot, repoId) : [];
  type Item = vscode.QuickPickItem & { adapter?: AdapterEntry; action?: "base" | "browse" };
  const items: Item[] = adapters.map((a) => ({
    label: `${a.adapterPath === ctx.activeAdapter ? "$(check) " : ""}${a.runId}`,
    description: path.basename(a.baseModelPath),
    detail: a.valLoss !== null && a.valLossBase !== null ? `validation loss ${a.valLossBase.toFixed(3)} → ${a.valLoss.toFixed(3)}` : undefined,
    adapter: a,
  }));
  items.push(
    { label: "", kind: vscode.QuickPickItemKind.Separator },
    { label: "$(circle-slash) Base model only", description: ctx.activeAdapter === null ? "in use" : undefined, action: "base" },
    { label: "$(folder-opened) Browse for an adapter file…", action: "browse" },
  );
  const pick = await vscode.window.showQuickPick(items, {
    title: "RepoTune: adapter for this workspace",
    placeHolder: adapters.length ? "Adapters trained on this repository, newest first" : "No adapter trained on this repository yet",
  });
  if (!pick) return;
  if (pick.adapter) return ctx.activateAdapter(pick.adapter.adapterPath);
  if (pick.action === "base") return ctx.setActiveAdapter(null);
  if (pick.action === "browse") {
    const files = await vscode.window.showOpenDialog({ canSelectMany: false, filters: { "LoRA adapter (GGUF)": ["gguf"] }, openLabel: "Use adapter" });
    if (files?.[0]) return ctx.activateAdapter(files[0].fsPath);
  }
};

const useBaseModel: Factory = (ctx) => () => ctx.setActiveAdapter(null);

/** What the status bar item offers when clicked. */
const quickActions: Factory = (ctx) => async () => {
  const on = ctx.config.completionsEnabled;
  const actions: (vscode.QuickPickItem & { command: string })[] = [
    { label: on ? "$(circle-slash) Turn inline completions off" : "$(sparkle) Turn inline completions on", command: "repotune.toggleCompletions" },
    { label: "$(layers) Choose adapter…", description: ctx.activeAdapter ? path.basename(ctx.activeAdapter) : "base model only", command: "repotune.chooseAdapter" },
    { label: "$(server-process) Choose base model…", description: ctx.config.modelPath ? path.basename(ctx.config.modelPath) : "none set", command: "repotune.chooseModel" },
    { label: "$(graph-line) Show training run", command: "repotune.showRun" },
    { label: "$(sparkle) Fine-tune on this repo", command: "repotune.fineTune" },
    { label: "$(output) Show log", command: "repotune.showLog" },
  ];
  const pick = await vscode.window.showQuickPick(actions, { title: "RepoTune" });
  if (pick) await vscode.commands.executeCommand(pick.command);
};

/**
 * A command that trains, refused in Restricted Mode before it reads a setting or starts a process. Its menus are
 * already disabled there (package.json `enablement`), but scripts, keybindings and the webviews run commands directly.
 */
const trustedOnly = (action: string, make: Factory): Factory => (ctx, run) => {
  const handler = make(ctx, run);
  return (...args) => {
    if (vscode.workspace.isTrusted) return handler(...args);
    refuseInRestrictedMode(action, ctx.log);
    return null;
  };
};

const allCommands: Record<string, Factory> = {
  "repotune.fineTune": fineTune,
  "repotune.stopTraining": stopTraining,
  "repotune.showRun": showRun,
  "repotune.toggleCompletions": toggleCompletions,
  "repotune.showLog": showLog,
  "repotune.chooseAdapter": chooseAdapter,
  "repotune.useBaseModel": useBaseModel,
  "repotune.chooseModel": (ctx) => (arg?: unknown) => chooseModel(ctx, arg),
  "repotune.checkEnvironment": (ctx) => () => checkEnvironment(ctx),
  "repotune.quickActions": quickActions,
  "repotune.setupEnvironment": (ctx) => (arg?: unknown) => setupEnvironmentCommand(ctx, arg),
  "repotune.downloadCudaBuild": (ctx) => () => offerCudaBuild(ctx, { ask: false }),
  "repotune.updateAdapter": updateAdapterCommand,
  ...adapterCommands,
};

export const commands: Record<string, Factory> = Object.fromEntries(
  Object.entries(allCommands).map(([id, make]) => [id, id in TRUSTED_ONLY ? trustedOnly(TRUSTED_ONLY[id], make) : make]),
);
