// The one context object: everything a command, view or provider needs, built once in activate().
import * as vscode from "vscode";
import * as path from "node:path";
import { Config } from "./config";
import { EngineHost } from "./core/engineHost";
import { findPython } from "./core/python";
import { ensureTinyModel } from "./core/tinyModel";
import { UserError } from "./core/errors";

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

  get runsRoot(): string {
    return path.join(this.extension.globalStorageUri.fsPath, "runs");
  }

  get modelsDir(): string {
    return path.join(this.extension.globalStorageUri.fsPath, "models");
  }

  get activeAdapter(): string | null {
    return this.extension.workspaceState.get<string>(ACTIVE_ADAPTER_KEY) ?? null;
  }

  async setActiveAdapter(adapterPath: string | null): Promise<void> {
    await this.extension.workspaceState.update(ACTIVE_ADAPTER_KEY, adapterPath ?? undefined);
    this.adapterChanged.fire(adapterPath);
  }

  /** The interpreter that trains: the configured one, else the first with PyTorch. Checked once per setting value. */
  python(): Promise<string> {
    return this.memo("python", this.config.pythonPath ?? "", async () => (await findPython(this.config.pythonPath, this.trainerRoot)).python);
  }

  /** Absolute path of the base model GGUF, generating the tiny model when the setting says "tiny". */
  async modelPath(): Promise<string> {
    const configured = this.config.modelPath;
    if (!configured) {
      throw new UserError(
        "No base model is set. Set 'repotune.modelPath' to a GGUF file of a base code model with fill-in-the-middle support (for example Qwen2.5-Coder 1.5B), or to 'tiny' to try RepoTune with a tiny generated model.",
        "repotune.modelPath",
      );
    }
    if (configured === "tiny") return this.memo("tiny", this.config.pythonPath ?? "", async () => ensureTinyModel(await this.python(), this.trainerRoot, this.modelsDir));
    return configured;
  }

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
