// "RepoTune: Set up trainer environment": a virtual environment in global storage with the PyTorch build for this
// machine's GPU and NumPy (src/core/pythonEnv.ts does the work), behind a progress notification that can be
// cancelled; on success it becomes repotune.pythonPath. Also the Python extension's interpreter, as a place to look.
import * as vscode from "vscode";
import * as path from "node:path";
import type { Ctx } from "./ctx";
import { ENV_DIR_NAME, EnvSetupError, acceleratorOf, deviceWords, managedPython, setupEnvironment, type Accelerator, type SetupErrorCode, type TorchBuild } from "./core/pythonEnv";
import { PYTHON_SETTING, interpreterFromPythonExtension, type PythonSearch } from "./core/python";
import { messageOf } from "./core/errors";
import type { TrainerSelftest } from "./protocol/trainer";

export const SETUP_COMMAND = "repotune.setupEnvironment";
export const SETUP_ACTION = "Set Up Trainer Environment";

export type SetupOutcome =
  | { ok: true; python: string; selftest: TrainerSelftest; accelerator: Accelerator; build: TorchBuild; installer: "uv" | "pip" }
  | { ok: false; code: SetupErrorCode | "busy"; message: string; actions: string[] };

/**
 * The interpreter ms-python.python has selected for the workspace, when that extension is installed and the workspace
 * is trusted; else undefined.
 */
export async function pythonExtensionInterpreter(): Promise<string | undefined> {
  // In Restricted Mode its choice may be the untrusted repository's own .venv: running that would run its code.
  if (!vscode.workspace.isTrusted) return undefined;
  const extension = vscode.extensions.getExtension("ms-python.python");
  if (!extension) return undefined;
  try {
    const api: unknown = extension.isActive ? extension.exports : await extension.activate();
    return await interpreterFromPythonExtension(api, vscode.workspace.workspaceFolders?.[0]?.uri);
  } catch {
    // A Python extension that fails to activate is no reason to stop looking elsewhere.
    return undefined;
  }
}

/** Where findPython looks after an unset repotune.pythonPath: RepoTune's own environment, then the Python extension's. */
export function pythonSearch(ctx: Ctx): PythonSearch {
  return { managed: managedPython(ctx.extension.globalStorageUri.fsPath), fromExtension: pythonExtensionInterpreter };
}

let running: Promise<SetupOutcome> | null = null;

/**
 * The command. Scripts and tests may pass `{ signal }` (an AbortSignal) to cancel it as the notification's Cancel
 * button does. Returns what happened; never throws.
 */
export function setupEnvironmentCommand(ctx: Ctx, arg?: unknown): Promise<SetupOutcome> {
  if (running) {
    void vscode.window.showInformationMessage("RepoTune: the trainer environment is already being set up.");
    return Promise.resolve({ ok: false, code: "busy", message: "The trainer environment is already being set up.", actions: [] });
  }
  const signal = (arg as { signal?: unknown } | undefined)?.signal;
  running = setUp(ctx, signal instanceof AbortSignal ? signal : undefined).finally(() => (running = null));
  return running;
}

async function setUp(ctx: Ctx, external: AbortSignal | undefined): Promise<SetupOutcome> {
  const cfg = vscode.workspace.getConfiguration("repotune");
  const storageDir = ctx.extension.globalStorageUri.fsPath;
  const text = (key: string) => cfg.get<string>(key)?.trim() || undefined;
  // The configured interpreter and the Python extension's make good bases for the new environment: the user chose
  // them. Never RepoTune's own environment, which the new one replaces.
  const ownEnv = path.join(storageDir, ENV_DIR_NAME);
  const bases = [text("pythonPath"), await pythonExtensionInterpreter()]
    .filter((p): p is string => !!p && !path.resolve(p).startsWith(ownEnv));
  ctx.log.info("setting up the trainer environment");
  return vscode.window.withProgress(
    { location: vscode.ProgressLocation.Notification, title: "RepoTune: setting up the trainer environment", cancellable: true },
    async (progress, token) => {
      const abort = new AbortController();
      token.onCancellationRequested(() => abort.abort());
      if (external?.aborted) abort.abort();
      external?.addEventListener("abort", () => abort.abort(), { once: true });
      let reported = 0;
      try {
        const result = await setupEnvironment({
          storageDir,
          trainerRoot: ctx.trainerRoot,
          basePythons: bases,
          indexUrl: text("python.indexUrl"),
          torchIndexUrl: text("python.torchIndexUrl"),
          signal: abort.signal,
          log: (line) => ctx.log.info(`[setup] ${line}`),
          onProgress: (fraction, message) => {
            const pct = Math.round(100 * fraction);
            progress.report({ increment: Math.max(0, pct - reported), message });
            reported = Math.max(reported, pct);
          },
        });
        // Written only now: a cancelled or failed setup leaves the interpreter in use as it was.
        await cfg.update("pythonPath", result.python, vscode.ConfigurationTarget.Global);
        const t = result.selftest;
        const message = `The trainer environment is ready: PyTorch ${t.torch} on ${deviceWords(t)}. ${PYTHON_SETTING} is now ${result.python}.`;
        ctx.log.info(message);
        void vscode.window.showInformationMessage(`RepoTune: ${message}`);
        return { ok: true, python: result.python, selftest: t, accelerator: acceleratorOf(t), build: result.build, installer: result.installer };
      } catch (err) {
        const e = err instanceof EnvSetupError ? err : new EnvSetupError("install_failed", `The trainer environment could not be set up: ${messageOf(err)}`);
        if (e.code === "cancelled") {
          ctx.log.info(e.message);
          void vscode.window.showInformationMessage(`RepoTune: ${e.message}`);
          return { ok: false, code: e.code, message: e.message, actions: [] };
        }
        ctx.log.error(e.message);
        const actions = ["Open Log", "Retry"];
        void vscode.window.showErrorMessage(`RepoTune: ${e.message}`, ...actions).then((choice) => {
          if (choice === "Open Log") ctx.log.show(true);
          if (choice === "Retry") void vscode.commands.executeCommand(SETUP_COMMAND);
        });
        return { ok: false, code: e.code, message: e.message, actions };
      }
    },
  );
}
