// Where to cut a file into examples. Most are fill-in-the-middle: the middle is what a completion would insert at a
// cursor (the rest of a line, a few whole lines, or a block that ends where code naturally pauses), and the prefix and
// suffix are the code around it, cut exactly as a completion prompt at that cursor is cut. Some are plain next-token
// text, a stretch of the file with no FIM tokens at all, so the adapter also learns the repository's code as text.
import type { Rng } from "./random";

export type SpanKind = "rest-of-line" | "lines" | "block" | "next-token";

export interface FimSpan {
  kind: SpanKind;
  /** Empty for next-token spans, whose whole text is the middle. */
  prefix: string;
  middle: string;
  suffix: string;
  /** Offset of the middle in the file: examples of one file sort by it. */
  start: number;
  /** The suffix was left out (see OPEN_END_SHARE). */
  openEnd: boolean;
}

/**
 * Relative weights of the kinds of examples. Defaults (DEFAULT_MIX): inline completion is mostly finishing the line
 * being typed (rest of line), then writing the next lines; a block (a function body, an if branch, a paragraph of
 * statements) is the longer suggestion; a little plain next-token text teaches the repository's code as such.
 */
export interface ExampleMix {
  restOfLine: number;
  lines: number;
  block: number;
  nextToken: number;
}

export const DEFAULT_MIX: Readonly<ExampleMix> = { restOfLine: 0.4, lines: 0.3, block: 0.2, nextToken: 0.1 };

/** Share of a training sequence the text of an example may fill; the rest is headroom for the estimate's error. */
export const WINDOW_FILL = 0.9;

/** How many characters an example around one cursor may hold, in its parts. */
export interface Budget {
  /** Code around the cursor that a prompt carries: prefix + suffix. */
  prompt: number;
  /** The longest middle. prompt + middle (+ headers) fit in the sequence length. */
  middle: number;
  /** A next-token example: plain text, no headers. */
  plain: number;
}

/**
 * Character budgets for `seqLen` tokens, given the model's characters per token for this code and the prompt's file
 * and repository headers. Completion prompts take `prompt` (through windowCharsFor), training examples take the same
 * `prompt` plus a middle of at most `middle`, so an example's prompt is the completion prompt at its cursor.
 */
export function budgetFor(seqLen: number, charsPerToken: number, filePath: string, repoName: string): Budget {
  const plain = Math.max(32, Math.floor(seqLen * WINDOW_FILL * charsPerToken));
  // Headers and the FIM special tokens; generous, since the budget is in characters and they are not code.
  const total = Math.max(32, plain - (filePath.length + repoName.length + 16));
  const middle = Math.max(8, Math.floor(total * MIDDLE_SHARE));
  return { prompt: Math.max(16, total - middle), middle, plain };
}

/** How many characters of code around a cursor (prefix + suffix) a prompt carries: what completions ask with. */
export function windowCharsFor(seqLen: number, charsPerToken: number, filePath: string, repoName: string): number {
  return budgetFor(seqLen, charsPerToken, filePath, repoName).prompt;
}

/**
 * Share of an example's budget kept for the middle: at seqLen 256 and 3.5 characters per token about 250
 * characters, several lines of code, and more than a completion of 48 tokens writes after its prompt.
 */
const MIDDLE_SHARE = 1 / 3;

/** Share of the window the prefix gets when both sides have more text than fits: code above the cursor says more. */
const PREFIX_SHARE = 0.6;

/**
 * Share of FIM examples whose suffix is left out, as when the cursor is at the end of what is being written (new code
 * at the end of a file, or a file just created). Examples that all carry the file's real suffix do not teach that
 * case: measured on test/fixtures/sample-repo with the tiny model, a new line at the end of a new file completed as ";"
 * without such examples and as the fixture's line with them. The middle stays the true continuation.
 */
const OPEN_END_SHARE = 0.25;

/** How many start lines a block may move down to find one that fits the middle budget, before it becomes lines. */
const BLOCK_TRIES = 8;

/** Checks a mix given by a caller: weights are finite, not negative, and not all zero. */
export function checkMix(mix: ExampleMix): string | null {
  const values = [mix.restOfLine, mix.lines, mix.block, mix.nextToken];
  if (values.some((v) => typeof v !== "number" || !Number.isFinite(v) || v < 0)) return "every weight must be a number of 0 or more";
  if (values.every((v) => v === 0)) return "at least one weight must be above 0";
  return null;
}

