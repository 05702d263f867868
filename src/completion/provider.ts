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
import { cleanCompletion, completionMode } from "../core/completionText";
import { completionWindow, DensityCache } from "../core/completionWindow";
import { CompletionCache, type CompletionKey } from "../core/completionCache";
import { adapterInfo } from "../core/runStore";
import { repoName } from "../core/repoName";

/** Context a completion prompt carries when the adapter's own training length is unknown (the base model alone). */
const DEFAULT_WINDOW_TOKENS = 1024;

export class CompletionProvider implements vscode.InlineCompletionItemProvider, vscode.Disposable {
  private latest = 0;
  private generating: { abort: AbortController; settled: Promise<unknown> } | null = null;
  private readonly cache = new CompletionCache();
  private readonly density = new DensityCache();
  private readonly windowTokens = new Map<string, Promise<number>>();
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
    _context: vscode.InlineCompletionContext,
    token: vscode.CancellationToken,
  ): Promise<vscode.InlineCompletionItem[] | undefined> {
    if (!this.ctx.config.completionsEnabled) return undefined;
    const text = await this.complete(doc, pos, this.ctx.activeAdapter, token);
    if (!text || token.isCancellationRequested) return undefined;
    return [new vscode.InlineCompletionItem(text, new vscode.Range(pos, pos))];
  }

  /** Text the model proposes at `pos`, or undefined when it has nothing (or the engine is unavailable). */
  async complete(doc: vscode.TextDocument, pos: vscode.Position, adapterPath: string | null, token?: vscode.CancellationToken): Promise<string | undefined> {
    this.stats.requests++;
    const offset = doc.offsetAt(pos);
    const full = doc.getText();
    const key: CompletionKey = {
      scope: `${this.ctx.config.modelPath ?? ""}\u0000${adapterPath ?? ""}`,
      prefix: full.slice(0, offset),
      suffix: full.slice(offset),
    };
    const cached = this.cache.get(key);
    if (cached !== undefined) {
      this.stats.cacheHits++;
      return cached || undefined;
    }
    const joined = this.cache.joinPending(key);
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
      const windowTokens = await this.windowTokensFor(adapterPath);
      const { prefix, suffix } = await completionWindow(client, text, key.prefix.length, windowTokens, filePath, repo, this.density);
      if (signal.aborted) return undefined;
      const mode = completionMode(prefix, suffix);
      const prompt = format.fim({ prefix, suffix, filePath, repoName: folder ? repo : undefined });
      const result = await client.complete(
        { prompt, adapterPath, maxTokens: this.ctx.config.maxTokens, stop: format.stopStrings },
        signal,
      );
      return cleanCompletion(result.text, { prefix, suffix, singleLine: mode === "line" });
    } catch (err) {
      // No model configured, engine down or restarting, cancelled: the status bar and the Run view say why.
      if (!signal.aborted) this.ctx.log.warn(`completion: ${messageOf(err)}`);
      return undefined;
    } finally {
      this.stats.running--;
    }
  }

  /** A prompt as long as the adapter's training examples (what it learned on), else a default for the base model. */
  private windowTokensFor(adapterPath: string | null): Promise<number> {
    const key = adapterPath ?? "";
    let hit = this.windowTokens.get(key);
    if (!hit) {
      hit = adapterPath === null ? Promise.resolve(DEFAULT_WINDOW_TOKENS) : adapterInfo(adapterPath).then((a) => a?.seqLen ?? DEFAULT_WINDOW_TOKENS);
      this.windowTokens.set(key, hit);
    }
    return hit;
  }

  dispose(): void {
    this.generating?.abort.abort();
    this.subs.forEach((s) => s.dispose());
  }
}
