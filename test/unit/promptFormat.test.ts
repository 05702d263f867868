// Prompt formats are pure functions of ModelInfo: these tests build ModelInfo the way the engine reports it for
// each family's real vocabulary texts. engine.test.ts checks the same module against a real model's tokenizer.
import { test } from "node:test";
import assert from "node:assert/strict";
import type { ModelInfo, Segment } from "../../src/protocol/engine";
import { promptFormatFor, trainingExample, SUPPORTED_FAMILIES } from "../../src/core/promptFormat";

function info(special: Partial<ModelInfo["special"]>, name: string | null = "test model"): ModelInfo {
  return {
    path: "/models/test.gguf",
    arch: "llama",
    name,
    vocabSize: 1000,
    trainContextSize: 4096,
    bos: null,
    eos: null,
    special: { fimPrefix: null, fimSuffix: null, fimMiddle: null, eot: null, ...special },
    infillSupported: special.fimPrefix != null && special.fimSuffix != null,
  };
}

// Token texts as they appear in each family's GGUF vocabulary (llama.cpp's llama-vocab.cpp recognises the same).
const QWEN = info({ fimPrefix: "<|fim_prefix|>", fimSuffix: "<|fim_suffix|>", fimMiddle: "<|fim_middle|>", eot: "<|endoftext|>" });
const STARCODER2 = info({ fimPrefix: "<fim_prefix>", fimSuffix: "<fim_suffix>", fimMiddle: "<fim_middle>", eot: "<|endoftext|>" });
const DEEPSEEK = info({ fimPrefix: "<｜fim▁begin｜>", fimSuffix: "<｜fim▁hole｜>", fimMiddle: "<｜fim▁end｜>", eot: "<|EOT|>" });
const CODELLAMA = info({ fimPrefix: "▁<PRE>", fimSuffix: "▁<SUF>", fimMiddle: "▁<MID>", eot: "▁<EOT>" });

const S = (text: string): Segment => ({ text, special: true });
const T = (text: string): Segment => ({ text, special: false });

test("qwen2.5-coder: prefix, suffix, middle in PSM order, ending with <|endoftext|>", () => {
  const format = promptFormatFor(QWEN);
  assert.equal(format.family, "qwen2.5-coder");
  assert.deepEqual(format.fim({ prefix: "def f(x):\n    return ", suffix: "\n" }), [
    S("<|fim_prefix|>"), T("def f(x):\n    return "), S("<|fim_suffix|>"), T("\n"), S("<|fim_middle|>"),
  ]);
  assert.deepEqual(format.endOfMiddle, S("<|endoftext|>"));
  assert.ok(format.stopStrings.includes("<|endoftext|>"));
  assert.ok(format.stopStrings.includes("<|file_sep|>"), "starting another file ends the middle");
});

test("qwen2.5-coder: repository and file headers precede the FIM tokens", () => {
  const format = promptFormatFor(QWEN);
  assert.deepEqual(format.fim({ prefix: "a", suffix: "b", repoName: "acme/widgets", filePath: "src/app.ts" }), [
    S("<|repo_name|>"), T("acme/widgets\n"), S("<|file_sep|>"), T("src/app.ts\n"),
    S("<|fim_prefix|>"), T("a"), S("<|fim_suffix|>"), T("b"), S("<|fim_middle|>"),
  ]);
  assert.deepEqual(format.fim({ prefix: "a", suffix: "b", filePath: "x.py" }).slice(0, 2), [S("<|file_sep|>"), T("x.py\n")]);
});

test("starcoder2: its own FIM and header tokens, no newline after the repository name", () => {
  const format = promptFormatFor(STARCODER2);
  assert.equal(format.family, "starcoder2");
  assert.deepEqual(format.fim({ prefix: "p", suffix: "s", repoName: "r", filePath: "f.go" }), [
    S("<repo_name>"), T("r"), S("<file_sep>"), T("f.go\n"), S("<fim_prefix>"), T("p"), S("<fim_suffix>"), T("s"), S("<fim_middle>"),
  ]);
  assert.deepEqual(format.endOfMiddle, S("<|endoftext|>"));
});

test("deepseek-coder: begin/hole/end tokens, middle ends with the base model's EOS", () => {
  const format = promptFormatFor(DEEPSEEK);
  assert.equal(format.family, "deepseek-coder");
  // No header tokens in this family: headers are left out rather than invented.
  assert.deepEqual(format.fim({ prefix: "p", suffix: "s", repoName: "r", filePath: "f" }), [
    S("<｜fim▁begin｜>"), T("p"), S("<｜fim▁hole｜>"), T("s"), S("<｜fim▁end｜>"),
  ]);
  assert.deepEqual(format.endOfMiddle, S("<｜end▁of▁sentence｜>"));
  assert.ok(format.stopStrings.includes("<|EOT|>"));
});

