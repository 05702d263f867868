// Inline completions from the base model plus the workspace's active adapter, through the engine process. When to
// generate and which answer each request gets is core/completionScheduler.ts; this builds the prompt and asks the
// engine.
import * as vscode from "vscode";
import * as path from "node:path";
import type { Ctx } from "../ctx";
import { promptFormatFor } from "../core/promptFormat";
import { messageOf } from "../core/errors";
import { DensityCache } from "../core/completionWindow";
import { completeAtCursor } from "../core/eval/serving";
import type { CompletionKey } from "../core/completionCache";
import { CompletionScheduler, type Trace } from "../core/completionScheduler";
import { adapterInfo } from "../core/runStore";
import { EngineError } from "../core/engineClient";
import { repoName } from "../core/repoName";
import { datasetPathOf, datasetRoots } from "../core/dataset/roots";

/** Context a completion prompt carries when the adapter's own training length is unknown (the base model alone). */
const DEFAULT_WINDOW_TOKENS = 1024;

export class CompletionProvider implements vscode.InlineCompletionItemProvider, vscode.Disposable {
  private readonly scheduler: CompletionScheduler;
  private readonly density = new DensityCache();
  private readonly shapes = new Map<string, Promise<{ windowTokens: number; charsPerToken: number | null }>>();
  private densityModel = "";
  private readonly subs: vscode.Disposable[];

  constructor(private readonly ctx: Ctx) {
    this.scheduler = new CompletionScheduler({ debounceMs: () => ctx.config.debounceMs });
    this.subs = [ctx.onDidChangeAdapter(() => this.scheduler.clear())];
  }

  /** Requests, generations, most running at once, cache and in-flight answers (for tests). */
  get stats(): CompletionScheduler["stats"] {
    return this.scheduler.stats;
  }

  async provideInlineCompletionItems(
    doc: vscode.TextDocument,
    pos: vscode.Position,
    context: vscode.InlineCompletionContext,
    token: vscode.CancellationToken,
  ): Promise<vscode.InlineCompletionItem[] | undefined> {
    if (!this.ctx.config.completionsEnabled) return undefined;
    // Asked for explicitly (Alt+\): an answer for exactly this place, not one reused from before the last keystrokes.
    const fresh = context.triggerKind === vscode.InlineCompletionTriggerKind.Invoke;
    const started = Date.now();
    const trace: Trace = { outcome: "" };
    const text = await this.complete(doc, pos, this.ctx.activeAdapter, token, fresh, trace);
    const shown = !!text && !token.isCancellationRequested;
    // "Developer: Set Log Level... > Debug" shows why a suggestion did or did not appear.
    this.ctx.log.debug(
      `completion ${fresh ? "invoked" : "automatic"} at ${pos.line + 1}:${pos.character + 1}: ${trace.outcome}` +
        `${token.isCancellationRequested ? ", cancelled by the editor" : ""}, ${shown ? `${text.length} chars shown` : "nothing shown"} (${Date.now() - started} ms)`,
    );
    if (!shown) return undefined;
    return [new vscode.InlineCompletionItem(text, new vscode.Range(pos, pos))];
  }

  /** Text the model proposes at `pos`, or undefined when it has nothing (or the engine is unavailable). */
  async complete(
    doc: vscode.TextDocument, pos: vscode.Position, adapterPath: string | null, token?: vscode.CancellationToken, fresh = false,
    trace: Trace = { outcome: "" },
  ): Promise<string | undefined> {
    const offset = doc.offsetAt(pos);
    const full = doc.getText();
    const key: CompletionKey = {
      // The document is part of the scope: its path and repository are in the prompt, so the same text in another
      // file is another question.
      scope: `${this.ctx.config.modelPath ?? ""}\u0000${adapterPath ?? ""}\u0000${doc.uri.toString()}`,
      prefix: full.slice(0, offset),
      suffix: full.slice(offset),
    };
    return this.scheduler.request(key, (signal, t) => this.generate(doc, key, adapterPath, signal, t), token, fresh, trace);
  }

  private async generate(
    doc: vscode.TextDocument, key: CompletionKey, adapterPath: string | null, signal: AbortSignal, trace: Trace,
  ): Promise<string | undefined> {
    try {
      const modelPath = await this.ctx.modelPath();
      // An adapter trained on another base model (repotune.modelPath changed since) would make completions worse.
      if (adapterPath !== null && this.ctx.adapterProblem(adapterPath, modelPath)) adapterPath = null;
      // The file's path as the dataset wrote it: relative to its folder, prefixed with the folder's name in a
      // multi-root workspace (src/core/dataset/roots.ts), so that the prompt's header is the training one.
      const folders = this.ctx.folderPaths;
      const inWorkspace = !doc.isUntitled && folders.length ? datasetPathOf(datasetRoots(folders), doc.uri.fsPath) : null;
      const folder = inWorkspace?.root.folder ?? null;
      const filePath = inWorkspace?.path ?? path.basename(doc.uri.fsPath);
      const { client, info } = await this.ctx.engine.ready(modelPath);
      if (this.densityModel !== info.path) {
        this.density.clear();
        this.densityModel = info.path;
      }
      const format = promptFormatFor(info);
      const repo = folder ? await repoName(folder) : "";
      const text = key.prefix + key.suffix;
      const shape = await this.promptShapeFor(adapterPath);
      // The serving path, shared with the held-out evaluation. supersede: whatever else this window still generates
      // is for text the user has typed past.
      const result = await completeAtCursor(client, format, {
        text, offset: key.prefix.length, filePath, repoName: folder ? repo : undefined,
        windowTokens: shape.windowTokens, charsPerToken: shape.charsPerToken, maxTokens: this.ctx.config.maxTokens, adapterPath,
      }, { signal, density: this.density, supersede: true });
      trace.outcome = result.text ? "generated" : "generated nothing usable";
      return result.text;
    } catch (err) {
      // No model configured, engine down or restarting, cancelled: the status bar and the Run view say why.
      // Cancelled and unavailable (paused for training, restarting) are normal while typing: not worth a log line.
      const quiet = err instanceof EngineError && (err.code === "cancelled" || err.code === "unavailable");
      trace.outcome = `not generated (${messageOf(err)})`;
      if (!signal.aborted && !quiet) this.ctx.log.warn(`completion: ${messageOf(err)}`);
      return undefined;
    }
  }

  /**
   * Prompts cut as the adapter's training examples were: its sequence length and its dataset's characters per token.
   * For the base model alone (or an adapter without a RepoTune manifest), a default length and a measured density.
   */
  private promptShapeFor(adapterPath: string | null): Promise<{ windowTokens: number; charsPerToken: number | null }> {
    const key = adapterPath ?? "";
    let hit = this.shapes.get(key);
    if (!hit) {
      hit = adapterPath === null
        ? Promise.resolve({ windowTokens: DEFAULT_WINDOW_TOKENS, charsPerToken: null })
        : adapterInfo(adapterPath).then((a) => ({ windowTokens: a?.seqLen ?? DEFAULT_WINDOW_TOKENS, charsPerToken: a?.charsPerToken ?? null }));
      this.shapes.set(key, hit);
    }
    return hit;
  }

  dispose(): void {
    this.scheduler.dispose();
    this.subs.forEach((s) => s.dispose());
  }
}
