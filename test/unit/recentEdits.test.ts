// Which recently edited files a completion prompt shows, and which of their lines (src/core/recentEdits.ts).
import { test } from "node:test";
import assert from "node:assert/strict";
import { contextKey, RecentEdits, snippetAround, SNIPPET_CHARS, SNIPPET_LINES } from "../../src/core/recentEdits";

test("the most recently edited other files of the same language, oldest first, one entry per file", () => {
  const edits = new RecentEdits(4);
  edits.record({ key: "a.ts", language: "typescript", line: 1 });
  edits.record({ key: "b.py", language: "python", line: 2 });
  edits.record({ key: "c.ts", language: "typescript", line: 3 });
  edits.record({ key: "a.ts", language: "typescript", line: 9 }); // a.ts again: moves to the front, with its new line
  edits.record({ key: "d.ts", language: "typescript", line: 4 });
  // Current file d.ts: the two others of its language, the last edited next to the current file.
  assert.deepEqual(edits.pick("d.ts", "typescript", 2), [
    { key: "c.ts", language: "typescript", line: 3 },
    { key: "a.ts", language: "typescript", line: 9 },
  ]);
  assert.deepEqual(edits.pick("d.ts", "typescript", 1).map((m) => m.key), ["a.ts"]);
  assert.deepEqual(edits.pick("x.py", "python", 3).map((m) => m.key), ["b.py"]);
  assert.deepEqual(edits.pick("d.ts", "typescript", 0), []);
  // Typing in the current file changes nothing the prompt shows (its start, cached by the engine, stays the same).
  const before = edits.pick("d.ts", "typescript", 3);
  edits.record({ key: "d.ts", language: "typescript", line: 5 });
  assert.deepEqual(edits.pick("d.ts", "typescript", 3), before);
  // Bounded: the oldest falls out; a closed file is forgotten.
  edits.record({ key: "e.ts", language: "typescript", line: 0 });
  assert.ok(!edits.pick("z", "python", 5).length, "b.py, the oldest, fell out of the 4 kept");
  edits.forget("a.ts");
  assert.deepEqual(edits.pick("z", "typescript", 5).map((m) => m.key), ["c.ts", "d.ts", "e.ts"]);
});

test("a snippet is whole lines around the edit, at most SNIPPET_LINES and SNIPPET_CHARS", () => {
  const lines = Array.from({ length: 100 }, (_, i) => `line ${i}`);
  const around50 = snippetAround(lines, 50).split("\n");
  assert.equal(around50.length, SNIPPET_LINES);
  assert.ok(around50.includes("line 50") && around50[0] === `line ${50 - Math.floor(SNIPPET_LINES / 3)}`);
  // At the start and the end of a file the window slides inside it.
  assert.equal(snippetAround(lines, 0).split("\n")[0], "line 0");
  assert.equal(snippetAround(lines, 99).split("\n").at(-1), "line 99");
  assert.equal(snippetAround(lines, 99).split("\n").length, SNIPPET_LINES);
  assert.equal(snippetAround(lines, 500).split("\n").at(-1), "line 99", "a line past the end (the file shrank) is clamped");
  // Long lines: whole lines are dropped, the edited one kept, until it fits.
  const long = Array.from({ length: 30 }, (_, i) => `${i}:`.padEnd(200, "x"));
  const cut = snippetAround(long, 10);
  assert.ok(cut.length <= SNIPPET_CHARS, `${cut.length} chars`);
  assert.ok(cut.split("\n").every((l) => l.length === 200) && cut.includes("10:"), "whole lines, the edited one among them");
  // One line longer than the limit: its start.
  assert.equal(snippetAround(["y".repeat(5000)], 0), "y".repeat(SNIPPET_CHARS));
  // Blank stretches show nothing.
  assert.equal(snippetAround(["", "  ", ""], 1), "");
  assert.equal(snippetAround([], 0), "");
});

test("the cache scope changes with the snippets and is empty without them", () => {
  assert.equal(contextKey([]), "");
  const a = contextKey([{ path: "a.ts", text: "x" }]);
  assert.notEqual(a, contextKey([{ path: "a.ts", text: "y" }]));
  assert.notEqual(a, contextKey([{ path: "b.ts", text: "x" }]));
  assert.equal(a, contextKey([{ path: "a.ts", text: "x" }]));
});
