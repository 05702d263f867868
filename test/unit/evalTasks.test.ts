// Evaluation tasks: the three kinds sit where a completion is asked in real use, expect what the file has there cut
// as the serving post-processing cuts it, avoid comments, and come out the same for the same seed.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { sampleTasks, taskDocument, type EvalTask, type SourceText } from "../../src/core/eval/tasks";
import { cleanCompletion, completionMode } from "../../src/core/completionText";

const TS: SourceText = {
  path: "src/cart.ts",
  text: [
    "// The cart: items and their total.",
    'import { Item } from "./item";',
    "",
    "export function total(items: Item[]): number {",
    "  let sum = 0;",
    "  for (const item of items) sum += item.price * item.count;",
    "  return sum;",
    "}",
    "",
    "export function count(items: Item[]): number {",
    "  return items.reduce((n, item) => n + item.count, 0);",
    "}",
    "",
    "export class Cart {",
    "  private items: Item[] = [];",
    "  add(item: Item): void {",
    "    this.items.push(item);",
    "  }",
    "  clear(): void {",
    "    this.items = [];",
    "    this.saved = false;",
    "  }",
    "}",
    "",
  ].join("\n"),
};

const PY: SourceText = {
  path: "tools/report.py",
  text: [
    "# Reports of the cart.",
    "import json",
    "",
    "",
    "def report(items):",
    '    """Summarise the items as JSON.',
    "",
    "    Every item counts once per unit.",
    '    """',
    "    total = sum(i.price * i.count for i in items)  # all units",
    '    return json.dumps({"total": total, "n": len(items)})',
    "",
  ].join("\n"),
};

function docParts(file: SourceText, t: EvalTask): { prefix: string; suffix: string } {
  const doc = taskDocument(file.text, t);
  return { prefix: doc.slice(0, t.offset), suffix: doc.slice(t.offset) };
}

function lineOf(text: string, offset: number): string {
  const start = text.lastIndexOf("\n", offset - 1) + 1;
  const end = text.indexOf("\n", offset);
  return text.slice(start, end < 0 ? text.length : end);
}

