// Completion tasks drawn from held-out files, shaped like real use: the rest of the line being typed, the next line
// after Enter, and the body of a block after an opener. Each task takes a span out of the file (the user has not
// written it yet) and expects it back, cut as cleanCompletion cuts a completion in that situation, so a model that
// writes exactly what the file has scores an exact match. Deterministic from a seed.
import * as path from "node:path";
import { cleanCompletion, completionMode } from "../completionText";
import { languageOf } from "../dataset/classify";
import { hash32, rng, type Rng } from "../dataset/random";

/**
 * line: the cursor mid-line, after some code; the rest of the line is missing.
 * next-line: the cursor on an empty line (after its indentation) where a line of code belongs.
 * block: the cursor on an empty line right after an opener (`{`, `:`, `=>`...); the block's first lines are missing.
 */
export type TaskKind = "line" | "next-line" | "block";

export interface EvalTask {
  file: string;
  /** Cursor offset in the file's text. */
  offset: number;
  /** End of the span taken out of the file ([offset, end)): the document the model sees has it removed. */
  end: number;
  kind: TaskKind;
  /** What the file really has at the cursor, cut as cleanCompletion cuts a completion of this kind. */
  expected: string;
  language: string;
  /** Cursor position, 1-based (line, and column in UTF-16 units), as `repotune complete --line --col` takes it. */
  line: number;
  col: number;
}

export interface SourceText {
  path: string;
  text: string;
}

export interface TaskOptions {
  seed: number;
  maxTasks: number;
  /** Relative weights of the kinds; DEFAULT_TASK_MIX when absent. */
  mix?: Readonly<Record<TaskKind, number>>;
  /** Only cursors in the last `tail` of each file's lines (a single-file repository holds out its end). */
  tail?: number;
}

/** Most completions finish the line being typed; then the next line; a block is the longer suggestion. */
export const DEFAULT_TASK_MIX: Readonly<Record<TaskKind, number>> = { line: 0.5, "next-line": 0.3, block: 0.2 };

const KINDS: readonly TaskKind[] = ["line", "next-line", "block"];
/** A task whose answer is one character (`;`, `)`) says little about a model: at least this many non-blank ones. */
const MIN_EXPECTED_CHARS = 2;
/** cleanCompletion keeps at most 40 lines of a block. */
const MAX_BLOCK_LINES = 40;
/** completionMode and cleanCompletion read only the lines next to the cursor: they get this much on each side. */
const CONTEXT_CHARS = 4096;

/** The document a task's completion is asked in: the file with the task's span taken out. */
export function taskDocument(text: string, task: Pick<EvalTask, "offset" | "end">): string {
  return text.slice(0, task.offset) + text.slice(task.end);
}

/**
 * Up to `maxTasks` tasks, taken from the files in turn (sorted by path) so that each file counts alike, each task's
 * kind drawn from the mix among the kinds the file still has places for. The same files and seed give the same tasks.
 */
export function sampleTasks(files: readonly SourceText[], opts: TaskOptions): EvalTask[] {
  const mix = opts.mix ?? DEFAULT_TASK_MIX;
  const sorted = [...files].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  let pools = sorted.map((f) => new FilePool(f, rng(hash32(`repotune-eval:${opts.seed}:${f.path}`)), opts.tail));
  const kinds = rng(hash32(`repotune-eval-kinds:${opts.seed}`));
  const tasks: EvalTask[] = [];
  while (tasks.length < opts.maxTasks && pools.length > 0) {
    const spent = new Set<FilePool>();
    for (const pool of pools) {
      if (tasks.length >= opts.maxTasks) break;
      const task = pool.draw(mix, kinds.next());
      if (task) tasks.push(task);
      else spent.add(pool); // nothing left of the kinds the mix asks for
    }
    pools = pools.filter((p) => !spent.has(p));
  }
  return tasks;
}

interface Line {
  start: number;
  /** End of the line's text, before "\r\n" or "\n". */
  end: number;
  indent: number;
  /** First and one past the last character of code (outside comments) on the line; -1 when there is none. */
  codeFirst: number;
  codeLast: number;
}

/** The places one file offers for each kind of task, drawn without replacement. */
class FilePool {
  private readonly lines: Line[];
  private readonly comments: CommentRanges;
  private readonly language: string;
  private readonly left: Record<TaskKind, number[]>;
  /** Cursor offsets not yet drawn on each line already drawn from for a rest-of-line task. */
  private readonly positions = new Map<number, number[]>();

