// Where to cut a file into prefix / middle / suffix. The middle is what a completion would insert at a cursor:
// the rest of a line, a few whole lines, or a small block. Prefix and suffix are the code around it, clipped to
// a window that fits the model's sequence length, at line boundaries where possible.
import type { Rng } from "./random";

export interface FimSpan {
  prefix: string;
  middle: string;
  suffix: string;
  /** Offset of the middle in the file: examples of one file sort by it. */
  start: number;
  /** The suffix was left out (see OPEN_END_SHARE). */
  openEnd: boolean;
}

/** Share of a training sequence the text of an example may fill; the rest is headroom for the estimate's error. */
export const WINDOW_FILL = 0.9;

/**
 * How many characters of code around a cursor (prefix + middle + suffix) fit in `seqLen` tokens, given the
 * model's characters per token for this code, after the prompt's file and repository headers. Training examples and
 * completion prompts are both sized here, so a prompt is as long as the examples the adapter learned from.
 */
export function windowCharsFor(seqLen: number, charsPerToken: number, filePath: string, repoName: string): number {
  // Headers and the FIM special tokens; generous, since the window is in characters and they are not code.
  const headerChars = filePath.length + repoName.length + 16;
  return Math.max(32, Math.floor(seqLen * WINDOW_FILL * charsPerToken) - headerChars);
}

/** Share of the window the prefix gets when both sides have more text than fits: code above the cursor says more. */
const PREFIX_SHARE = 0.6;

/**
 * Share of examples whose suffix is left out, as when the cursor is at the end of what is being written (new code at
 * the end of a file, or a file just created). Examples that all carry the file's real suffix do not teach that case:
 * measured on test/fixtures/sample-repo with the tiny model, a new line at the end of a new file completed as ";"
 * without such examples and as the fixture's line with them. The middle stays the true continuation.
 */
const OPEN_END_SHARE = 0.25;

/** `count` spans of `text`, one from each of `count` equal stretches of lines, so a file is covered evenly. */
export function fimSpans(text: string, count: number, windowChars: number, r: Rng): FimSpan[] {
  const starts = lineStarts(text);
  const maxMiddle = Math.max(16, Math.floor(windowChars / 3));
  const spans: FimSpan[] = [];
  for (let k = 0; k < count; k++) {
    const lo = Math.floor((k * starts.length) / count);
    const hi = Math.max(lo, Math.floor(((k + 1) * starts.length) / count) - 1);
    const [ms, me] = pickMiddle(text, starts, r.int(lo, hi), r, maxMiddle);
    const openEnd = r.next() < OPEN_END_SHARE;
    const { prefix, suffix } = fimWindow(openEnd ? text.slice(0, me) : text, ms, me, windowChars);
    spans.push({ prefix, middle: text.slice(ms, me), suffix, start: ms, openEnd });
  }
  return spans;
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

function lineStarts(text: string): number[] {
  const starts = [0];
  for (let i = text.indexOf("\n"); i !== -1 && i + 1 < text.length; i = text.indexOf("\n", i + 1)) starts.push(i + 1);
  return starts;
}

function pickMiddle(text: string, starts: number[], line: number, r: Rng, maxMiddle: number): [number, number] {
  const lineStart = starts[line];
  const lineEnd = line + 1 < starts.length ? starts[line + 1] - 1 : text.length; // excludes the "\n"
  const kind = r.next();
  let ms: number;
  let me: number;
  const indent = text.slice(lineStart, lineEnd).search(/\S/);
  if (kind < 0.45 && indent !== -1 && lineEnd - (lineStart + indent) >= 2) {
    // Cursor somewhere in the line's code, middle = the rest of the line (the newline stays in the suffix).
    ms = safeCut(text, r.int(lineStart + indent, lineEnd - 1));
    me = lineEnd;
  } else {
    const lines = kind < 0.85 ? r.int(1, 3) : r.int(4, 12);
    ms = lineStart;
    me = line + lines < starts.length ? starts[line + lines] : text.length;
  }
  if (me - ms > maxMiddle) {
    const limit = ms + maxMiddle;
    const nl = text.lastIndexOf("\n", limit - 1);
    me = nl >= ms ? nl + 1 : safeCut(text, limit);
    if (me <= ms) me = Math.min(text.length, ms + maxMiddle);
  }
  return [ms, me];
}

/** Moves a cut point off the second half of a surrogate pair, so no example holds half a character. */
function safeCut(text: string, i: number): number {
  if (i <= 0) return 0;
  if (i >= text.length) return text.length;
  const c = text.charCodeAt(i);
  return c >= 0xdc00 && c <= 0xdfff ? i - 1 : i;
}

/** Prefix and suffix for a completion at `offset` (an empty middle), cut like the training windows. */
export function cursorWindow(text: string, offset: number, windowChars: number): { prefix: string; suffix: string } {
  const at = safeCut(text, offset);
  return fimWindow(text, at, at, windowChars);
}
