// Inline completions from the base model plus the workspace's active adapter, through the engine process. When to
// generate and which answer each request gets is core/completionScheduler.ts; the prompt and the generation are
// core/completionGenerator.ts; this adds what VS Code knows (settings, workspace folders, the adapter in use).
import * as vscode from "vscode";
import * as path from "node:path";
import type { Ctx } from "../ctx";
import { messageOf } from "../core/errors";
import type { CompletionKey } from "../core/completionCache";
import { CompletionScheduler, type Trace } from "../core/completionScheduler";
import { CompletionGenerator } from "../core/completionGenerator";
import { EngineError } from "../core/engineClient";
import { repoName } from "../core/repoName";
import { datasetPathOf, datasetRoots } from "../core/dataset/roots";
import { contextKey } from "../core/recentEdits";
import type { ContextFile } from "../core/promptFormat";
import { RecentFiles } from "./recentFiles";

export class CompletionProvider implements vscode.InlineCompletionItemProvider, vscode.Disposable {
  private readonly scheduler: CompletionScheduler;
  private readonly generator = new CompletionGenerator();
  private readonly recent = new RecentFiles();
  private readonly subs: vscode.Disposable[];

  constructor(private readonly ctx: Ctx) {
    this.scheduler = new CompletionScheduler({ debounceMs: () => ctx.config.debounceMs });
    this.subs = [ctx.onDidChangeAdapter(() => this.scheduler.clear()), this.recent];
  }

  /** The last prompt the engine was given, as text (for the extension-host tests). */
  get lastPrompt(): string | null {
    return this.generator.lastPrompt?.map((s) => s.text).join("") ?? null;
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
    // Snippets of other files the user has just edited (off unless repotune.completions.recentFiles says how many).
    const context = this.recent.snippets(doc, this.ctx.config.recentFiles, (uri) => this.promptPath(uri)?.path ?? null);
    const key: CompletionKey = {
      // The document is part of the scope: its path and repository are in the prompt, so the same text in another
      // file is another question; so are other snippets.
      scope: `${this.ctx.config.modelPath ?? ""}\u0000${adapterPath ?? ""}\u0000${doc.uri.toString()}\u0000${contextKey(context)}`,
      prefix: full.slice(0, offset),
      suffix: full.slice(offset),
    };
    return this.scheduler.request(key, (signal, t) => this.generate(doc, key, adapterPath, context, signal, t), token, fresh, trace);
  }

  /**
   * A file's path as the dataset wrote it: relative to its folder, prefixed with the folder's name in a multi-root
   * workspace (src/core/dataset/roots.ts), so that the prompt's header is the training one; null outside the workspace.
   */
  private promptPath(uri: vscode.Uri): { path: string; folder: string } | null {
    const folders = this.ctx.folderPaths;
    if (folders.length === 0) return null;
    const found = datasetPathOf(datasetRoots(folders), uri.fsPath);
    return found ? { path: found.path, folder: found.root.folder } : null;
  }

  private async generate(
    doc: vscode.TextDocument, key: CompletionKey, adapterPath: string | null, context: ContextFile[], signal: AbortSignal, trace: Trace,
  ): Promise<string | undefined> {
    try {
      const modelPath = await this.ctx.modelPath();
      // An adapter trained on another base model (repotune.modelPath changed since) would make completions worse.
      if (adapterPath !== null && this.ctx.adapterProblem(adapterPath, modelPath)) adapterPath = null;
      const inWorkspace = doc.isUntitled ? null : this.promptPath(doc.uri);
      const folder = inWorkspace?.folder ?? null;
      const filePath = inWorkspace?.path ?? path.basename(doc.uri.fsPath);
      const engine = await this.ctx.engine.ready(modelPath);
      const text = await this.generator.generate(engine, {
        text: key.prefix + key.suffix, offset: key.prefix.length, filePath, repoName: folder ? await repoName(folder) : undefined,
        adapterPath, maxTokens: this.ctx.config.maxTokens, context,
      }, signal);
      trace.outcome = text ? "generated" : "generated nothing usable";
      return text;
    } catch (err) {
      // No model configured, engine down or restarting, cancelled: the status bar and the Run view say why.
      // Cancelled and unavailable (paused for training, restarting) are normal while typing: not worth a log line.
      const quiet = err instanceof EngineError && (err.code === "cancelled" || err.code === "unavailable");
      trace.outcome = `not generated (${messageOf(err)})`;
      if (!signal.aborted && !quiet) this.ctx.log.warn(`completion: ${messageOf(err)}`);
      return undefined;
    }
  }

  dispose(): void {
    this.scheduler.dispose();
    this.subs.forEach((s) => s.dispose());
  }
}