  constructor(private readonly file: SourceText, private readonly r: Rng, tail?: number) {
    this.comments = new CommentRanges(file.text, syntaxFor(file.path));
    this.lines = splitLines(file.text, this.comments);
    this.language = languageOf(file.path, file.text) ?? (path.extname(file.path).slice(1) || "text");
    const from = tail === undefined ? 0 : Math.floor(this.lines.length * (1 - tail));
    this.left = { line: [], "next-line": [], block: [] };
    for (let i = from; i < this.lines.length; i++) {
      const l = this.lines[i];
      if (l.codeFirst < 0) continue;
      // Some code before the cursor and some after it, on the line.
      if (l.codeLast - l.codeFirst >= 2) this.left.line.push(i);
      if (i > 0) this.left[this.startsBlock(i) ? "block" : "next-line"].push(i);
    }
  }

  /** A task of a kind drawn from the mix among the kinds this file still has; null when it has none left. */
  draw(mix: Readonly<Record<TaskKind, number>>, u: number): EvalTask | null {
    for (;;) {
      const kind = pickKind(mix, u, KINDS.filter((k) => this.left[k].length > 0));
      if (kind === null) return null;
      const list = this.left[kind];
      const at = this.r.int(0, list.length - 1);
      const index = list[at];
      // A line is typed one character at a time, so it offers a rest-of-line task at each of its cursors: it stays
      // in the pool until they are all drawn (a small held-out file then still gives enough tasks).
      const offset = kind === "line" ? this.drawCursor(index) : undefined;
      if (kind !== "line" || offset === undefined || this.positions.get(index)!.length === 0) {
        list[at] = list[list.length - 1];
        list.pop();
      }
      if (kind === "line" && offset === undefined) continue;
      const task = this.task(kind, index, offset);
      if (task) return task;
    }
  }

  /** An empty line at line `i` (its indentation typed) would get a block completion: the line above opens one. */
  private startsBlock(i: number): boolean {
    const l = this.lines[i];
    const cursor = l.start + l.indent;
    const prefix = this.file.text.slice(Math.max(0, cursor - CONTEXT_CHARS), cursor);
    return completionMode(prefix, "\n") === "block";
  }

  /** A cursor on line `i` not drawn before: after its first character of code and before its last, outside comments. */
  private drawCursor(i: number): number | undefined {
    let left = this.positions.get(i);
    if (left === undefined) {
      const l = this.lines[i];
      left = [];
      for (let p = l.codeFirst + 1; p < l.codeLast; p++) if (!this.comments.contains(p) && !isLowSurrogate(this.file.text, p)) left.push(p);
      this.positions.set(i, left);
    }
    if (left.length === 0) return undefined;
    const at = this.r.int(0, left.length - 1);
    const offset = left[at];
    left[at] = left[left.length - 1];
    left.pop();
    return offset;
  }

  private task(kind: TaskKind, i: number, cursor?: number): EvalTask | null {
    const l = this.lines[i];
    const text = this.file.text;
    const offset = cursor ?? l.start + l.indent;
    const end = kind === "block" ? this.blockEnd(i) : l.end;
    const prefix = text.slice(Math.max(0, offset - CONTEXT_CHARS), offset);
    const suffix = text.slice(end, end + CONTEXT_CHARS + (end - offset));
    const expected = cleanCompletion(text.slice(offset, end), { prefix, suffix, singleLine: kind !== "block" });
    if (expected.replace(/\s/g, "").length < MIN_EXPECTED_CHARS) return null;
    return { file: this.file.path, offset, end, kind, expected, language: this.language, line: i + 1, col: offset - l.start + 1 };
  }

  /**
   * End of the block that starts at line `i`, as cleanCompletion's firstBlock ends one: before a blank line or a
   * line indented less than the first, at most MAX_BLOCK_LINES lines. A closing line stays in the file (an editor
   * has usually closed the bracket already), so the task asks for the body.
   */
  private blockEnd(i: number): number {
    const first = indentWidth(this.file.text, this.lines[i]);
    let last = i;
    for (let j = i + 1; j < this.lines.length && j - i < MAX_BLOCK_LINES; j++) {
      const l = this.lines[j];
      if (l.end - l.start === l.indent) break; // blank
      if (indentWidth(this.file.text, l) < first) break;
      last = j;
    }
    return this.lines[last].end;
  }
}

function pickKind(mix: Readonly<Record<TaskKind, number>>, u: number, available: TaskKind[]): TaskKind | null {
  const weighted = available.filter((k) => mix[k] > 0);
  const total = weighted.reduce((s, k) => s + mix[k], 0);
  if (total <= 0) return null;
  let x = u * total;
  for (const k of weighted) if ((x -= mix[k]) < 0) return k;
  return weighted[weighted.length - 1];
}

function splitLines(text: string, comments: CommentRanges): Line[] {
  const out: Line[] = [];
  let start = 0;
  while (start <= text.length) {
    let nl = text.indexOf("\n", start);
    if (nl < 0) nl = text.length;
    const end = nl > start && text[nl - 1] === "\r" ? nl - 1 : nl;
    let indent = 0;
    while (start + indent < end && (text[start + indent] === " " || text[start + indent] === "\t")) indent++;
    let codeFirst = -1;
    let codeLast = -1;
    for (let p = start + indent; p < end; p++) {
      if (text[p] === " " || text[p] === "\t" || comments.contains(p)) continue;
      if (codeFirst < 0) codeFirst = p;
      codeLast = p + 1;
    }
    out.push({ start, end, indent, codeFirst, codeLast });
    if (nl === text.length) break;
    start = nl + 1;
  }
  return out;
}

