// Command handlers, each a small factory over the context: one concern each.
import * as vscode from "vscode";
import type { Ctx } from "./ctx";
import type { RunController } from "./run";
import { RunPanel } from "./views/runPanel";

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

export const commands: Record<string, Factory> = {
  "repotune.fineTune": fineTune,
  "repotune.stopTraining": stopTraining,
  "repotune.showRun": showRun,
  "repotune.toggleCompletions": toggleCompletions,
  "repotune.showLog": showLog,
};
