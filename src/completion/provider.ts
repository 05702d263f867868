// Inline completions from the base model plus the workspace's active adapter, through the engine process.
import * as vscode from "vscode";
import * as path from "node:path";
import { promises as fs } from "node:fs";
import type { Ctx } from "../ctx";
import { promptFormatFor } from "../core/promptFormat";
import { messageOf } from "../core/errors";
import { cleanCompletion } from "../core/completionText";
import { cursorWindow } from "../core/dataset/fim";

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
    // The window is cut the way training windows are (line-aligned, same prefix/suffix share), and about as long
    // as a training sequence holds, so the adapter sees prompts shaped like those it learned from.
    const windowChars = 2 * (this.ctx.config.training.seqLen ?? 256);
    const { prefix, suffix } = cursorWindow(doc.getText(), doc.offsetAt(pos), windowChars);
    const folder = vscode.workspace.getWorkspaceFolder(doc.uri);
    const filePath = folder ? path.relative(folder.uri.fsPath, doc.uri.fsPath).split(path.sep).join("/") : path.basename(doc.uri.fsPath);
    const midLine = doc.lineAt(pos.line).text.slice(pos.character).trim().length > 0 || doc.lineAt(pos.line).text.slice(0, pos.character).trim().length > 0;

    const abort = new AbortController();
    const sub = token?.onCancellationRequested(() => abort.abort());
    try {
      const { client, info } = await this.ctx.engine.ready(modelPath);
      const format = promptFormatFor(info);
      const prompt = format.fim({ prefix, suffix, filePath, repoName: folder ? await repoName(folder.uri.fsPath) : undefined });
      const result = await client.complete(
        { prompt, adapterPath, maxTokens: this.ctx.config.maxTokens, stop: format.stopStrings },
        abort.signal,
      );
      return cleanCompletion(result.text, { suffix, singleLine: midLine }) || undefined;
    } catch (err) {
      if (!abort.signal.aborted) this.ctx.log.warn(`completion: ${messageOf(err)}`);
      return undefined;
    } finally {
      sub?.dispose();
    }
  }
}

/** The repository name in prompt headers: the folder's real name, as the dataset step writes it. */
async function repoName(folder: string): Promise<string> {
  return path.basename(await fs.realpath(folder).catch(() => folder));
}