function indentWidth(text: string, l: Line): number {
  return text.slice(l.start, l.start + l.indent).replace(/\t/g, "    ").length;
}

function isLowSurrogate(text: string, p: number): boolean {
  const c = text.charCodeAt(p);
  return c >= 0xdc00 && c <= 0xdfff;
}

// ---- comments ---------------------------------------------------------------------------------------------

interface CommentSyntax {
  line: string[];
  block: [string, string][];
  /** Quotes whose strings are skipped (a comment marker inside a string is text); multi-line ones may span lines. */
  quotes: string[];
  multiLineQuotes?: string[];
}

const C_LIKE: CommentSyntax = { line: ["//"], block: [["/*", "*/"]], quotes: ['"', "'", "`"], multiLineQuotes: ["`"] };
// Docstrings are prose, like comments: a completion is not asked for inside them.
const PYTHON: CommentSyntax = { line: ["#"], block: [['"""', '"""'], ["'''", "'''"]], quotes: ['"', "'"] };
const HASH: CommentSyntax = { line: ["#"], block: [], quotes: ['"', "'"] };
const DASHES: CommentSyntax = { line: ["--"], block: [["--[[", "]]"], ["{-", "-}"], ["/*", "*/"]], quotes: ['"', "'"] };
const SEMICOLON: CommentSyntax = { line: [";"], block: [], quotes: ['"'] };
const PERCENT: CommentSyntax = { line: ["%"], block: [], quotes: ['"'] };
const MARKUP: CommentSyntax = { line: [], block: [["<!--", "-->"]], quotes: [] };
const NONE: CommentSyntax = { line: [], block: [], quotes: [] };

const SYNTAX_BY_EXTENSION: Record<string, CommentSyntax> = {};
for (const [syntax, exts] of [
  [C_LIKE, "js jsx mjs cjs ts tsx mts cts c h cc cpp cxx hpp hh cs java go rs swift kt kts scala dart groovy gradle zig proto sol php css scss less jsonc"],
  [PYTHON, "py pyi pyw"],
  [HASH, "rb sh bash zsh fish pl pm r yaml yml toml cmake mk ex exs jl nim ps1 tf hcl conf cfg coffee cr dockerfile makefile"],
  [DASHES, "sql lua hs elm ada"],
  [SEMICOLON, "lisp el clj cljs edn scm rkt asm s ini"],
  [PERCENT, "tex sty erl hrl"],
  [MARKUP, "html htm xml svg vue svelte md markdown"],
] as const) {
  for (const ext of exts.split(" ")) SYNTAX_BY_EXTENSION[ext] = syntax;
}

function syntaxFor(file: string): CommentSyntax {
  const base = path.basename(file).toLowerCase();
  const ext = base.includes(".") ? base.slice(base.lastIndexOf(".") + 1) : base;
  return SYNTAX_BY_EXTENSION[ext] ?? NONE;
}

/** Where a file's comments are, found in one pass that skips strings. */
class CommentRanges {
  private readonly starts: number[] = [];
  private readonly ends: number[] = [];

  constructor(text: string, syntax: CommentSyntax) {
    let i = 0;
    while (i < text.length) {
      const block = syntax.block.find(([open]) => text.startsWith(open, i));
      if (block) {
        const close = text.indexOf(block[1], i + block[0].length);
        const end = close < 0 ? text.length : close + block[1].length;
        this.add(i, end);
        i = end;
        continue;
      }
      if (syntax.line.some((m) => text.startsWith(m, i))) {
        const nl = text.indexOf("\n", i);
        const end = nl < 0 ? text.length : nl;
        this.add(i, end);
        i = end;
        continue;
      }
      const ch = text[i];
      if (syntax.quotes.includes(ch)) {
        const multi = syntax.multiLineQuotes?.includes(ch) ?? false;
        let j = i + 1;
        while (j < text.length && text[j] !== ch && (multi || text[j] !== "\n")) j += text[j] === "\\" ? 2 : 1;
        i = j + 1;
        continue;
      }
      i++;
    }
  }

  private add(start: number, end: number): void {
    this.starts.push(start);
    this.ends.push(end);
  }

  /** Whether offset `p` is inside a comment (binary search over the sorted ranges). */
  contains(p: number): boolean {
    let lo = 0;
    let hi = this.starts.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (p < this.starts[mid]) hi = mid - 1;
      else if (p >= this.ends[mid]) lo = mid + 1;
      else return true;
    }
    return false;
  }
}
