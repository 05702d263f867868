// Which recently edited files a completion prompt shows, and what of each: the lines around the last edit. Free of
// VS Code: the provider records edits and reads documents (src/completion/recentFiles.ts); the choice is made here.
import { createHash } from "node:crypto";
import type { ContextFile } from "./promptFormat";

export interface EditMark {
  /** The document's identity (its URI). */
  key: string;
  language: string;
  /** Line of the most recent change. */
  line: number;
}

/** Lines shown around an edit, and the most characters of one snippet (about 250 tokens of code at most). */
export const SNIPPET_LINES = 20;
export const SNIPPET_CHARS = 1000;

/** Documents in the order of their last edit, most recent first; a bounded list, one entry per document. */
export class RecentEdits {
  private marks: EditMark[] = [];

  constructor(private readonly capacity = 16) {}

  record(mark: EditMark): void {
    this.marks = [mark, ...this.marks.filter((m) => m.key !== mark.key)].slice(0, this.capacity);
  }

  forget(key: string): void {
    this.marks = this.marks.filter((m) => m.key !== key);
  }

  /**
   * Up to `max` other documents of `language` edited most recently, oldest first: the prompt then ends with the file
   * edited last, next to the current one. Typing in the current document changes nothing here, so the prompt's
   * start, and the engine's cache of it, stay the same while the user types.
   */
  pick(currentKey: string, language: string, max: number): EditMark[] {
    if (max <= 0) return [];
    return this.marks.filter((m) => m.key !== currentKey && m.language === language).slice(0, max).reverse();
  }
}

/**
 * The lines around `line` (SNIPPET_LINES in all, a third of them before it), trimmed from the far end to at most
 * SNIPPET_CHARS characters, always whole lines; "" for a blank stretch.
 */
export function snippetAround(lines: readonly string[], line: number, maxLines = SNIPPET_LINES, maxChars = SNIPPET_CHARS): string {
  const at = Math.min(Math.max(0, line), Math.max(0, lines.length - 1));
  let from = Math.max(0, at - Math.floor(maxLines / 3));
  let to = Math.min(lines.length, from + maxLines);
  from = Math.max(0, Math.min(from, to - maxLines));
  let size = lines.slice(from, to).reduce((n, l) => n + l.length + 1, 0);
  // Drop whole lines from whichever end is farther from the edit until the snippet fits.
  while (size > maxChars && to - from > 1) {
    if (to - 1 - at >= at - from) size -= lines[--to].length + 1;
    else size -= lines[from++].length + 1;
  }
  if (size > maxChars) return lines[at].slice(0, maxChars);
  const text = lines.slice(from, to).join("\n");
  return text.trim() === "" ? "" : text;
}

/** A digest of the context, for the completion cache's scope: other snippets make another question. */
export function contextKey(context: readonly ContextFile[]): string {
  if (context.length === 0) return "";
  const hash = createHash("sha1");
  for (const c of context) hash.update(`${c.path}\u0000${c.text}\u0000`);
  return hash.digest("base64");
}