describe("evaluation tasks", () => {
  const tasks = sampleTasks([TS, PY], { seed: 1, maxTasks: 200 });

  test("the three kinds are drawn, each at a cursor the serving path treats as that kind", () => {
    const kinds = new Set(tasks.map((t) => t.kind));
    assert.deepEqual([...kinds].sort(), ["block", "line", "next-line"]);
    for (const t of tasks) {
      const file = t.file === TS.path ? TS : PY;
      const { prefix, suffix } = docParts(file, t);
      const lineBefore = prefix.slice(prefix.lastIndexOf("\n") + 1);
      // The span taken out ends at the end of a line: the user has not written the rest yet.
      assert.ok(file.text[t.end] === "\n" || t.end === file.text.length, `${JSON.stringify(t)} does not end at a line end`);
      if (t.kind === "line") {
        assert.ok(lineBefore.trim().length > 0, "a rest-of-line task has code before the cursor");
        assert.equal(completionMode(prefix, suffix), "line");
      } else {
        assert.equal(lineBefore.trim(), "", "next-line and block tasks start on an empty (indented) line");
        assert.equal(completionMode(prefix, suffix), t.kind === "block" ? "block" : "line");
      }
      // The expected text is what the file has there (possibly cut shorter), and the serving post-processing of it
      // is itself: a model that writes exactly the file's text scores an exact match.
      assert.ok(file.text.slice(t.offset, t.end).startsWith(t.expected), `${JSON.stringify(t)}`);
      assert.equal(cleanCompletion(t.expected, { prefix, suffix, singleLine: t.kind !== "block" }), t.expected);
      // 1-based line and column of the cursor.
      const lines = file.text.split("\n");
      assert.equal(lines.slice(0, t.line - 1).reduce((n, l) => n + l.length + 1, 0) + t.col - 1, t.offset);
    }
  });

  test("a block task asks for the body after an opener, up to the end of the block, leaving the closer", () => {
    const blocks = tasks.filter((t) => t.kind === "block" && t.file === TS.path);
    const body = blocks.find((t) => t.expected.startsWith("let sum = 0;"));
    assert.ok(body, `no block task in total(): ${JSON.stringify(blocks.map((b) => b.expected))}`);
    assert.equal(body.expected, "let sum = 0;\n  for (const item of items) sum += item.price * item.count;\n  return sum;");
    assert.equal(TS.text.slice(body.end, body.end + 2), "\n}");
    const clear = blocks.find((t) => t.expected.startsWith("this.items = [];"));
    assert.ok(clear, "the method body in the class is a block task");
    assert.equal(clear.expected, "this.items = [];\n    this.saved = false;");
  });

  test("a next-line task expects the line's code after its indentation", () => {
    for (const t of tasks.filter((x) => x.kind === "next-line")) {
      const file = t.file === TS.path ? TS : PY;
      assert.equal(t.expected, lineOf(file.text, t.offset).trim().replace(/\s+$/, ""));
    }
  });

  test("no cursor is in a comment or a docstring, and no task is on a comment-only line", () => {
    for (const t of tasks) {
      const file = t.file === TS.path ? TS : PY;
      const line = lineOf(file.text, t.offset);
      assert.ok(!/^\s*(\/\/|#)/.test(line), `task on a comment line: ${JSON.stringify(t)}`);
      assert.ok(!["Every item counts once per unit.", '"""'].includes(line.trim()) && !line.includes('"""Summarise'), `task in a docstring: ${line}`);
      if (t.kind === "line") {
        const before = file.text.slice(file.text.lastIndexOf("\n", t.offset - 1) + 1, t.offset);
        assert.ok(!before.includes("# all units"), `cursor inside the trailing comment: ${JSON.stringify(t)}`);
      }
    }
    // A code line with a trailing comment still gets rest-of-line tasks (their cursor in the code).
    const withComment = tasks.filter((t) => t.kind === "line" && t.file === PY.path && lineOf(PY.text, t.offset).includes("# all units"));
    assert.ok(withComment.length > 0, "the line with a trailing comment had no rest-of-line task");
  });

  test("a comment marker inside a string is text, and the cursor may follow it", () => {
    const file: SourceText = { path: "src/url.ts", text: 'export const home = "https://example.com/start";\n' };
    const offsets = new Set<number>();
    for (let seed = 0; seed < 40; seed++) for (const t of sampleTasks([file], { seed, maxTasks: 5 })) offsets.add(t.offset);
    assert.ok([...offsets].some((o) => o > file.text.indexOf("//") + 2), `offsets ${[...offsets].join(",")}`);
  });

  test("the same files and seed give the same tasks; another seed others", () => {
    assert.deepEqual(sampleTasks([PY, TS], { seed: 1, maxTasks: 200 }), tasks);
    const other = sampleTasks([TS, PY], { seed: 2, maxTasks: 200 });
    assert.notDeepEqual(other.map((t) => [t.file, t.offset, t.kind]), tasks.map((t) => [t.file, t.offset, t.kind]));
  });

  test("files take turns, each task is different, and maxTasks is respected", () => {
    const few = sampleTasks([TS, PY], { seed: 3, maxTasks: 6 });
    assert.equal(few.length, 6);
    assert.deepEqual(few.map((t) => t.file), [TS.path, PY.path, TS.path, PY.path, TS.path, PY.path]);
    const keys = tasks.map((t) => `${t.file}:${t.offset}:${t.kind}`);
    assert.equal(new Set(keys).size, keys.length);
  });

  test("languages come from the file names; tail keeps the cursors in the end of the file", () => {
    assert.deepEqual([...new Set(tasks.map((t) => `${t.file}=${t.language}`))].sort(), ["src/cart.ts=TypeScript", "tools/report.py=Python"]);
    const lines = TS.text.split("\n").length;
    const tail = sampleTasks([TS], { seed: 0, maxTasks: 50, tail: 0.3 });
    assert.ok(tail.length > 0);
    for (const t of tail) assert.ok(t.line > Math.floor(lines * 0.7), `line ${t.line} of ${lines}`);
  });

  test("a mix without a kind never draws it, and stops when the kinds it asks for run out", () => {
    const only = sampleTasks([TS, PY], { seed: 0, maxTasks: 1000, mix: { line: 0, "next-line": 1, block: 0 } });
    assert.ok(only.length > 0 && only.every((t) => t.kind === "next-line"));
    assert.equal(only.length, tasks.filter((t) => t.kind === "next-line").length, "every next-line place, once");
  });

  test("a file of comments, blank lines and one-character lines offers no task", () => {
    const file: SourceText = { path: "a.js", text: "// only\n/* comments\n   here */\n\n}\n;\n" };
    assert.deepEqual(sampleTasks([file], { seed: 0, maxTasks: 10 }), []);
  });
});
