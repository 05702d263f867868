// Every RepoTune setting is read here, typed, and nowhere else.
import * as vscode from "vscode";
import { DEFAULT_MIX, type ExampleMix } from "./core/dataset/fim";
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

  /** Recently edited files of the same language whose snippets a completion prompt shows (0: none). */
  get recentFiles(): number {
    const n = this.cfg.get<number>("completions.recentFiles", 0);
    return Number.isFinite(n) ? Math.min(5, Math.max(0, Math.floor(n))) : 0;
  }

  /** Quiet time after a keystroke before a completion is generated. */
  get debounceMs(): number {
    return Math.max(0, this.cfg.get<number>("completions.debounceMs", 150));
  }

  /** What the dataset step reads from settings: include/exclude patterns and the mix of example kinds. */
  dataset(folder?: vscode.Uri): { include: string[]; excludeGlobs: string[]; mix?: ExampleMix } {
    const cfg = vscode.workspace.getConfiguration("repotune", folder);
    const strings = (v: unknown) => (Array.isArray(v) ? v.filter((x): x is string => typeof x === "string") : []);
    const mix = cfg.get<Partial<ExampleMix>>("dataset.mix");
    return {
      include: strings(cfg.get("dataset.include")),
      excludeGlobs: strings(cfg.get("dataset.exclude")),
      ...(mix ? { mix: { ...DEFAULT_MIX, ...mix } } : {}),
    };
  }

  get training(): Partial<TrainSettings> {
    return {
      // Only the values the user chose: the pipeline plans the others from the device, the model and the data
      // (src/core/planRun.ts), and keeps these as given.
      steps: this.explicit<number>("training.steps"),
      seqLen: this.explicit<number>("training.seqLen"),
      rank: this.explicit<number>("training.rank"),
      lr: this.cfg.get<number>("training.learningRate"),
      batch: this.explicit<number>("training.batch"),
      gradAccum: this.explicit<number>("training.gradAccum"),
      gradCheckpoint: this.explicit<boolean>("training.gradCheckpoint"),
      baseWeights: this.cfg.get<TrainSettings["baseWeights"]>("training.baseWeights"),
      device: this.cfg.get<DeviceSetting>("training.device"),
    };
  }

  /** Show the training plan and wait for Start (or Edit) before the trainer starts. */
  get confirmPlan(): boolean {
    return this.cfg.get<boolean>("training.confirmPlan", true);
  }

  /** A setting's value only where the user (or a workspace) set one, not its default. */
  private explicit<T>(key: string): T | undefined {
    const i = this.cfg.inspect<T>(key);
    return i?.workspaceFolderValue ?? i?.workspaceValue ?? i?.globalValue;
  }

  async setCompletionsEnabled(on: boolean): Promise<void> {
    await this.cfg.update("completions.enabled", on, vscode.ConfigurationTarget.Global);
  }

  static affects(e: vscode.ConfigurationChangeEvent, key: string): boolean {
    return e.affectsConfiguration(`repotune.${key}`);
  }
}
