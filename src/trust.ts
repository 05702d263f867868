// What Restricted Mode (a folder the user has not trusted) turns off, and how RepoTune says so. Training runs a
// Python interpreter over every file of the workspace, so it waits for trust; completions from an adapter the user
// already chose run only the user's own model and engine, and keep working. package.json declares the same
// (capabilities.untrustedWorkspaces) so that VS Code tells the user before they open the folder.
import * as vscode from "vscode";

/** VS Code's "Workspaces: Manage Workspace Trust" command, the one place where a folder is trusted. */
export const MANAGE_TRUST_COMMAND = "workbench.trust.manage";
const MANAGE_TRUST = "Manage Workspace Trust";

/** The commands Restricted Mode turns off, with what each does in the user's words. */
export const TRUSTED_ONLY: Readonly<Record<string, string>> = {
  "repotune.fineTune": "Fine-tuning",
  "repotune.updateAdapter": "Updating an adapter",
  "repotune.resumeTraining": "Resuming a training run",
  "repotune.retryWithSuggestedSettings": "Retrying a run with the suggested settings",
};

export function restrictedModeMessage(action: string): string {
  return (
    `${action} is off in Restricted Mode: it runs Python over every file of this workspace, and this folder is not trusted. ` +
    `Completions from the adapter already in use keep working. To train, trust the folder: run "Workspaces: Manage Workspace Trust" ` +
    `from the Command Palette (or click "Restricted Mode" in the status bar) and choose Trust.`
  );
}

/** Tells the user (notification and log) why `action` does not run here and offers to trust the folder. */
export function refuseInRestrictedMode(action: string, log: vscode.LogOutputChannel): void {
  const message = restrictedModeMessage(action);
  log.warn(message);
  void vscode.window.showWarningMessage(`RepoTune: ${message}`, MANAGE_TRUST).then((choice) => {
    if (choice === MANAGE_TRUST) void vscode.commands.executeCommand(MANAGE_TRUST_COMMAND);
  });
}
