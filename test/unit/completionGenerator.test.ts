// The provider's generation (core/completionGenerator.ts) against the real engine on the tiny model: the prompt is cut
// as the adapter's training examples were (its manifest), or with the base model's default window.
// Run from the repository root after `node esbuild.mjs`.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import * as path from "node:path";
import { CompletionGenerator } from "../../src/core/completionGenerator";
import { completeAtCursor } from "../../src/core/eval/serving";
import { writeManifest, type RunManifest } from "../../src/core/runStore";
import { removeDir, sampleSources, tempDir } from "./support/pipeline";
import { startTinyEngine, type TinyEngine } from "./support/tinyEngine";
import { writeRandomAdapter } from "./support/randomAdapter";

let dir: string;
let tiny: TinyEngine;
let adapterPath: string;
const source = sampleSources(1)["src/widget.ts"];
const cursor = { text: source, offset: source.indexOf("return total;") + "return ".length, filePath: "src/widget.ts", repoName: "demo" };

function manifest(seqLen: number, charsPerToken: number): RunManifest {
  return {
    format: "repotune-run", version: 1, runId: "r1", repoId: "0123456789abcdef", folder: "/repo",
    created: "2026-11-29T12:00:00.000Z", finished: "2026-11-29T12:05:00.000Z", status: "done",
    baseModel: { path: tiny.modelPath, size: 1000, sha256: "a".repeat(64) }, gitCommit: null,
    dataset: {
      filesUsed: 3, filesSkipped: {}, examples: 10, trainSequences: 8, valSequences: 2, trainTokens: 800, valTokens: 200,
      seqLen, promptFormat: "qwen2.5-coder", charsPerToken,
    },
    settings: { steps: 6, seqLen, rank: 4, alpha: 8, lr: 0.003, batch: 4, gradAccum: 1, gradCheckpoint: false, baseWeights: "auto", seed: 0, device: "cpu" },
    metrics: { steps: 6, valLossBase: 5, valLoss: 4, trainLoss: 4.2, device: "cpu", trainSeconds: 3 },
    adapter: path.basename(adapterPath), checkpoint: null,
  };
}

/** Prompt tokens of the engine's latest completion. */
async function lastPromptTokens(): Promise<number> {
  const records = (await tiny.engine.status()).completions;
  return records[records.length - 1].promptTokens;
}

before(async () => {
  dir = tempDir("completion-generator");
  tiny = await startTinyEngine(dir);
  adapterPath = path.join(dir, "run", "adapter-r1.gguf");
  await writeManifest(path.join(dir, "run", "manifest.json"), manifest(64, 1.5));
  writeRandomAdapter(adapterPath, "llama");
});

after(async () => {
  await tiny?.engine.dispose();
  removeDir(dir);
});

test("the base model alone: a 1024-token window, its density measured around the cursor", async () => {
  const generator = new CompletionGenerator();
  const signal = new AbortController().signal;
  const text = await generator.generate({ client: tiny.engine, info: tiny.info }, { ...cursor, adapterPath: null, maxTokens: 8 }, signal);
  const generated = await lastPromptTokens();
  const direct = await completeAtCursor(tiny.engine, tiny.format, { ...cursor, windowTokens: 1024, maxTokens: 8, adapterPath: null });
  assert.equal(text, direct.text);
  assert.equal(generated, await lastPromptTokens());
});

test("an adapter with a manifest: the window and density its training examples were cut with", async () => {
  const generator = new CompletionGenerator();
  const signal = new AbortController().signal;
  const text = await generator.generate({ client: tiny.engine, info: tiny.info }, { ...cursor, adapterPath, maxTokens: 8 }, signal);
  const generated = await lastPromptTokens();
  const direct = await completeAtCursor(tiny.engine, tiny.format, { ...cursor, windowTokens: 64, charsPerToken: 1.5, maxTokens: 8, adapterPath });
  assert.equal(text, direct.text);
  assert.equal(generated, await lastPromptTokens());
  await completeAtCursor(tiny.engine, tiny.format, { ...cursor, windowTokens: 1024, maxTokens: 8, adapterPath });
  assert.ok(generated < (await lastPromptTokens()), `the 64-token window (${generated} prompt tokens) is the manifest's, not the default`);
});

test("a cancelled generation throws the engine's cancellation", async () => {
  const generator = new CompletionGenerator();
  const controller = new AbortController();
  controller.abort();
  await assert.rejects(
    generator.generate({ client: tiny.engine, info: tiny.info }, { ...cursor, adapterPath: null, maxTokens: 8 }, controller.signal),
    (err: unknown) => (err as { code?: string }).code === "cancelled",
  );
});
