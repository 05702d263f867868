// Inline completions from the base model plus the workspace's active adapter, through the engine process.
import * as vscode from "vscode";
import * as path from "node:path";
import type { Ctx } from "../ctx";
import { promptFormatFor } from "../core/promptFormat";
import { messageOf } from "../core/errors";
import { cleanCompletion, isMidLine } from "../core/completionText";
import { completionWindow } from "../core/completionWindow";
import { repoName } from "../core/repoName";

const DEBOUNCE_MS = 120;

export class CompletionProvider implements vscode.InlineCompletionItemProvider {
  private latest = 0;

  constructor(private readonly ctx: Ctx) {}

  async provideInlineCompletionItems(
    doc: vscode.TextDocument,
    pos: vscode.Position,
    _context: vscode.InlineCompletionContext,
    token: vscode.CancellationToken,
  ): Promise<vscode.InlineCompletionItem[] | undefined> {
    if (!this.ctx.config.completionsEnabled) return undefined;
    const ticket = ++this.latest;
    await new Promise((r) => setTimeout(r, DEBOUNCE_MS));
    if (token.isCancellationRequested || ticket !== this.latest) return undefined;

    const text = await this.complete(doc, pos, this.ctx.activeAdapter, token);
    if (!text || token.isCancellationRequested) return undefined;
    return [new vscode.InlineCompletionItem(text, new vscode.Range(pos, pos))];
  }

  /** Text the model proposes at `pos`, or undefined when it has nothing (or the engine is unavailable). */
  async complete(doc: vscode.TextDocument, pos: vscode.Position, adapterPath: string | null, token?: vscode.CancellationToken): Promise<string | undefined> {
    let modelPath: string;
    try {
      modelPath = await this.ctx.modelPath();
    } catch {
      return undefined; // no model configured: the status bar and the Run view say so
    }
    const folder = vscode.workspace.getWorkspaceFolder(doc.uri);
    const filePath = folder ? path.relative(folder.uri.fsPath, doc.uri.fsPath).split(path.sep).join("/") : path.basename(doc.uri.fsPath);

    const abort = new AbortController();
    const sub = token?.onCancellationRequested(() => abort.abort());
    try {
      const { client, info } = await this.ctx.engine.ready(modelPath);
      const format = promptFormatFor(info);
      const repo = folder ? await repoName(folder.uri.fsPath) : "";
      const { prefix, suffix } = await completionWindow(client, doc.getText(), doc.offsetAt(pos), this.ctx.config.training.seqLen ?? 256, filePath, repo);
      const prompt = format.fim({ prefix, suffix, filePath, repoName: folder ? repo : undefined });
      const result = await client.complete(
        { prompt, adapterPath, maxTokens: this.ctx.config.maxTokens, stop: format.stopStrings },
        abort.signal,
      );
      return cleanCompletion(result.text, { suffix, singleLine: isMidLine(prefix, suffix) }) || undefined;
    } catch (err) {
      if (!abort.signal.aborted) this.ctx.log.warn(`completion: ${messageOf(err)}`);
      return undefined;
    } finally {
      sub?.dispose();
    }
  }
}
