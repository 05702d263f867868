// The one context object: everything a command, view or provider needs, built once in activate().
import * as vscode from "vscode";
import * as path from "node:path";
import { Config } from "./config";
import { EngineHost } from "./core/engineHost";
import { findPython } from "./core/python";
import { pythonSearch } from "./pythonEnvCommand";
import { ensureTinyModel } from "./core/tinyModel";
import { UserError, messageOf } from "./core/errors";
import type { TrainerSelftest } from "./protocol/trainer";
import { adapterMismatch } from "./core/adapterCheck";
import { repoIdFor } from "./core/runStore";

const ACTIVE_ADAPTER_KEY = "repotune.activeAdapter";

export class Ctx implements vscode.Disposable {
  readonly config = new Config();
  readonly log: vscode.LogOutputChannel;
  readonly engine: EngineHost;
  readonly enginePath: string;
  readonly trainerRoot: string;
  private readonly adapterChanged = new vscode.EventEmitter<string | null>();
  readonly onDidChangeAdapter = this.adapterChanged.event;
  private readonly engineChanged = new vscode.EventEmitter<void>();
  readonly onDidChangeEngine = this.engineChanged.event;

  constructor(readonly extension: vscode.ExtensionContext) {
    this.log = vscode.window.createOutputChannel("RepoTune", { log: true });
    this.enginePath = path.join(extension.extensionUri.fsPath, "dist", "engine.mjs");
    this.trainerRoot = path.join(extension.extensionUri.fsPath, "trainer");
    this.engine = new EngineHost({
      enginePath: this.enginePath,
      log: (line) => this.log.info(`[engine] ${line}`),
      onState: () => this.engineChanged.fire(),
    });
  }

  /** Whether an adapter fits a base model, by pair: checked once, in the background (hashing a model takes seconds). */
  private readonly fits = new Map<string, { problem: string | null | undefined }>();

  /**
   * Why `adapterPath` cannot serve with `modelPath` (set to another base model since it was trained), or null.
   * Undefined while not known yet: the first completions go ahead while the model is hashed. Said once per pair.
   */
  adapterProblem(adapterPath: string, modelPath: string): string | null | undefined {
    const key = `${adapterPath}\u0000${modelPath}`;
    let hit = this.fits.get(key);
    if (!hit) {
      const entry: { problem: string | null | undefined } = { problem: undefined };
      this.fits.set(key, (hit = entry));
      void adapterMismatch(adapterPath, modelPath).then(
        (problem) => {
          entry.problem = problem;
          if (problem === null) return;
          this.log.warn(`completions use the base model alone: ${problem}`);
          void vscode.window.showWarningMessage(`RepoTune: completions use the base model alone. ${problem}`);
        },
        () => this.fits.delete(key),
      );
    }
    return hit.problem;
  }

  /** The workspace's folders: all of a multi-root workspace, which is one dataset and one repository id. */
  get folderPaths(): string[] {
    return (vscode.workspace.workspaceFolders ?? []).map((f) => f.uri.fsPath);
  }

  /** The id this workspace's runs are stored under, or null without a folder. */
  async repoId(): Promise<string | null> {
    const folders = this.folderPaths;
    return folders.length ? repoIdFor(folders) : null;
  }

  get runsRoot(): string {
    return path.join(this.extension.globalStorageUri.fsPath, "runs");
  }

  get modelsDir(): string {
    return path.join(this.extension.globalStorageUri.fsPath, "models");
  }

  get activeAdapter(): string | null {
    return this.extension.workspaceState.get<string>(ACTIVE_ADAPTER_KEY) ?? null;
  }

  /**
   * Activates an adapter the user chose, if it fits the base model (src/core/adapterCheck.ts); else says why and
   * what to do, and changes nothing. False when refused.
   */
  async activateAdapter(adapterPath: string): Promise<boolean> {
    const why = await adapterMismatch(adapterPath, await this.modelPath()).catch((err: unknown) => messageOf(err));
    if (why !== null) {
      this.log.warn(`adapter not activated: ${why}`);
      void vscode.window.showErrorMessage(`RepoTune: ${why}`);
      return false;
    }
    await this.setActiveAdapter(adapterPath);
    return true;
  }

  async setActiveAdapter(adapterPath: string | null): Promise<void> {
    await this.extension.workspaceState.update(ACTIVE_ADAPTER_KEY, adapterPath ?? undefined);
    this.adapterChanged.fire(adapterPath);
  }

  /** The interpreter that trains: the configured one, else the first with PyTorch. Checked once per setting value. */
  python(): Promise<string> {
    return this.environment().then((e) => e.python);
  }

  /** The interpreter that trains and what its self-test saw (PyTorch, the device, its memory). Checked once per setting value. */
  environment(): Promise<{ python: string; selftest: TrainerSelftest }> {
    const key = this.config.pythonPath ?? "";
    if (this.env?.key !== key) {
      const value = findPython(this.config.pythonPath, this.trainerRoot, pythonSearch(this));
      const entry = { key, value };
      this.env = entry;
      value.catch(() => this.env === entry && (this.env = undefined));
    }
    return this.env.value;
  }

  /** Absolute path of the base model GGUF, generating the tiny model when the setting says "tiny". */
  async modelPath(): Promise<string> {
    const configured = this.config.modelPath;
    if (!configured) {
      throw new UserError(
        "No base model is set. Run 'RepoTune: Choose base model' to download one (Qwen2.5-Coder, sized for this machine), or set 'repotune.modelPath' to a GGUF file of a base code model with fill-in-the-middle support, or to 'tiny' to try RepoTune with a tiny generated model.",
        "repotune.modelPath",
      );
    }
    if (configured === "tiny") return this.memo("tiny", this.config.pythonPath ?? "", async () => ensureTinyModel(await this.python(), this.trainerRoot, this.modelsDir));
    return configured;
  }

  private env: { key: string; value: Promise<{ python: string; selftest: TrainerSelftest }> } | undefined;
  private readonly memos = new Map<string, { key: string; value: Promise<string> }>();

  /** Remembers a slow lookup (a Python self-test, generating the tiny model) until its input changes or it fails. */
  private memo(name: string, key: string, compute: () => Promise<string>): Promise<string> {
    const hit = this.memos.get(name);
    if (hit && hit.key === key) return hit.value;
    const value = compute();
    this.memos.set(name, { key, value });
    value.catch(() => this.memos.get(name)?.value === value && this.memos.delete(name));
    return value;
  }

  dispose(): void {
    void this.engine.dispose();
    this.adapterChanged.dispose();
    this.engineChanged.dispose();
    this.log.dispose();
  }
}
