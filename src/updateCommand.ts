// "RepoTune: Update adapter from new commits": continues the workspace's active adapter on the code changed since the
// commit it was trained on (src/core/update.ts), through the same run controller, view and keep-or-reject gate as a
// fine-tune. Scripts and tests may pass the adapter's path.
import * as vscode from "vscode";
import type { Ctx } from "./ctx";
import type { RunController } from "./run";

export const updateAdapterCommand = (ctx: Ctx, run: RunController) => async (arg?: unknown) => {
  const parent = typeof arg === "string" ? arg : ctx.activeAdapter;
  if (!parent) {
    const choice = await vscode.window.showInformationMessage(
      "RepoTune: no adapter is active in this workspace, so there is nothing to update. Fine-tune on this repo first, or choose an adapter.",
      "Fine-tune", "Choose adapter",
    );
    if (choice === "Fine-tune") await vscode.commands.executeCommand("repotune.fineTune");
    if (choice === "Choose adapter") await vscode.commands.executeCommand("repotune.chooseAdapter");
    return null;
  }
  await vscode.commands.executeCommand("repotune.run.focus");
  return run.startUpdate(parent);
};
