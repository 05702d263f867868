// Wires RepoTune together: one context, commands by name, the Run view, the status bar, inline completions.
import * as vscode from "vscode";
import { binariesRoot, offerCudaBuild } from "./cudaBuild";
import { Ctx } from "./ctx";
import { RunController } from "./run";
import { commands } from "./commands";
import { RunViewProvider } from "./views/runView";
import { StatusBar } from "./statusBar";
import { CompletionProvider } from "./completion/provider";
import type { TuneResult } from "./core/tune";

/** What activate() returns: used by the extension-host tests, and by other extensions that script RepoTune. */
export interface RepoTuneApi {
  state(): { phase: string; step: number; error: string | null; activeAdapter: string | null; modelPath: string | null; lastRun: TuneResult | null };
  runFineTune(): Promise<TuneResult | null>;
  engineComplete(prefix: string, suffix: string, adapter: "active" | "none"): Promise<string>;
  /** Counters of the inline completion provider: generations started, most running at once, cache answers. */
  completionStats(): { requests: number; generations: number; running: number; maxRunning: number; cacheHits: number; joined: number };
  /** The last prompt the inline completion provider gave the engine, as text (null before the first). */
  lastCompletionPrompt(): string | null;
}

export function activate(context: vscode.ExtensionContext): RepoTuneApi {
  // Where a downloaded CUDA build of llama.cpp lives: engine processes (forked with this environment) look there.
  process.env.REPOTUNE_BINARIES_DIR ??= binariesRoot(context);
  const ctx = new Ctx(context);
  const run = new RunController(ctx);
  const completions = new CompletionProvider(ctx);
  context.subscriptions.push(
    ctx,
    run,
    new StatusBar(ctx, run),
    vscode.window.registerWebviewViewProvider(RunViewProvider.viewId, new RunViewProvider(ctx, run)),
    completions,
    vscode.languages.registerInlineCompletionItemProvider({ pattern: "**" }, completions),
    ...Object.entries(commands).map(([id, make]) => vscode.commands.registerCommand(id, make(ctx, run))),
  );
  ctx.log.info(`RepoTune activated (extension at ${context.extensionUri.fsPath}).`);
  if (!vscode.workspace.isTrusted) {
    ctx.log.info("This folder is not trusted (Restricted Mode): fine-tuning is off until it is; completions from the adapter in use keep working.");
  }

  // A run the previous window started (before a reload) is followed again.
  void run.reattach();
  // Not at once: nvidia-smi and the CUDA runtime check are not worth delaying the window's start for.
  const offer = setTimeout(() => void offerCudaBuild(ctx, { ask: true }), 10_000);
  context.subscriptions.push({ dispose: () => clearTimeout(offer) });

  return {
    state: () => ({ phase: run.snapshot.phase, step: run.snapshot.step, error: run.snapshot.error, activeAdapter: ctx.activeAdapter, modelPath: run.snapshot.model, lastRun: run.lastRun }),
    runFineTune: () => run.start(),
    engineComplete: async (prefix, suffix, adapter) => {
      const doc = await vscode.workspace.openTextDocument({ content: prefix + suffix });
      const text = await completions.complete(doc, doc.positionAt(prefix.length), adapter === "active" ? ctx.activeAdapter : null);
      return text ?? "";
    },
    completionStats: () => ({ ...completions.stats }),
    lastCompletionPrompt: () => completions.lastPrompt,
  };
}

/** Nothing to wait for: a training run goes on without the window (RunController.dispose). */
export function deactivate(): void {}