/**
 * `count` spans of `text`, one from each of `count` equal stretches of lines, so a file is covered evenly; each
 * draws its kind from `mix`. A span that cannot be of its kind here (rest of a blank line, a block too long for the
 * budget) falls back to whole lines, and says so in its kind.
 */
export function fimSpans(text: string, count: number, budget: Budget, r: Rng, mix: ExampleMix = DEFAULT_MIX): FimSpan[] {
  const lines = new Lines(text);
  const n = lines.count;
  const spans: FimSpan[] = [];
  for (let k = 0; k < count; k++) {
    const lo = Math.floor((k * n) / count);
    const hi = Math.max(lo, Math.floor(((k + 1) * n) / count) - 1);
    const line = r.int(lo, hi);
    const want = drawKind(mix, r.next());
    if (want === "next-token") {
      const [s, e] = plainWindow(text, lines, line, budget.plain);
      spans.push({ kind: "next-token", prefix: "", middle: text.slice(s, e), suffix: "", start: s, openEnd: false });
      continue;
    }
    const { kind, start, end } = pickMiddle(text, lines, line, want, r, budget.middle);
    const openEnd = r.next() < OPEN_END_SHARE;
    const { prefix, suffix } = exampleWindow(openEnd ? text.slice(0, end) : text, start, end, budget.prompt);
    spans.push({ kind, prefix, middle: text.slice(start, end), suffix, start, openEnd });
  }
  // A block that moved down to fit may start past the next stretch's span: spans come in file order all the same.
  return spans.sort((a, b) => a.start - b.start);
}

function drawKind(mix: ExampleMix, u: number): SpanKind {
  const total = mix.restOfLine + mix.lines + mix.block + mix.nextToken;
  let x = u * total;
  if ((x -= mix.restOfLine) < 0) return "rest-of-line";
  if ((x -= mix.lines) < 0) return "lines";
  if ((x -= mix.block) < 0 || mix.nextToken === 0) return "block";
  return "next-token";
}

/**
 * Prefix and suffix of a training example whose middle is [start, end): the prompt a completion at `start` gets in
 * the file as it reads before the middle is written (the middle cut out), with `promptChars` of code around it.
 * fimWindow on the whole text with the middle's length added to the window cuts exactly there, without copying the
 * file: the text on both sides and every cut rule are the same (test/unit/dataset.test.ts checks it against
 * cursorWindow on the file with the middle cut out).
 */
export function exampleWindow(text: string, start: number, end: number, promptChars: number): { prefix: string; suffix: string } {
  return fimWindow(text, start, end, promptChars + (end - start));
}

/**
 * Prefix and suffix around the middle [start, end), together at most `windowChars` minus the middle. Each side
 * gets the other's unused share, and both are cut at line starts when that keeps any text.
 */
export function fimWindow(text: string, start: number, end: number, windowChars: number): { prefix: string; suffix: string } {
  const rest = Math.max(0, windowChars - (end - start));
  const before = start;
  const after = text.length - end;
  const prefixLen = Math.min(before, Math.max(Math.floor(rest * PREFIX_SHARE), rest - after));
  const suffixLen = Math.min(after, rest - prefixLen);

  let from = safeCut(text, start - prefixLen);
  if (from > 0 && text[from - 1] !== "\n") {
    const nl = text.indexOf("\n", from);
    if (nl !== -1 && nl + 1 <= start) from = nl + 1;
  }
  let to = safeCut(text, end + suffixLen);
  if (to < text.length) {
    const nl = text.lastIndexOf("\n", to - 1);
    if (nl >= end) to = nl + 1;
  }
  return { prefix: text.slice(from, start), suffix: text.slice(end, to) };
}

/** Line starts and indentation of a text, computed once per file. */
class Lines {
  readonly starts: number[] = [0];

  constructor(private readonly text: string) {
    for (let i = text.indexOf("\n"); i !== -1 && i + 1 < text.length; i = text.indexOf("\n", i + 1)) this.starts.push(i + 1);
  }

  get count(): number {
    return this.starts.length;
  }

  /** Offset just past line `i`'s text, before its "\n". */
  end(i: number): number {
    if (i + 1 < this.starts.length) return this.starts[i + 1] - 1;
    return this.text.endsWith("\n") ? this.text.length - 1 : this.text.length;
  }

  /** Offset where line `i` + 1 starts (the end of the text for the last line). */
  next(i: number): number {
    return i + 1 < this.starts.length ? this.starts[i + 1] : this.text.length;
  }

