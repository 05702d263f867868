// "RepoTune: Choose base model": a model from RepoTune's list (downloaded once into global storage, for every
// workspace, with a progress notification that can be cancelled and a download that resumes where it stopped),
// the tiny built-in model, or a GGUF file of the user's own (checked before it is used). The choice is
// repotune.modelPath, a machine setting. And "Check trainer environment": the Python, PyTorch and device that train.
import * as vscode from "vscode";
import * as os from "node:os";
import * as path from "node:path";
import { promises as fs } from "node:fs";
import type { Ctx } from "./ctx";
import { CATALOG, defaultModelFor, serveBytes, type CatalogModel } from "./core/models/catalog";
import { DownloadError, downloadModel } from "./core/models/download";
import { ModelCheckError, validateModel } from "./core/models/validate";
import { formatBytes } from "./core/format";
import { messageOf } from "./core/errors";
import type { TrainerSelftest } from "./protocol/trainer";
import { PYTHON_SETTING, PythonEnvError, type PythonProblem } from "./core/python";
import { ACCELERATOR_WORDS, acceleratorOf, describeDevice, detectDevice, torchBuildMismatch, type Accelerator } from "./core/pythonEnv";
import { SETUP_ACTION, SETUP_COMMAND } from "./pythonEnvCommand";

/** The device the trainer would use and its memory, when a Python with PyTorch is there to say; else this machine. */
async function deviceMemory(ctx: Ctx): Promise<{ device: string; bytes: number; name: string }> {
  const env = await ctx.environment().catch(() => null);
  const t = env?.selftest;
  if (t?.device && t.memory_total) return { device: t.device, bytes: t.memory_total, name: t.device_name ?? t.device };
  return { device: "cpu", bytes: os.totalmem(), name: "this computer (no PyTorch found yet)" };
}

/** The model RepoTune suggests: the biggest that trains in the GPU's memory; the smallest on a CPU (days otherwise). */
export function recommendedModel(device: string, bytes: number): CatalogModel {
  return device === "cpu" ? defaultModelFor(0) : defaultModelFor(bytes);
}

type Item = vscode.QuickPickItem & { model?: CatalogModel; action?: "tiny" | "file" };

export async function chooseModel(ctx: Ctx, arg?: unknown): Promise<string | undefined> {
  // Scripts and tests may name a catalog model by id.
  if (typeof arg === "string") {
    const model = CATALOG.find((m) => m.id === arg);
    if (!model) throw new Error(`There is no model "${arg}" in RepoTune's list (${CATALOG.map((m) => m.id).join(", ")}).`);
    return useCatalogModel(ctx, model);
  }
  const device = await deviceMemory(ctx);
  const recommended = recommendedModel(device.device, device.bytes);
  const downloaded = new Set(await fs.readdir(ctx.modelsDir).catch(() => [] as string[]));
  const items: Item[] = CATALOG.map((m) => ({
    label: `${m.id === recommended.id ? "$(star-full) " : ""}${m.displayName}`,
    description: `${formatBytes(m.approxBytes)} · ${m.licence}${downloaded.has(m.fileName) ? " · downloaded" : ""}${m.id === recommended.id ? " · recommended" : ""}`,
    detail: `Needs about ${formatBytes(m.trainBytes)} to train and ${formatBytes(serveBytes(m))} to serve completions` +
      (m.trainBytes > 0.9 * device.bytes && device.device !== "cpu" ? ` — more than ${device.name} has (${formatBytes(device.bytes)}): it trains with smaller settings, slowly` : ""),
    model: m,
  }));
  items.push(
    { label: "", kind: vscode.QuickPickItemKind.Separator },
    { label: "$(folder-opened) Use a GGUF file on this computer…", action: "file" },
    { label: "$(beaker) Tiny built-in model", description: "for trying RepoTune out: it learns, but completes nothing useful", action: "tiny" },
  );
  const pick = await vscode.window.showQuickPick(items, {
    title: "RepoTune: base model",
    placeHolder: `Base code models with fill-in-the-middle support, for ${device.name} (${formatBytes(device.bytes)})`,
    matchOnDescription: true,
  });
  if (!pick) return undefined;
  if (pick.model) return useCatalogModel(ctx, pick.model);
  if (pick.action === "tiny") return setModel(ctx, "tiny");
  const files = await vscode.window.showOpenDialog({ canSelectMany: false, filters: { "GGUF model": ["gguf"] }, openLabel: "Use model" });
  return files?.[0] ? useOwnModel(ctx, files[0].fsPath) : undefined;
}

