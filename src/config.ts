// Every RepoTune setting is read here, typed, and nowhere else.
import * as vscode from "vscode";
import type { TrainSettings } from "./core/tune";

export type DeviceSetting = TrainSettings["device"];

export class Config {
  private get cfg(): vscode.WorkspaceConfiguration {
    return vscode.workspace.getConfiguration("repotune");
  }

  /** GGUF path of the base model, "tiny" for the generated tiny model, or undefined when unset. */
  get modelPath(): string | undefined {
    return this.cfg.get<string>("modelPath")?.trim() || undefined;
  }

  get pythonPath(): string | undefined {
    return this.cfg.get<string>("pythonPath")?.trim() || undefined;
  }

  get completionsEnabled(): boolean {
    return this.cfg.get<boolean>("completions.enabled", true);
  }

  get maxTokens(): number {
    return this.cfg.get<number>("completions.maxTokens", 48);
  }

  /** Quiet time after a keystroke before a completion is generated. */
  get debounceMs(): number {
    return Math.max(0, this.cfg.get<number>("completions.debounceMs", 150));
  }

  get training(): Partial<TrainSettings> {
    return {
      steps: this.cfg.get<number>("training.steps"),
      seqLen: this.cfg.get<number>("training.seqLen"),
      rank: this.cfg.get<number>("training.rank"),
      lr: this.cfg.get<number>("training.learningRate"),
      device: this.cfg.get<DeviceSetting>("training.device"),
    };
  }

  async setCompletionsEnabled(on: boolean): Promise<void> {
    await this.cfg.update("completions.enabled", on, vscode.ConfigurationTarget.Global);
  }

  static affects(e: vscode.ConfigurationChangeEvent, key: string): boolean {
    return e.affectsConfiguration(`repotune.${key}`);
  }
}
