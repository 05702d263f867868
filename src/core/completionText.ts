// Post-processing of raw model output into the text an inline completion shows, and the policy for how much to show.

/** How much a completion may span: the rest of one line, or a block of lines. */
export type CompletionMode = "line" | "block";

export interface CleanOptions {
  /** Text before the cursor (only its last lines are read). */
  prefix?: string;
  /** Text after the cursor; a completion stops where it starts repeating it. */
  suffix: string;
  /** Mid-line completions end at the line end; after an opener on an empty line a block may follow. */
  singleLine: boolean;
}

const OPENER = /(?:[{([:]|=>|\b(?:then|do|else|begin))\s*$/;
const CLOSERS: Record<string, string> = { ")": "(", "]": "[", "}": "{" };
const MAX_BLOCK_LINES = 40;

/** A cursor on a line that has code on it gets a single-line completion. */
export function isMidLine(prefix: string, suffix: string): boolean {
  const lineBefore = prefix.slice(prefix.lastIndexOf("\n") + 1);
  const lineAfter = suffix.split("\n", 1)[0];
  return (lineBefore + lineAfter).trim().length > 0;
}

/**
 * Single line when the cursor is mid-line or on an empty line that does not open anything; a block when it is on an
 * empty line right after an opener (`{`, `(`, `[`, `:`, `=>`, `then`, `do`...), where the user is about to write a body.
 */
export function completionMode(prefix: string, suffix: string): CompletionMode {
  if (isMidLine(prefix, suffix)) return "line";
  const before = prefix.slice(0, prefix.lastIndexOf("\n") + 1).replace(/\s+$/, "");
  const lastLine = before.slice(before.lastIndexOf("\n") + 1);
  return OPENER.test(lastLine) ? "block" : "line";
}

/**
 * From raw output to what is worth showing: cut to one line or one block (a block ends at a blank line, a dedent
 * below where it started, or a closer of a bracket opened before the cursor), stop where the text starts repeating
 * the code after the cursor or repeats its own lines, and drop what is already there. "" when nothing new is left.
 */
export function cleanCompletion(raw: string, opts: CleanOptions): string {
  let text = raw.replace(/\r\n/g, "\n");
  text = opts.singleLine ? firstLine(text) : firstBlock(text, opts.prefix ?? "");
  text = cutAtUnbalancedCloser(text, opts.suffix, opts.singleLine);
  text = cutAtSuffixOverlap(text, opts.suffix);
  text = cutAtRepeatedLine(text, opts.prefix ?? "");
  text = text.replace(/\s+$/, "");
  // Nothing new: whitespace, or exactly what already follows the cursor.
  if (text.trim().length === 0 || opts.suffix.replace(/^[ \t]*/, "").startsWith(text.trim())) return "";
  return text;
}

function firstLine(text: string): string {
  const nl = text.indexOf("\n");
  return nl >= 0 ? text.slice(0, nl) : text;
}

function firstBlock(text: string, prefix: string): string {
  const lines = text.split("\n");
  // The indent of the line the cursor is on (the block's own indent comes from its first non-empty line).
  const cursorLine = prefix.slice(prefix.lastIndexOf("\n") + 1);
  const firstIndent = indentOf(cursorLine + (lines[0] ?? ""));
  const out: string[] = [];
  for (let i = 0; i < lines.length && out.length < MAX_BLOCK_LINES; i++) {
    const line = i === 0 ? cursorLine + lines[0] : lines[i];
    if (line.trim() === "") {
      if (out.length > 0) break; // a blank line ends the block
      out.push(lines[i]);
      continue;
    }
    // A dedent below the block's first line leaves the block (its closer line is kept when it is one).
    if (out.some((l) => l.trim() !== "") && indentOf(line) < firstIndent) {
      if (/^\s*[)\]}]/.test(line)) out.push(lines[i]);
      break;
    }
    out.push(lines[i]);
  }
  return out.join("\n");
}

function indentOf(line: string): number {
  const m = /^[ \t]*/.exec(line);
  return m ? m[0].replace(/\t/g, "    ").length : 0;
}

/**
 * A closer with no opener in the completion closes something opened before the cursor. When the code after the
 * cursor already closes it there, the completion stops before it (on its line, or before that line in a block);
 * otherwise the closer is the natural end of the completion, kept, and nothing after it.
 */
function cutAtUnbalancedCloser(text: string, suffix: string, singleLine: boolean): string {
  const stack: string[] = [];
  let quote: string | null = null;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (quote !== null) {
      if (ch === "\\") i++;
      else if (ch === quote || ch === "\n") quote = null;
      continue;
    }
    if (ch === '"' || ch === "'" || ch === "`") quote = ch;
    else if (ch === "(" || ch === "[" || ch === "{") stack.push(ch);
    else if (ch in CLOSERS) {
      if (stack.length > 0 && stack[stack.length - 1] === CLOSERS[ch]) {
        stack.pop();
        continue;
      }
      const closedAfterCursor = suffix.trimStart().startsWith(ch);
      if (!closedAfterCursor) return text.slice(0, i + 1);
      if (singleLine) return text.slice(0, i);
      const lineStart = text.lastIndexOf("\n", i) + 1;
      return text.slice(lineStart, i).trim() === "" ? text.slice(0, Math.max(0, lineStart - 1)) : text.slice(0, i);
    }
  }
  return text;
}

/** The completion stops where it starts repeating the rest of the cursor's line or the next non-blank line. */
function cutAtSuffixOverlap(text: string, suffix: string): string {
  const restOfLine = suffix.split("\n", 1)[0].trim();
  if (restOfLine.length > 0) {
    // A short rest (`)`, `";`) counts only at the end of the line: inside it, it is likely the completion's own text.
    const line = firstLine(text).replace(/\s+$/, "");
    const at = restOfLine.length >= 4 ? text.indexOf(restOfLine) : line.endsWith(restOfLine) ? line.length - restOfLine.length : -1;
    if (at >= 0) text = text.slice(0, at);
  }
  const nextLine = suffix.slice(suffix.indexOf("\n") + 1).split("\n").find((l) => l.trim() !== "")?.trim();
  if (nextLine !== undefined && suffix.includes("\n") && nextLine.length > 1) {
    const lines = text.split("\n");
    const k = lines.findIndex((l, i) => i > 0 && l.trim() === nextLine);
    if (k > 0) text = lines.slice(0, k).join("\n");
  }
  return text;
}

/** Models caught in a loop repeat a line: keep the first occurrence only, and never re-emit the line just above. */
function cutAtRepeatedLine(text: string, prefix: string): string {
  const lines = text.split("\n");
  const above = prefix.slice(0, prefix.lastIndexOf("\n") + 1).replace(/\n$/, "");
  const lineAbove = above.slice(above.lastIndexOf("\n") + 1).trim();
  const seen = new Set<string>();
  for (let i = 0; i < lines.length; i++) {
    const t = lines[i].trim();
    if (t.length < 2 || /^[)\]}]+;?$/.test(t)) continue; // closers repeat legitimately
    if (seen.has(t) || (i > 0 && t === lineAbove)) return lines.slice(0, i).join("\n");
    seen.add(t);
  }
  return text;
}