  /** Columns of leading white space, or -1 for a blank line. */
  indent(i: number): number {
    const s = this.starts[i];
    const e = this.end(i);
    for (let p = s; p < e; p++) {
      const c = this.text.charCodeAt(p);
      if (c !== 32 && c !== 9 && c !== 13) return p - s;
    }
    return -1;
  }
}

function pickMiddle(text: string, lines: Lines, line: number, want: SpanKind, r: Rng, maxMiddle: number): { kind: SpanKind; start: number; end: number } {
  const lineStart = lines.starts[line];
  const lineEnd = lines.end(line);
  const indent = lines.indent(line);
  if (want === "rest-of-line" && indent !== -1 && lineEnd - (lineStart + indent) >= 2) {
    // Cursor somewhere in the line's code, middle = the rest of the line (the newline stays in the suffix).
    const start = safeCut(text, r.int(lineStart + indent, lineEnd - 1));
    return { kind: "rest-of-line", start, end: clip(text, start, lineEnd, maxMiddle) };
  }
  // Whole lines start either at the line's first column or after its indentation, where an editor that indents
  // by itself leaves the cursor.
  const afterIndent = r.next() < 0.5;
  const at = (i: number) => lines.starts[i] + (afterIndent ? Math.max(0, lines.indent(i)) : 0);
  if (want === "block") {
    for (let first = line; first < Math.min(lines.count, line + BLOCK_TRIES); first++) {
      const last = blockEnd(lines, first);
      if (last === null || last === first) continue;
      const start = at(first);
      const end = lines.next(last);
      if (end - start <= maxMiddle) return { kind: "block", start, end };
    }
  }
  const start = at(line);
  const end = lines.next(Math.min(lines.count - 1, line + r.int(1, 3) - 1));
  return { kind: "lines", start, end: clip(text, start, end, maxMiddle) };
}

/**
 * The last line of the block that starts at line `first`: the lines from it on that are not blank and not indented
 * less than it (its body, and a closing line at its own level), up to a blank line, a dedent, or the end of the
 * file. Null when `first` is blank.
 */
function blockEnd(lines: Lines, first: number): number | null {
  const level = lines.indent(first);
  if (level === -1) return null;
  let last = first;
  while (last + 1 < lines.count) {
    const next = lines.indent(last + 1);
    if (next === -1 || next < level) break;
    last++;
  }
  return last;
}

/** End of a middle from `start`, at most `max` long: cut after the last whole line that fits, or mid-line. */
function clip(text: string, start: number, end: number, max: number): number {
  if (end - start <= max) return end;
  const nl = text.lastIndexOf("\n", start + max - 1);
  if (nl >= start) return nl + 1;
  const cut = safeCut(text, start + max);
  return cut > start ? cut : Math.min(text.length, start + max);
}

/** A next-token window: from the start of `line`, up to `chars` characters, ending after a whole line if one fits. */
function plainWindow(text: string, lines: Lines, line: number, chars: number): [number, number] {
  const start = lines.starts[line];
  return [start, clip(text, start, text.length, chars)];
}

/** Moves a cut point off the second half of a surrogate pair, so no example holds half a character. */
function safeCut(text: string, i: number): number {
  if (i <= 0) return 0;
  if (i >= text.length) return text.length;
  const c = text.charCodeAt(i);
  return c >= 0xdc00 && c <= 0xdfff ? i - 1 : i;
}

/**
 * The span rebuilt for a budget narrowed by `factor` (an example that came out longer than the sequence length:
 * code denser than the sample): the middle is clipped as a new one would be, and the prompt cut as before.
 */
export function narrowSpan(text: string, span: FimSpan, budget: Budget, factor: number): FimSpan {
  const end = span.start + span.middle.length;
  if (span.kind === "next-token") {
    const cut = clip(text, span.start, end, Math.max(2, Math.floor(budget.plain * factor)));
    return { ...span, middle: text.slice(span.start, cut) };
  }
  const cut = clip(text, span.start, end, Math.max(2, Math.floor(budget.middle * factor)));
  const { prefix, suffix } = exampleWindow(span.openEnd ? text.slice(0, cut) : text, span.start, cut, Math.floor(budget.prompt * factor));
  return { ...span, prefix, middle: text.slice(span.start, cut), suffix };
}

/** Prefix and suffix for a completion at `offset` (an empty middle), cut like the training windows. */
export function cursorWindow(text: string, offset: number, windowChars: number): { prefix: string; suffix: string } {
  const at = safeCut(text, offset);
  return fimWindow(text, at, at, windowChars);
}
