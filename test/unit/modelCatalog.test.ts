// The model catalog against what it claims: shapes that add up to the listed file sizes, prompt families and
// architectures RepoTune supports, training memory that is the trainer's own estimate (recomputed here on weightless
// GGUFs of each shape), and the default model for a device's memory.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { statSync } from "node:fs";
import * as path from "node:path";
import { CATALOG, DEFAULT_MODEL_ID, SERVE_CONTEXT, TRAIN_REFERENCE, catalogModel, defaultModelFor, serveBytes, shapeOf } from "../../src/core/models/catalog";
import { writeShapeGguf } from "../../src/core/models/shape";
import { validateModel, TRAINABLE_ARCHES } from "../../src/core/models/validate";
import { estimateMemory } from "../../src/core/memoryEstimate";
import { SUPPORTED_FAMILIES } from "../../src/core/promptFormat";
import { resolveModelUri } from "../../src/core/models/download";
import { python, removeDir, tempDir, trainerRoot } from "./support/pipeline";

const GiB = 2 ** 30;
let dir: string;

before(() => {
  dir = tempDir("catalog");
});
after(() => removeDir(dir));

describe("the model catalog", () => {
  test("lists the five base FIM models, with the 1.5B Qwen2.5-Coder as the default", () => {
    assert.deepEqual(CATALOG.map((m) => m.id), ["qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b", "qwen2.5-coder-7b", "deepseek-coder-1.3b-base", "starcoder2-3b"]);
    assert.equal(catalogModel(DEFAULT_MODEL_ID).displayName, "Qwen2.5-Coder 1.5B");
    assert.throws(() => catalogModel("gpt-4"), /no model "gpt-4".*qwen2\.5-coder-1\.5b/);
  });

  test("every entry has a supported family and architecture, a licence, a Hugging Face GGUF address and a well-formed hash", () => {
    for (const m of CATALOG) {
      assert.ok(SUPPORTED_FAMILIES.includes(m.family), m.id);
      assert.ok((TRAINABLE_ARCHES as readonly string[]).includes(m.spec.arch), m.id);
      assert.ok(m.licence.length > 0 && m.licenceUrl.startsWith("https://"), m.id);
      assert.match(resolveModelUri(m.uri), /^https:\/\/huggingface\.co\/[^/]+\/[^/]+\/resolve\/main\/.+\.gguf$/, m.id);
      assert.ok(m.uri.endsWith(`/${m.fileName}`), m.id);
      assert.ok(m.sha256 === null || /^[0-9a-f]{64}$/.test(m.sha256), m.id);
      assert.ok(!/instruct/i.test(m.uri), `${m.id} must be a base model`);
    }
  });

  test("each shape adds up to the listed file size (within 1.5%), so the shapes are the files' shapes", () => {
    for (const m of CATALOG) {
      const ratio = shapeOf(m).weightBytes / m.approxBytes;
      assert.ok(Math.abs(ratio - 1) < 0.015, `${m.id}: shape ${shapeOf(m).weightBytes} bytes against the listed ${m.approxBytes} (ratio ${ratio.toFixed(4)})`);
    }
    // Parameter counts as the model cards give them.
    assert.equal(Math.round(shapeOf(catalogModel("qwen2.5-coder-0.5b")).params / 1e7) / 100, 0.49);
    assert.equal(Math.round(shapeOf(catalogModel("qwen2.5-coder-1.5b")).params / 1e7) / 100, 1.54);
    assert.equal(Math.round(shapeOf(catalogModel("qwen2.5-coder-7b")).params / 1e7) / 100, 7.62);
  });

  test("training memory is the trainer's own estimate (recomputed on a weightless GGUF of each shape)", async () => {
    for (const m of CATALOG) {
      const file = path.join(dir, `${m.id}.gguf`);
      await writeShapeGguf(m.spec, file);
      // A sparse file: the full size, next to nothing on disk.
      assert.equal(statSync(file).size > 0.98 * m.approxBytes, true);
      const e = await estimateMemory({ python, trainerRoot, modelPath: file, ...TRAIN_REFERENCE, device: "cuda" });
      // Recorded with PyTorch 1.13 (no SDPA); PyTorch 2.x's attention saves a little less, hence the tolerance.
      const drift = Math.abs(e.total - m.trainBytes) / m.trainBytes;
      assert.ok(drift < 0.05, `${m.id}: recorded ${m.trainBytes}, the estimator now says ${e.total}`);
    }
  });

  test("a weightless GGUF of a catalog shape passes the bring-your-own checks with the catalog's family", async () => {
    const m = catalogModel("qwen2.5-coder-0.5b");
    const file = path.join(dir, "qwen-tokens.gguf");
    const tokens = ["<|endoftext|>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>"];
    await writeShapeGguf(m.spec, file, {
      "tokenizer.ggml.tokens": [...tokens, ...Array.from({ length: m.spec.nVocab - tokens.length }, (_, i) => `t${i}`)],
      "tokenizer.ggml.fim_pre_token_id": { u32: 1 }, "tokenizer.ggml.fim_mid_token_id": { u32: 2 }, "tokenizer.ggml.fim_suf_token_id": { u32: 3 },
    });
    const checked = await validateModel(file);
    assert.equal(checked.family, m.family);
    assert.deepEqual({ ...checked.shape }, { ...shapeOf(m) });
  });

  test("serving memory: the weights plus the KV cache and logits, ordered like the models' sizes", () => {
    const serve = CATALOG.map((m) => [m.id, serveBytes(m)] as const);
    for (const [id, bytes] of serve) {
      const m = catalogModel(id);
      assert.ok(bytes > shapeOf(m).weightBytes && bytes < shapeOf(m).weightBytes + 1.5 * GiB, `${id}: ${bytes}`);
      assert.ok(bytes < m.trainBytes, `${id}: serving needs less than training`);
    }
    assert.ok(serveBytes(catalogModel("qwen2.5-coder-0.5b")) < serveBytes(catalogModel("qwen2.5-coder-1.5b")));
    assert.ok(serveBytes(catalogModel("qwen2.5-coder-1.5b")) < serveBytes(catalogModel("qwen2.5-coder-7b")));
  });

  test("serving memory agrees with node-llama-cpp's own estimate (GgufInsights, on the weightless GGUFs) within 10%", async () => {
    const { getLlama, readGgufFileInfo, GgufInsights } = await import("node-llama-cpp");
    const llama = await getLlama({ gpu: false });
    try {
      for (const m of CATALOG) {
        const file = path.join(dir, `${m.id}-serve.gguf`);
        await writeShapeGguf(m.spec, file);
        const insights = await GgufInsights.from(await readGgufFileInfo(file, { logWarnings: false }), llama);
        const model = insights.estimateModelResourceRequirements({ gpuLayers: insights.totalLayers });
        const context = insights.estimateContextResourceRequirements({ contextSize: SERVE_CONTEXT, modelGpuLayers: insights.totalLayers, batchSize: 512 });
        const theirs = model.cpuRam + model.gpuVram + context.cpuRam + context.gpuVram;
        const ratio = serveBytes(m) / theirs;
        assert.ok(Math.abs(ratio - 1) < 0.1, `${m.id}: ours ${serveBytes(m)}, node-llama-cpp's ${theirs}`);
      }
    } finally {
      await llama.dispose();
    }
  });

  test("the default model is the biggest Qwen2.5-Coder whose training fits the device, else the smallest", () => {
    assert.equal(defaultModelFor(141e9).id, "qwen2.5-coder-7b");
    assert.equal(defaultModelFor(24 * GiB).id, "qwen2.5-coder-7b");
    assert.equal(defaultModelFor(8 * GiB).id, "qwen2.5-coder-1.5b");
    assert.equal(defaultModelFor(4 * GiB).id, "qwen2.5-coder-0.5b");
    assert.equal(defaultModelFor(1 * GiB).id, "qwen2.5-coder-0.5b", "nothing fits: the smallest");
    for (const bytes of [141e9, 24 * GiB, 8 * GiB, 4 * GiB]) {
      const m = defaultModelFor(bytes);
      assert.ok(m.trainBytes <= 0.9 * bytes, `${m.id} on ${bytes}`);
    }
  });
});