/** A file of the user's: checked from its header (architecture, FIM tokens, weight types) before it is set. */
export async function useOwnModel(ctx: Ctx, file: string): Promise<string | undefined> {
  try {
    const checked = await validateModel(file);
    ctx.log.info(`model ${file}: ${checked.arch}, ${checked.family} prompts, ${checked.weightTypes.join("/")}, ${formatBytes(checked.fileBytes)}`);
  } catch (err) {
    const message = err instanceof ModelCheckError ? err.message : `The model file could not be checked: ${messageOf(err)}`;
    ctx.log.warn(`model not used: ${message}`);
    void vscode.window.showErrorMessage(`RepoTune: ${message}`);
    return undefined;
  }
  return setModel(ctx, file);
}

async function useCatalogModel(ctx: Ctx, model: CatalogModel): Promise<string | undefined> {
  const target = path.join(ctx.modelsDir, model.fileName);
  const file = await vscode.window.withProgress(
    { location: vscode.ProgressLocation.Notification, title: `RepoTune: downloading ${model.displayName}`, cancellable: true },
    async (progress, token) => {
      const abort = new AbortController();
      token.onCancellationRequested(() => abort.abort());
      let reported = 0;
      try {
        const result = await downloadModel({
          uri: model.uri, dir: ctx.modelsDir, fileName: model.fileName, sha256: model.sha256, signal: abort.signal,
          endpoint: vscode.workspace.getConfiguration("repotune").get<string>("models.endpoint")?.trim() || undefined,
          onProgress: (p) => {
            const total = p.totalBytes ?? model.approxBytes;
            const pct = Math.min(100, (100 * p.receivedBytes) / total);
            progress.report({
              increment: pct - reported,
              message: `${formatBytes(p.receivedBytes)} of ${formatBytes(total)}${p.resumedFrom > 0 ? ` (resumed at ${formatBytes(p.resumedFrom)})` : ""}`,
            });
            reported = pct;
          },
        });
        ctx.log.info(result.existing
          ? `model ${target} is already downloaded`
          : `downloaded ${model.displayName} to ${target} (${formatBytes(result.bytes)}${result.resumedFrom ? `, resumed at ${formatBytes(result.resumedFrom)}` : ""})`);
        return result.path;
      } catch (err) {
        const cancelled = err instanceof DownloadError && err.code === "cancelled";
        const message = cancelled
          ? `The download of ${model.displayName} was cancelled; choosing it again continues where it stopped.`
          : `${model.displayName} could not be downloaded: ${messageOf(err)}`;
        ctx.log.warn(message);
        if (cancelled) void vscode.window.showInformationMessage(`RepoTune: ${message}`);
        else void offerDownloadFix(ctx, model, err, message);
        return undefined;
      }
    },
  );
  return file ? setModel(ctx, file) : undefined;
}

