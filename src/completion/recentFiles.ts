// The edits the user makes in this window, for the snippets of recently edited files that completion prompts can
// show (repotune.completions.recentFiles). Which files and which lines is src/core/recentEdits.ts.
import * as vscode from "vscode";
import { RecentEdits, snippetAround, SNIPPET_LINES } from "../core/recentEdits";
import type { ContextFile } from "../core/promptFormat";
import { isDotenvFile } from "../core/dataset/secrets";

export class RecentFiles implements vscode.Disposable {
  private readonly edits = new RecentEdits();
  private readonly subs: vscode.Disposable[];

  constructor() {
    this.subs = [
      vscode.workspace.onDidChangeTextDocument((e) => {
        const change = e.contentChanges[0];
        // Files on disk only: an untitled buffer or another scheme (output, git) is nothing of the repository's.
        if (change === undefined || e.document.uri.scheme !== "file") return;
        this.edits.record({ key: e.document.uri.toString(), language: e.document.languageId, line: change.range.start.line });
      }),
      vscode.workspace.onDidCloseTextDocument((d) => this.edits.forget(d.uri.toString())),
    ];
  }

  /**
   * Snippets for a prompt in `doc`: the lines around the last edit of up to `max` other open files of its language,
   * each named by `pathOf` (its path in the prompt; null leaves the file out, as for files outside the workspace).
   * Dotenv files are never shown: they hold secrets, and a prompt is no place for them even on this machine.
   */
  snippets(doc: vscode.TextDocument, max: number, pathOf: (uri: vscode.Uri) => string | null): ContextFile[] {
    const out: ContextFile[] = [];
    for (const mark of this.edits.pick(doc.uri.toString(), doc.languageId, max)) {
      const other = vscode.workspace.textDocuments.find((d) => d.uri.toString() === mark.key);
      const filePath = other ? pathOf(other.uri) : null;
      if (!other || filePath === null || isDotenvFile(filePath)) continue;
      // Only the lines a snippet can hold are read, however long the file.
      const from = Math.max(0, mark.line - SNIPPET_LINES);
      const to = Math.min(other.lineCount, mark.line + SNIPPET_LINES + 1);
      const lines: string[] = [];
      for (let i = from; i < to; i++) lines.push(other.lineAt(i).text);
      const text = snippetAround(lines, mark.line - from);
      if (text !== "") out.push({ path: filePath, text });
    }
    return out;
  }

  dispose(): void {
    this.subs.forEach((s) => s.dispose());
  }
}
