import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { cleanCompletion, completionMode, isMidLine } from "../../src/core/completionText";

describe("multiline policy", () => {
  test("a cursor is mid-line when its line has code before or after it", () => {
    assert.equal(isMidLine("a\nconst x = ", "\nb"), true);
    assert.equal(isMidLine("a\n", "foo();\nb"), true);
    assert.equal(isMidLine("a\n    ", "\nb"), false);
    assert.equal(isMidLine("", ""), false);
  });

  test("mid-line gives one line; an empty line after an opener gives a block; another empty line one line", () => {
    assert.equal(completionMode("const x = ", ";\n"), "line");
    assert.equal(completionMode("function f() {\n  ", "\n}\n"), "block");
    assert.equal(completionMode("def f(x):\n    ", "\n"), "block");
    assert.equal(completionMode("items.map((x) =>\n  ", "\n"), "block");
    assert.equal(completionMode("const a = 1;\n", "\nconst b = 2;"), "line");
    assert.equal(completionMode("if x then\n  ", ""), "block");
  });
});

describe("post-processing", () => {
  test("mid-line completions end at the end of the line", () => {
    assert.equal(cleanCompletion('zebra-quartz-42";\nconst x = 1;', { suffix: "", singleLine: true }), 'zebra-quartz-42";');
  });

  test("block completions end at the first blank line, and after at most a screenful", () => {
    assert.equal(cleanCompletion("  a();\n  b();\n\nfunction c() {}", { prefix: "f() {\n", suffix: "", singleLine: false }), "  a();\n  b();");
    const long = Array.from({ length: 100 }, (_, i) => `  s${i}();`).join("\n");
    assert.equal(cleanCompletion(long, { prefix: "{\n", suffix: "", singleLine: false }).split("\n").length, 40);
  });

  test("a block ends at a dedent below its first line, keeping a closer of its own", () => {
    const raw = "    return x\n\ndef g():\n    pass";
    assert.equal(cleanCompletion(raw, { prefix: "def f(x):\n", suffix: "\n", singleLine: false }), "    return x");
    const js = "  if (a) {\n    b();\n  }\n}\nfunction next() {";
    // The inner block is balanced; the outer "}" closes the function opened before the cursor and the suffix has none.
    assert.equal(cleanCompletion(js, { prefix: "function f() {\n", suffix: "\n", singleLine: false }), "  if (a) {\n    b();\n  }\n}");
  });

  test("a completion stops where it would repeat the rest of the line", () => {
    assert.equal(cleanCompletion('zebra-quartz-42";', { suffix: '";\nnext', singleLine: true }), "zebra-quartz-42");
  });

  test("a completion stops before a line the code after the cursor already has", () => {
    const raw = "  a();\n  b();\n  return c;\n";
    assert.equal(cleanCompletion(raw, { prefix: "function f() {\n", suffix: "\n  return c;\n}", singleLine: false }), "  a();\n  b();");
  });

  test("an unbalanced closer the suffix already has is dropped; one it lacks ends the completion", () => {
    assert.equal(cleanCompletion("a, b)", { suffix: ")", singleLine: true }), "a, b");
    assert.equal(cleanCompletion("a, b); more()", { suffix: "", singleLine: true }), "a, b)");
    assert.equal(cleanCompletion("f(a), g[0])", { suffix: ");", singleLine: true }), "f(a), g[0]");
    // Brackets inside strings do not count.
    assert.equal(cleanCompletion('s = ")"', { suffix: ")", singleLine: true }), 's = ")"');
    // In a block, a closer alone on its line that the suffix has: the block stops before that line.
    assert.equal(cleanCompletion("  a();\n}\n", { prefix: "f() {\n", suffix: "\n}", singleLine: false }), "  a();");
  });

  test("repeated lines are cut at their second occurrence, and the line above is not written again", () => {
    const loop = "  x += 1;\n  y += 1;\n  x += 1;\n  y += 1;";
    assert.equal(cleanCompletion(loop, { prefix: "{\n", suffix: "", singleLine: false }), "  x += 1;\n  y += 1;");
    assert.equal(cleanCompletion("  a();\n  go();", { prefix: "{\n  go();\n", suffix: "", singleLine: false }), "  a();");
  });

  test("nothing new is no completion: whitespace, or exactly the text already after the cursor", () => {
    assert.equal(cleanCompletion("  \n ", { suffix: "", singleLine: false }), "");
    assert.equal(cleanCompletion("foo()", { suffix: "foo()\n", singleLine: true }), "");
    assert.equal(cleanCompletion("x\r\ny", { suffix: "", singleLine: true }), "x");
  });
});