/** A failed download says what happened and offers the fix for it: space, another try or a mirror, another model. */
async function offerDownloadFix(ctx: Ctx, model: CatalogModel, err: unknown, message: string): Promise<void> {
  const code = err instanceof DownloadError ? err.code : null;
  const actions = code === "disk"
    ? ["Open Models Folder", "Choose Another Model"]
    : code === "network" || code === "http" || code === "incomplete"
      ? ["Retry", "Use a Mirror", "Choose Another Model"]
      : ["Retry", "Show Log"];
  const choice = await vscode.window.showErrorMessage(`RepoTune: ${message}`, ...actions);
  if (choice === "Retry") await useCatalogModel(ctx, model);
  if (choice === "Choose Another Model") await vscode.commands.executeCommand("repotune.chooseModel");
  if (choice === "Open Models Folder") await vscode.commands.executeCommand("revealFileInOS", vscode.Uri.file(ctx.modelsDir));
  if (choice === "Use a Mirror") await vscode.commands.executeCommand("workbench.action.openSettings", "repotune.models.endpoint");
  if (choice === "Show Log") ctx.log.show(true);
}

async function setModel(ctx: Ctx, value: string): Promise<string> {
  // A machine setting: written to the user settings of this machine (a workspace cannot choose what runs here).
  await vscode.workspace.getConfiguration("repotune").update("modelPath", value, vscode.ConfigurationTarget.Global);
  void vscode.window.showInformationMessage(`RepoTune: base model set to ${value === "tiny" ? "the tiny built-in model" : path.basename(value)}.`);
  return value;
}

export type EnvironmentReport =
  | (TrainerSelftest & { ok: true; interpreter: string; accelerator: Accelerator; warning: string | null })
  | { ok: false; problem: PythonProblem | "unknown"; message: string; actions: string[] };

/**
 * "RepoTune: Check trainer environment": which Python trains, with which PyTorch, on which device and how much memory;
 * or what is missing, with the fix as a button. Returns the report (for scripts and tests): the self-test when one
 * passed, with a warning when the PyTorch build cannot use the GPU this machine has.
 */
export async function checkEnvironment(ctx: Ctx): Promise<EnvironmentReport> {
  try {
    const [{ python, selftest: t }, device] = await vscode.window.withProgress(
      { location: vscode.ProgressLocation.Notification, title: "RepoTune: checking the trainer environment…" },
      () => Promise.all([ctx.environment(), detectDevice()]),
    );
    const accelerator = acceleratorOf(t);
    const warning = torchBuildMismatch(device, t);
    const memory = t.memory_total ? ` with ${formatBytes(t.memory_total)}${t.memory_free ? ` (${formatBytes(t.memory_free)} free)` : ""}` : "";
    const where = t.device !== "cpu"
      ? `on ${t.device_name ?? t.device} (${ACCELERATOR_WORDS[accelerator]})${memory}`
      : warning
        ? `on the CPU${memory}`
        : `on the CPU${memory}: no GPU was found, so training is slow; the smallest model (Qwen2.5-Coder 0.5B) suits it`;
    const message = `${python} trains with PyTorch ${t.torch} and NumPy ${t.numpy}, ${where}.`;
    ctx.log.info(`trainer environment: ${message} Machine: ${describeDevice(device)}.`);
    if (warning) {
      ctx.log.warn(`trainer environment: ${warning}`);
      void vscode.window.showWarningMessage(`RepoTune: ${warning}`, SETUP_ACTION).then((c) => {
        if (c) void vscode.commands.executeCommand(SETUP_COMMAND);
      });
    } else {
      void vscode.window.showInformationMessage(`RepoTune: ${message}`);
    }
    return { ...t, ok: true, interpreter: python, accelerator, warning };
  } catch (err) {
    const message = messageOf(err);
    ctx.log.warn(`trainer environment: ${message}`);
    const problem = err instanceof PythonEnvError ? err.problem : "unknown";
    // No Python, no PyTorch, a broken PyTorch: RepoTune can install one itself; or the user points at another.
    const actions = [SETUP_ACTION, "Open Settings"];
    void vscode.window.showErrorMessage(`RepoTune: ${message}`, ...actions).then((c) => {
      if (c === SETUP_ACTION) void vscode.commands.executeCommand(SETUP_COMMAND);
      if (c === "Open Settings") void vscode.commands.executeCommand("workbench.action.openSettings", PYTHON_SETTING);
    });
    return { ok: false, problem, message, actions };
  }
}
