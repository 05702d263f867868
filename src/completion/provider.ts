// Inline completions from the base model plus the workspace's active adapter, through the engine process.
//
// Typing must never wait on the model: a request first looks for an answer it already has (the cache, or a
// completion in flight that the user is typing into), then waits out the debounce, and only the newest request
// generates; a newer one aborts it.
import * as vscode from "vscode";
import * as path from "node:path";
import type { Ctx } from "../ctx";
import { promptFormatFor } from "../core/promptFormat";
import { messageOf } from "../core/errors";
import { DensityCache } from "../core/completionWindow";
import { completeAtCursor } from "../core/eval/serving";
import { CompletionCache, type CompletionKey } from "../core/completionCache";
import { adapterInfo } from "../core/runStore";
import { EngineError } from "../core/engineClient";
import { repoName } from "../core/repoName";

/** Context a completion prompt carries when the adapter's own training length is unknown (the base model alone). */
const DEFAULT_WINDOW_TOKENS = 1024;

export class CompletionProvider implements vscode.InlineCompletionItemProvider, vscode.Disposable {
  private latest = 0;
  private generating: { abort: AbortController; settled: Promise<unknown> } | null = null;
  private readonly cache = new CompletionCache();
  private readonly density = new DensityCache();
  private readonly shapes = new Map<string, Promise<{ windowTokens: number; charsPerToken: number | null }>>();
  private densityModel = "";
  private readonly subs: vscode.Disposable[];
  /** Generations started (for tests: a burst of keystrokes must start few, and never two at once). */
  readonly stats = { requests: 0, generations: 0, running: 0, maxRunning: 0, cacheHits: 0, joined: 0 };

  constructor(private readonly ctx: Ctx) {
    this.subs = [ctx.onDidChangeAdapter(() => this.cache.clear())];
  }

  async provideInlineCompletionItems(
    doc: vscode.TextDocument,
    pos: vscode.Position,
    context: vscode.InlineCompletionContext,
    token: vscode.CancellationToken,
  ): Promise<vscode.InlineCompletionItem[] | undefined> {
    if (!this.ctx.config.completionsEnabled) return undefined;
    // Asked for explicitly (Alt+\): a fresh answer for exactly this place, not one reused from before the last
    // keystrokes (a FIM prompt with the typed text in the prefix is not the prompt that produced it).
    const fresh = context.triggerKind === vscode.InlineCompletionTriggerKind.Invoke;
    const text = await this.complete(doc, pos, this.ctx.activeAdapter, token, fresh);
    if (!text || token.isCancellationRequested) return undefined;
    return [new vscode.InlineCompletionItem(text, new vscode.Range(pos, pos))];
  }

  /** Text the model proposes at `pos`, or undefined when it has nothing (or the engine is unavailable). */
  async complete(
    doc: vscode.TextDocument, pos: vscode.Position, adapterPath: string | null, token?: vscode.CancellationToken, fresh = false,
  ): Promise<string | undefined> {
    this.stats.requests++;
    const offset = doc.offsetAt(pos);
    const full = doc.getText();
    const key: CompletionKey = {
      // The document is part of the scope: its path and repository are in the prompt, so the same text in another
      // file is another question.
      scope: `${this.ctx.config.modelPath ?? ""}\u0000${adapterPath ?? ""}\u0000${doc.uri.toString()}`,
      prefix: full.slice(0, offset),
      suffix: full.slice(offset),
    };
    // An explicit request still takes an answer made for exactly this place (finished or in flight: asking again
    // must not cancel the generation it is waiting for), but not one reused from before the last keystrokes.
    const cached = this.cache.get(key, fresh);
    if (cached !== undefined) {
      this.stats.cacheHits++;
      return cached || undefined;
    }
    const joined = this.cache.joinPending(key, fresh);
    if (joined) {
      this.stats.joined++;
      return (await joined.catch(() => undefined)) || undefined;
    }

    const ticket = ++this.latest;
    await new Promise((r) => setTimeout(r, this.ctx.config.debounceMs));
    if (token?.isCancellationRequested || ticket !== this.latest) return undefined;

    // Only the newest request generates: one still running was for text the user has typed past. It is aborted
    // and waited for (the engine stops within a token), so that two generations never run at once.
    const previous = this.generating;
    const abort = new AbortController();
    const sub = token?.onCancellationRequested(() => abort.abort());
    const result = (async () => {
      if (previous) {
        previous.abort.abort();
        await previous.settled;
      }
      if (abort.signal.aborted || ticket !== this.latest) return undefined;
      return this.generate(doc, key, adapterPath, abort.signal);
    })();
    const mine = { abort, settled: result.catch(() => undefined) };
    this.generating = mine;
    this.cache.track(key, result);
    try {
      return (await result) || undefined;
    } finally {
      sub?.dispose();
      if (this.generating === mine) this.generating = null;
    }
  }

  private async generate(doc: vscode.TextDocument, key: CompletionKey, adapterPath: string | null, signal: AbortSignal): Promise<string | undefined> {
    this.stats.generations++;
    this.stats.running++;
    this.stats.maxRunning = Math.max(this.stats.maxRunning, this.stats.running);
    try {
      const modelPath = await this.ctx.modelPath();
      const folder = vscode.workspace.getWorkspaceFolder(doc.uri);
      const filePath = folder ? path.relative(folder.uri.fsPath, doc.uri.fsPath).split(path.sep).join("/") : path.basename(doc.uri.fsPath);
      const { client, info } = await this.ctx.engine.ready(modelPath);
      if (this.densityModel !== info.path) {
        this.density.clear();
        this.densityModel = info.path;
      }
      const format = promptFormatFor(info);
      const repo = folder ? await repoName(folder.uri.fsPath) : "";
      const text = key.prefix + key.suffix;
      const shape = await this.promptShapeFor(adapterPath);
      // The serving path, shared with the held-out evaluation. supersede: whatever else this window still generates
      // is for text the user has typed past.
      const result = await completeAtCursor(client, format, {
        text, offset: key.prefix.length, filePath, repoName: folder ? repo : undefined,
        windowTokens: shape.windowTokens, charsPerToken: shape.charsPerToken, maxTokens: this.ctx.config.maxTokens, adapterPath,
      }, { signal, density: this.density, supersede: true });
      return result.text;
    } catch (err) {
      // No model configured, engine down or restarting, cancelled: the status bar and the Run view say why.
      // Cancelled and unavailable (paused for training, restarting) are normal while typing: not worth a log line.
      const quiet = err instanceof EngineError && (err.code === "cancelled" || err.code === "unavailable");
      if (!signal.aborted && !quiet) this.ctx.log.warn(`completion: ${messageOf(err)}`);
      return undefined;
    } finally {
      this.stats.running--;
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
    this.generating?.abort.abort();
    this.subs.forEach((s) => s.dispose());
  }
}
