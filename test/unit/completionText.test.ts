import { test } from "node:test";
import assert from "node:assert/strict";
import { cleanCompletion, isMidLine } from "../../src/core/completionText";

test("mid-line completions end at the end of the line", () => {
  assert.equal(cleanCompletion('zebra-quartz-42";\nconst x = 1;', { suffix: "", singleLine: true }), 'zebra-quartz-42";');
});

test("block completions end at the first blank line", () => {
  assert.equal(cleanCompletion("  a();\n  b();\n\nfunction c() {}", { suffix: "", singleLine: false }), "  a();\n  b();");
});

test("a completion stops where it would repeat the rest of the line", () => {
  assert.equal(cleanCompletion('zebra-quartz-42";', { suffix: '";\nnext', singleLine: true }), "zebra-quartz-42");
});

test("a cursor is mid-line when its line has code before or after it", () => {
  assert.equal(isMidLine("a\nconst x = ", "\nb"), true);
  assert.equal(isMidLine("a\n", "foo();\nb"), true);
  assert.equal(isMidLine("a\n    ", "\nb"), false);
  assert.equal(isMidLine("", ""), false);
});

test("whitespace-only output is no completion", () => {
  assert.equal(cleanCompletion("  \n ", { suffix: "", singleLine: false }), "");
});
