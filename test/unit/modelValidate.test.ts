// "Use my own GGUF" checks on real files: the trainer's generated tiny model, and GGUFs written here with the shape
// writer (weightless, sparse) to have exactly the defect each check is about.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import { validateModel, ModelCheckError, TRAINABLE_ARCHES, TRAINABLE_TYPES, type ModelProblem } from "../../src/core/models/validate";
import { writeShapeGguf, type MetadataValue, type ShapeSpec } from "../../src/core/models/shape";
import { python, removeDir, tempDir, tinyModel, trainerRoot } from "./support/pipeline";

let dir: string;
let tiny: string;

before(async () => {
  dir = tempDir("validate");
  tiny = await tinyModel(path.join(dir, "cache"));
});
after(() => removeDir(dir));

const SMALL: ShapeSpec = {
  arch: "qwen2", nLayer: 2, nEmbd: 256, nHead: 4, nHeadKv: 2, nFf: 512, nVocab: 300, contextLength: 2048,
  tied: true, biases: "qkv", weightType: "Q8_0", ropeFreqBase: 10000,
};

/** A vocabulary of `n` tokens whose first ones are `specials`. */
function vocab(n: number, specials: string[]): string[] {
  return [...specials, ...Array.from({ length: n - specials.length }, (_, i) => `tok${i}`)];
}

const QWEN_FIM = ["<|endoftext|>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>"];
function qwenTokenizer(): Record<string, MetadataValue> {
  return {
    "tokenizer.ggml.model": "gpt2",
    "tokenizer.ggml.tokens": vocab(SMALL.nVocab, QWEN_FIM),
    "tokenizer.ggml.eos_token_id": { u32: 0 },
    "tokenizer.ggml.fim_pre_token_id": { u32: 1 },
    "tokenizer.ggml.fim_mid_token_id": { u32: 2 },
    "tokenizer.ggml.fim_suf_token_id": { u32: 3 },
  };
}

async function shapeFile(name: string, spec: Partial<ShapeSpec>, extra: Record<string, MetadataValue>): Promise<string> {
  const file = path.join(dir, name);
  await writeShapeGguf({ ...SMALL, ...spec }, file, extra);
  return file;
}

async function rejects(file: string, problem: ModelProblem, message: RegExp): Promise<void> {
  await assert.rejects(validateModel(file), (err: unknown) => {
    assert.ok(err instanceof ModelCheckError, `expected a ModelCheckError, got ${String(err)}`);
    assert.equal(err.problem, problem, err.message);
    assert.match(err.message, message);
    return true;
  });
}

describe("validateModel", () => {
  test("accepts the tiny model: llama architecture, Qwen2.5-Coder FIM tokens, trainable weights", async () => {
    const m = await validateModel(tiny);
    assert.equal(m.arch, "llama");
    assert.equal(m.family, "qwen2.5-coder");
    assert.ok(m.weightTypes.every((t) => (TRAINABLE_TYPES as readonly string[]).includes(t)), m.weightTypes.join());
    assert.equal(m.shape.nLayer, 2);
    assert.ok(m.shape.nEmbd > 0 && m.shape.nVocab > 256);
    assert.equal(m.fileBytes, readFileSync(tiny).length);
  });

  test("accepts a weightless qwen2 GGUF and reads its shape from the metadata", async () => {
    const m = await validateModel(await shapeFile("qwen.gguf", {}, qwenTokenizer()));
    assert.equal(m.family, "qwen2.5-coder");
    assert.deepEqual([m.shape.nLayer, m.shape.nEmbd, m.shape.nHead, m.shape.nHeadKv, m.shape.nFf, m.shape.nVocab], [2, 256, 4, 2, 512, 300]);
    assert.equal(m.shape.weightType, "Q8_0");
    assert.equal(m.shape.tied, true);
  });

  test("finds DeepSeek-Coder's FIM tokens by their text when the file has no FIM token ids (older conversions)", async () => {
    const m = await validateModel(await shapeFile("deepseek.gguf", { arch: "llama", biases: "none" }, {
      "tokenizer.ggml.model": "gpt2",
      "tokenizer.ggml.tokens": vocab(SMALL.nVocab, ["<｜end▁of▁sentence｜>", "<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>"]),
    }));
    assert.equal(m.family, "deepseek-coder");
  });

  test("a file that is not a GGUF", async () => {
    const file = path.join(dir, "notes.gguf");
    writeFileSync(file, "this is a text file, not a model\n");
    await rejects(file, "not_gguf", /not a GGUF model/);
  });

  test("a missing file", async () => {
    await rejects(path.join(dir, "nowhere.gguf"), "unreadable", /does not exist/);
  });

  test("a download cut short: weights missing, or the header itself cut", async () => {
    const bytes = readFileSync(tiny);
    const half = path.join(dir, "half.gguf");
    writeFileSync(half, bytes.subarray(0, Math.floor(bytes.length * 0.9)));
    await rejects(half, "truncated", /incomplete.*download it again/);
    const head = path.join(dir, "head.gguf");
    writeFileSync(head, bytes.subarray(0, 200));
    // node-llama-cpp reads a cut header without complaint (the missing bytes read as empty), so which of the two
    // messages comes depends on where the cut falls; either way the file is refused as truncated.
    await rejects(head, "truncated", /(damaged|incomplete).*download it again/);
  });

  test("an architecture the trainer cannot train", async () => {
    const file = await shapeFile("gpt2.gguf", {}, { ...qwenTokenizer(), "general.architecture": "gpt2" });
    await rejects(file, "unsupported_arch", /architecture "gpt2".*llama, qwen2, starcoder2.*Qwen2\.5-Coder/);
  });

  test("a model without fill-in-the-middle tokens (an instruct or chat model, say)", async () => {
    const file = await shapeFile("nofim.gguf", {}, { "tokenizer.ggml.model": "gpt2", "tokenizer.ggml.tokens": vocab(SMALL.nVocab, ["<|endoftext|>", "<|im_start|>"]) });
    await rejects(file, "no_fim", /no fill-in-the-middle tokens \(missing: prefix, suffix, middle\).*Qwen2\.5-Coder/);
  });

  test("weights in a type the trainer cannot read", async () => {
    const file = await shapeFile("q2k.gguf", { weightType: "Q2_K" }, qwenTokenizer());
    await rejects(file, "unsupported_weights", /Q2_K.*Q8_0, Q4_K_M/);
  });

  test("RoPE scaling the trainer does not implement", async () => {
    const file = await shapeFile("yarn.gguf", {}, { ...qwenTokenizer(), "qwen2.rope.scaling.type": "yarn" });
    await rejects(file, "unsupported_rope", /"yarn" RoPE scaling/);
  });

  test("the supported architectures and weight types are the trainer's own lists", () => {
    const out = execFileSync(python, ["-c", [
      "import json",
      "from repotune_trainer.model import SUPPORTED_ARCHES",
      "from repotune_trainer.quants import SUPPORTED_TYPES",
      "from repotune_trainer.gguf import type_name",
      "print(json.dumps({'arches': list(SUPPORTED_ARCHES), 'types': [type_name(t) for t in SUPPORTED_TYPES]}))",
    ].join("\n")], { env: { ...process.env, PYTHONPATH: trainerRoot }, encoding: "utf8" });
    const trainer = JSON.parse(out.trim().split("\n").at(-1)!);
    assert.deepEqual([...TRAINABLE_ARCHES].sort(), [...trainer.arches].sort());
    assert.deepEqual([...TRAINABLE_TYPES].sort(), [...trainer.types].sort());
  });
});