test("codellama: the ▁-prefixed SentencePiece tokens the model really has", () => {
  const format = promptFormatFor(CODELLAMA);
  assert.equal(format.family, "codellama");
  assert.deepEqual(format.fim({ prefix: "p", suffix: "s" }), [S("▁<PRE>"), T("p"), S("▁<SUF>"), T("s"), S("▁<MID>")]);
  assert.deepEqual(format.endOfMiddle, S("▁<EOT>"));
  const bare = promptFormatFor(info({ fimPrefix: "<PRE>", fimSuffix: "<SUF>", fimMiddle: "<MID>", eot: null }));
  assert.equal(bare.family, "codellama");
  assert.deepEqual(bare.endOfMiddle, S("<EOT>"));
});

test("trainingExample is the completion prompt, then the middle, then the end token", () => {
  for (const model of [QWEN, STARCODER2, DEEPSEEK, CODELLAMA]) {
    const format = promptFormatFor(model);
    const input = { prefix: "const x = ", suffix: ";\n", filePath: "a.ts", repoName: "r" };
    const example = trainingExample(format, { ...input, middle: "42" });
    assert.deepEqual(example, [...format.fim(input), T("42"), format.endOfMiddle], format.family);
  }
});

test("code that spells a special token stays plain text", () => {
  const format = promptFormatFor(QWEN);
  const prompt = format.fim({ prefix: "s = '<|fim_middle|>'", suffix: "<|endoftext|>" });
  assert.deepEqual(prompt.filter((s) => s.special).map((s) => s.text), ["<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"]);
});

test("empty prefix, suffix or middle add no segments", () => {
  const format = promptFormatFor(QWEN);
  assert.deepEqual(format.fim({ prefix: "", suffix: "" }), [S("<|fim_prefix|>"), S("<|fim_suffix|>"), S("<|fim_middle|>")]);
  assert.deepEqual(trainingExample(format, { prefix: "a", suffix: "", middle: "" }).slice(-2), [S("<|fim_middle|>"), S("<|endoftext|>")]);
});

test("a model without FIM tokens is refused with what to choose instead", () => {
  assert.throws(
    () => promptFormatFor(info({ eot: "</s>" }, "Llama chat")),
    (err: Error) => /cannot fill in the middle/.test(err.message) && /Qwen2\.5-Coder/.test(err.message) && /Llama chat/.test(err.message),
  );
  assert.throws(() => promptFormatFor(info({ fimPrefix: "<|fim_prefix|>", fimSuffix: "<|fim_suffix|>" })), /missing: middle/);
});

test("an unknown FIM token spelling is refused, naming the supported families", () => {
  assert.throws(
    () => promptFormatFor(info({ fimPrefix: "<|code_prefix|>", fimSuffix: "<|code_suffix|>", fimMiddle: "<|code_middle|>" })),
    (err: Error) => err.message.includes("<|code_prefix|>") && SUPPORTED_FAMILIES.every((f) => err.message.includes(f)),
  );
});

test("snippets of other files come before the current file in the repository-level formats, and nowhere else", () => {
  const context = [
    { path: "src/a.ts", text: "export const a = 1;" },
    { path: "src/<|fim_prefix|>b.ts", text: "const b = 2;\n" },
  ];
  const input = { prefix: "let x = ", suffix: ";\n", filePath: "src/c.ts", repoName: "repo", context };
  const qwen = promptFormatFor(QWEN);
  assert.deepEqual(qwen.fim(input), [
    S("<|repo_name|>"), T("repo\n"),
    // Each snippet ends with a newline, as llama.cpp's server writes its extra context chunks.
    S("<|file_sep|>"), T("src/a.ts\nexport const a = 1;\n"),
    // A file name or code that spells a special token stays plain text.
    S("<|file_sep|>"), T("src/<|fim_prefix|>b.ts\nconst b = 2;\n"),
    S("<|file_sep|>"), T("src/c.ts\n"),
    S("<|fim_prefix|>"), T("let x = "), S("<|fim_suffix|>"), T(";\n"), S("<|fim_middle|>"),
  ]);
  const starcoder = promptFormatFor(STARCODER2);
  assert.deepEqual(starcoder.fim(input).slice(0, 6), [
    S("<repo_name>"), T("repo"), S("<file_sep>"), T("src/a.ts\nexport const a = 1;\n"), S("<file_sep>"), T("src/<|fim_prefix|>b.ts\nconst b = 2;\n"),
  ]);
  // Families without repository-level tokens leave the snippets out: the prompt is the one without them.
  for (const model of [DEEPSEEK, CODELLAMA]) {
    const format = promptFormatFor(model);
    assert.deepEqual(format.fim(input), format.fim({ ...input, context: undefined }));
  }
  // No snippets: exactly the prompt training examples are made of.
  assert.deepEqual(qwen.fim({ ...input, context: [] }), qwen.fim({ ...input, context: undefined }));
});
