import { test } from "node:test";
import assert from "node:assert/strict";
import { applyRunEvent, emptySnapshot, snapshotForNewRun } from "../../src/core/runSnapshot";
import type { RunEvent } from "../../src/protocol/run";
import { RunSnapshot } from "../../src/protocol/webview";

const t = 1_700_000_000;
const events: RunEvent[] = [
  { type: "run", time: t, runId: "r1", folder: "/repo", modelPath: "/m/tiny.gguf", runDir: "/runs/x/r1" },
  { type: "phase", time: t, phase: "preparing" },
  { type: "dataset", time: t, summary: { filesUsed: 5, filesSkipped: { binary: 2 }, examples: 40, trainSequences: 10, valSequences: 2, trainTokens: 2560, valTokens: 512, seqLen: 256, promptFormat: "qwen2.5-coder" } },
  { type: "estimate", time: t, device: "cpu", peakBytes: 391_606_169 },
  { type: "phase", time: t, phase: "training" },
  { type: "trainer", time: t, event: { event: "start", device: "cpu", torch_version: "1.13.1", arch: "llama", n_layer: 2, n_embd: 64, vocab_size: 272, weight_types: ["F32"], trainable_params: 1000, total_params: 100000, steps: 3, batch: 4, seq_len: 256, train_sequences: 10, val_sequences: 2 } },
  { type: "trainer", time: t, event: { event: "eval", step: 0, val_loss: 5.6 } },
  { type: "trainer", time: t, event: { event: "step", step: 1, steps: 3, loss: 5.5, lr: 0.001, tokens_per_s: 900, elapsed_s: 0.3 } },
  { type: "trainer", time: t, event: { event: "step", step: 2, steps: 3, loss: 4.0, lr: 0.001, tokens_per_s: 1000, elapsed_s: 0.6 } },
  { type: "trainer", time: t, event: { event: "eval", step: 3, val_loss: 3.2 } },
  { type: "trainer", time: t, event: { event: "done", step: 3, adapter: "/runs/x/r1/adapter-r1.gguf", val_loss_base: 5.6, val_loss: 3.2 } },
  { type: "adapter", time: t, adapterPath: "/runs/x/r1/adapter-r1.gguf", manifestPath: "/runs/x/r1/manifest.json" },
  { type: "phase", time: t, phase: "done" },
];

test("a run's events fold into the snapshot the views draw", () => {
  const s = events.reduce(applyRunEvent, snapshotForNewRun(emptySnapshot("/old.gguf")));
  RunSnapshot.parse(s);
  assert.equal(s.phase, "done");
  assert.equal(s.runId, "r1");
  assert.equal(s.model, "/m/tiny.gguf");
  assert.equal(s.dataset?.filesUsed, 5);
  assert.equal(s.device, "cpu");
  assert.deepEqual(s.estimate, { device: "cpu", peakBytes: 391_606_169 });
  assert.deepEqual([s.step, s.steps], [3, 3]);
  assert.equal(s.loss, 4.0);
  assert.equal(s.tokensPerS, 1000);
  assert.deepEqual(s.losses, [{ step: 1, loss: 5.5 }, { step: 2, loss: 4.0 }]);
  assert.deepEqual(s.valLosses, [{ step: 0, loss: 5.6 }, { step: 3, loss: 3.2 }]);
  assert.equal(s.valLossBase, 5.6);
  assert.equal(s.valLoss, 3.2);
  assert.equal(s.adapterPath, "/runs/x/r1/adapter-r1.gguf");
  assert.equal(s.activeAdapter, "/old.gguf", "the active adapter changes only when the extension activates one");
});

test("an error event fails the run and keeps its message and suggested setting", () => {
  const s = applyRunEvent(snapshotForNewRun(emptySnapshot()), { type: "error", time: t, message: "No Python with PyTorch", action: "repotune.pythonPath" });
  assert.equal(s.phase, "failed");
  assert.equal(s.error, "No Python with PyTorch");
  assert.equal(s.errorAction, "repotune.pythonPath");
});

test("a new run starts clean but keeps the active adapter", () => {
  const done = events.reduce(applyRunEvent, emptySnapshot("/a.gguf"));
  const fresh = snapshotForNewRun(done);
  assert.equal(fresh.phase, "preparing");
  assert.deepEqual(fresh.losses, []);
  assert.equal(fresh.adapterPath, null);
  assert.equal(fresh.activeAdapter, "/a.gguf");
});
